"""``hallgate tune --from-store URL``: a new bundle version from the labelled traffic.

    hallgate tune --from-store postgresql://... --model local/smollm2-135m-instruct \\
        [--since 2026-12-01T00:00Z] [--until ...] [--mix-builtin recordings/smollm2-135m] \\
        [--baseline calibration/bundles/local/smollm2-135m-instruct] \\
        --out /etc/hallgate/bundles/smollm2-135m-instruct-v2

    prepare(): the store's labelled exchanges of the model and window -> a recording
               directory beside OUT (evaluation/store_export.py); OUT must be new
    tune:      the replay pipeline on it (evaluation/tune.py): HALT, thresholds, combiner,
               operating points -> the bundle in OUT
    finish():  BEFORE_AFTER.md in OUT: the baseline bundle vs the new one on held-out
               labelled traffic (evaluation/refit_compare.py)

A refit never overwrites a bundle: OUT must not exist (or be empty). The old version stays
where it is; a gateway moves to the new one when its binding points there (and back when
it points at the old one again); see docs/FEEDBACK.md.
"""

from __future__ import annotations

from pathlib import Path

import typer

from calibration.bundle import BundleError, load_bundle
from evaluation.store_export import ExportError, ExportSummary, export_store


def store_recording(out: Path) -> Path:
    """Where the refit keeps the recording it exported (beside OUT, hidden)."""
    return out.parent / f".{out.name}.store"


def prepare(url: str, model: str, out: Path, *, since: str | None, until: str | None,
            mix: Path | None) -> tuple[Path, ExportSummary]:
    """Export the labelled exchanges for the replay pipeline; exit 2 with the reason when
    OUT holds something already or the store cannot be read."""
    if out.exists() and any(out.iterdir()):
        typer.echo(f"{out} exists and is not empty: a refit writes a new bundle version "
                   "and never overwrites one; choose a new directory", err=True)
        raise typer.Exit(2)
    recording = store_recording(out)
    if recording.exists():
        import shutil

        shutil.rmtree(recording)
    try:
        summary = export_store(url, model, recording, since=since, until=until, mix=mix)
    except ExportError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    except Exception as exc:  # the database: unreachable, not a store, wrong schema
        typer.echo(f"cannot read the store: {type(exc).__name__}: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(summary.line())
    return recording, summary


def baseline_of(model: str, given: Path | None) -> Path | None:
    """The bundle to compare against: ``given``, else the shipped one of the model."""
    if given is not None:
        return given
    from proxy.calibrations import SHIPPED_BUNDLES

    shipped = SHIPPED_BUNDLES / model
    return shipped if (shipped / "bundle.json").is_file() else None


def finish(out: Path, recording: Path, summary: ExportSummary, model: str,
           baseline: Path | None) -> str:
    """Write BEFORE_AFTER.md into OUT; its text."""
    from evaluation.refit_compare import before_after, fitted_ids

    new = load_bundle(out, names={model})
    old = None
    where = baseline_of(model, baseline)
    if where is not None:
        try:
            old = load_bundle(where, names={model})
        except BundleError as exc:
            typer.echo(f"baseline not compared: {exc}", err=True)
    table, _ = before_after(recording, new, old, only=set(summary.ids),
                            exclude=fitted_ids(old) if old is not None else set())
    title = (f"# Before and after: {old.name} -> {new.name}\n\n" if old is not None else
             f"# {new.name} on held-out labelled traffic (no baseline bundle)\n\n")
    text = f"{title}{summary.line()}.\n\n{table}"
    (out / "BEFORE_AFTER.md").write_text(text)
    return text
