"""One model's held-out answers judged under its own bundle, under another model's
bundle, and by the free −mean token logprob: within source, with paired bootstrap CIs.

    .venv/bin/python -m calibration.compare \\
        --bundle calibration/bundles/local/gemma3-270m \\
        --other calibration/bundles/local/smollm2-135m-instruct

The items are the bundle's own held-out half (its data manifest: results file, seed).
Scores: each bundle's learned combiner on the recorded detector scores; the recorded
``halt`` score, which is the HALT the recording gateway ran (name it with ``--halt-of``);
−mean token logprob.

A bundle made by ``hallgate tune`` holds in its data the model's own HALT's risk in place
of the recording gateway's. Give the recording (``--recording DIR``) and the other
model's HALT is read from it: the other bundle's combiner then reads the other HALT, as
it would serving this model, and both HALTs are compared:

    .venv/bin/python -m calibration.compare \
        --bundle calibration/bundles/local/gemma3-270m \
        --other calibration/bundles/local/smollm2-135m-instruct \
        --recording recordings/gemma3-270m
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import typer

from calibration.build import split_records
from calibration.bundle import load_bundle
from detectors.metrics import (
    auroc,
    bootstrap_interval,
    mean_source_auroc,
    paired_source_bootstrap,
)


def main(bundle: Path = typer.Option(..., help="The model's own bundle."),
         other: Path = typer.Option(..., help="Another model's bundle."),
         halt_of: str = typer.Option("local/smollm2-135m-instruct",
                                     help="Whose HALT produced the recording's halt score."),
         recording: Path | None = typer.Option(
             None, exists=True, file_okay=False,
             help="The recording whose halt score is --halt-of's HALT (when the bundle's "
             "data holds the model's own)."),
         repo: Path = typer.Option(Path("."), help="Where the data manifest's paths start."),
         resamples: int = typer.Option(1000)) -> None:
    own, theirs = load_bundle(bundle), load_bundle(other)
    data = own.manifest.data
    _, records, _, held = split_records(repo / data.results, None, data.seed)
    rows = [records[i] for i in held]
    other_halt = {r["id"]: r["scores"]["halt"] for r in rows}  # the bundle data's halt
    if recording is not None:
        recorded = {r["id"]: r["scores"]["halt"] for r in
                    map(json.loads, (recording / "results.jsonl").read_text().splitlines())}
        other_halt = {r["id"]: recorded[r["id"]] for r in rows}
    y = np.array([r["hallucinated"] for r in rows], dtype=bool)
    src = np.array([r["source"] for r in rows])
    scores = {
        f"own bundle's combiner ({own.name})":
            np.array([own.combiner.risk(r["scores"]) for r in rows]),
        f"other bundle's combiner ({theirs.name})":
            np.array([theirs.combiner.risk({**r["scores"], "halt": other_halt[r["id"]]})
                      for r in rows]),
        f"HALT of {halt_of}": np.array([other_halt[r["id"]] for r in rows]),
        "−mean token logprob": np.array([r["scores"]["neg_mean_logprob"] for r in rows]),
    }
    if recording is not None:  # the bundle's data holds this model's own HALT
        scores[f"own HALT ({own.model}, in {own.name})"] = np.array(
            [r["scores"]["halt"] for r in rows])
    boot = paired_source_bootstrap(scores, y, src, resamples=resamples, seed=0)
    names, counts = np.unique(src, return_counts=True)
    per_source = {str(k): int(v) for k, v in zip(names, counts, strict=True)}
    typer.echo(f"{own.model}: {len(rows)} held-out items, {int((~y).sum())} correct; "
               f"sources {per_source}\n")
    typer.echo("| score | pooled AUROC [95% CI] | mean of per-source AUROC [95% CI] |\n"
               "|---|---|---|")
    for name, s in scores.items():
        ci = bootstrap_interval(auroc, s, y, resamples=resamples)
        lo, hi = np.quantile(boot[name], [0.025, 0.975])
        mean = mean_source_auroc(s, y, src)
        typer.echo(f"| {name} | {auroc(s, y):.3f} [{ci[0]:.3f}, {ci[1]:.3f}] | "
                   f"{mean:.3f} [{lo:.3f}, {hi:.3f}] |")


if __name__ == "__main__":
    typer.run(main)
