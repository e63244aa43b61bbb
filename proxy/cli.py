"""The ``hallgate`` command line: ``serve`` plus the detector and policy sub-commands."""

from __future__ import annotations

from pathlib import Path

import typer

from evaluation.evaluate import calibrate_command, eval_command
from evaluation.halt_commands import app as halt_app
from policies.cli import app as policy_app

app = typer.Typer(help="hallgate: an OpenAI-compatible gateway that abstains "
                       "instead of hallucinating.", no_args_is_help=True)
app.add_typer(halt_app, name="halt")
app.add_typer(policy_app, name="policy")
app.command("eval")(eval_command)
app.command("calibrate")(calibrate_command)


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
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port,
                log_level=settings.log_level, access_log=False, timeout_graceful_shutdown=30,
                log_config=None, loop="uvloop", http=GatewayHttpProtocol, lifespan="on",
                # no code reads the client's address: skip the X-Forwarded-* rewrite
                # uvicorn otherwise runs on every request from a trusted (local) peer
                proxy_headers=False)


if __name__ == "__main__":
    app()
