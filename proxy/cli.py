"""``serve``: the gateway's own command (``hallgate serve``; the whole ``hallgate`` command
line is hallgate_cli, above the gateway and the evaluation tools). ``python -m proxy.cli
serve`` runs it alone."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(help="The hallgate gateway.", no_args_is_help=True)


@app.callback()
def _gateway() -> None:
    """The hallgate gateway (the full command line: `hallgate`)."""


@app.command()
def serve(
    config: Path | None = typer.Option(None, "--config", "-c", exists=True, dir_okay=False,
                                       help="hallgate.yaml; HALLGATE_* env vars override it."),
    host: str | None = typer.Option(None, help="Bind address (default from config)."),
    port: int | None = typer.Option(None, help="Port (default from config, 8080)."),
) -> None:
    """Run the gateway (uvicorn). With no upstream configured, the embedded model is used."""
    import uvicorn
    from pydantic import ValidationError

    from proxy.app import create_app
    from proxy.config import Settings
    from proxy.logs import configure_logging
    from proxy.server import GatewayHttpProtocol

    overrides = {k: v for k, v in {"host": host, "port": port}.items() if v is not None}
    try:
        settings = Settings.load(config, **overrides)
    except ValidationError as exc:  # names each bad key and why; no traceback
        typer.echo(f"hallgate: invalid settings ({config or 'environment'}): {exc}", err=True)
        raise typer.Exit(2) from None
    configure_logging(settings.log_level)
    uvicorn.run(create_app(settings, freeze_heap=True), host=settings.host, port=settings.port,
                log_level=settings.log_level, access_log=False, timeout_graceful_shutdown=30,
                log_config=None, loop="uvloop", http=GatewayHttpProtocol, lifespan="on",
                # no code reads the client's address: skip the X-Forwarded-* rewrite
                # uvicorn otherwise runs on every request from a trusted (local) peer
                proxy_headers=False)


if __name__ == "__main__":
    app()
