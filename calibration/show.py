"""A bundle's contents as markdown tables (what docs/CALIBRATION.md quotes).

    .venv/bin/python -m calibration.show calibration/bundles/local/smollm2-135m-instruct
"""

from __future__ import annotations

from pathlib import Path

import typer

from calibration.bundle import Bundle, load_bundle


def fmt_number(value: float | None, digits: int = 3) -> str:
    """A table cell: the value to ``digits`` decimals, or – when there is none."""
    return "–" if value is None else f"{value:.{digits}f}"


def _ci(value: float | None, ci) -> str:
    return fmt_number(value) if not ci else f"{fmt_number(value)} [{ci[0]:.3f}, {ci[1]:.3f}]"


def quality_table(bundle: Bundle) -> str:
    rows = ["| detector | answer threshold | pooled AUROC [95% CI] | mean of per-source "
            "AUROC [95% CI] | PRR | upstream calls |", "|---|---|---|---|---|---|"]
    for name, det in bundle.manifest.detectors.items():
        q, c = det.quality, det.cost
        rows.append(f"| {name} | {fmt_number(det.answer_threshold)} | "
                    f"{_ci(q.pooled_auroc, q.pooled_ci) if q else '–'} | "
                    f"{_ci(q.mean_of_sources, q.mean_of_sources_ci) if q else '–'} | "
                    f"{fmt_number(q.prr) if q else '–'} | "
                    f"{fmt_number(c.upstream_calls, 1) if c else 'not recorded'} |")
    return "\n".join(rows)


def operating_table(bundle: Bundle) -> str:
    rows = ["| α | δ | detector | threshold | coverage | errors / answered | bound |",
            "|---|---|---|---|---|---|---|"]
    combined = bundle.manifest.combiner_set
    points = (*bundle.manifest.operating_points, *(combined.operating_points if combined
                                                   else ()))
    for p in points:
        if p.threshold is not None:
            rows.append(f"| {p.alpha:g} | {p.delta:g} | {p.detector} | {p.threshold:g} | "
                        f"{p.coverage:.3f} | {p.errors} / {p.answered} | "
                        f"{fmt_number(p.upper_bound)} |")
    return "\n".join(rows)


def main(path: Path = typer.Argument(..., help="A bundle directory.")) -> None:
    bundle = load_bundle(path, load_weights=False)
    data = bundle.manifest.data
    typer.echo(f"bundle {bundle.name} for {bundle.model}: {data.items} items "
               f"({data.hallucinated} hallucinated), {data.calibration_items} calibration, "
               f"{data.held_out_items} held out (quality)\n")
    typer.echo(quality_table(bundle) + "\n\nLearn-then-Test operating points (calibration "
               "half; detectors with no certified threshold left out):\n\n"
               + operating_table(bundle))


if __name__ == "__main__":
    typer.run(main)
