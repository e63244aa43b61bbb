"""Does Learn-then-Test keep its promise on a recorded corpus? Resplit and count.

    .venv/bin/python -m evaluation.ltt_check --results recordings/smollm2-135m/results.jsonl

For each detector score of the recording's live run and each target risk α, it calibrates
a threshold (policies/calibration.py, δ fixed) many times and counts how often the
answered-hallucination rate of the chosen threshold exceeds α, two ways
(``guarantee_check``): measured on the held-out half of a random 50/50 resplit, and
measured exactly on the whole corpus taken as the population, the calibration set drawn
from it with replacement. LTT promises the second at most a fraction δ of the time; the
first adds the held-out half's own sampling noise. A third count certifies for the
held-out half itself (``CalibrationConfig.sample_size``: the promise covers the rate
measured on that many items) and measures on it: that is the promise "the test half
exceeds α in at most δ of the splits". The table also shows what each promise costs in
coverage.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import typer

from policies.calibration import CalibrationConfig, guarantee_check


def risk_of(name: str, value: float) -> float:
    """Every score as a risk in [0, 1]: detectors' risks as they are; −mean and −min token
    logprob x as 1 − e^(−x) (one minus the geometric-mean or the lowest token
    probability), a monotone map, so the ranking is the score's own."""
    if name in ("neg_mean_logprob", "neg_min_logprob"):
        return 1.0 - math.exp(-value)
    return value


def score_columns(records: list[dict],
                  names: list[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """name -> (risks, hallucinated) over the records that have that score."""
    columns = {}
    for name in names:
        rows = [(risk_of(name, r["scores"][name]), r["hallucinated"]) for r in records
                if r.get("scores", {}).get(name) is not None]
        if rows:
            risks, labels = zip(*rows, strict=True)
            columns[name] = (np.array(risks), np.array(labels, dtype=bool))
    return columns


def main(results: Path = typer.Option(..., exists=True, dir_okay=False,
                                      help="A recording's results.jsonl."),
         scores: str = typer.Option("halt,neg_mean_logprob,neg_min_logprob,edfl,semantic",
                                    help="Comma-separated score names."),
         alphas: str = typer.Option("0.6,0.7,0.8,0.9", help="Target risks α."),
         delta: float = typer.Option(0.1, help="δ: the promise holds with 1 − δ."),
         splits: int = typer.Option(500, help="Random calibration/test resplits."),
         seed: int = typer.Option(0)) -> None:
    """Held-out answered-hallucination rate above α: in how many resplits, per score."""
    records = [json.loads(line) for line in results.read_text().splitlines() if line.strip()]
    columns = score_columns(records, scores.split(","))
    base = np.mean([r["hallucinated"] for r in records])
    print(f"{len(records)} items, {base:.1%} hallucinated; δ = {delta}, {splits} resplits "
          f"50/50\n")
    print("| score | α | held-out half above α | corpus (population) above α "
          "| no safe threshold (population) | coverage of the corpus "
          "| held-out half above α, certified for a half | its coverage |")
    print("|---|---|---|---|---|---|---|---|")
    worst = {"held_out": 0.0, "population": 0.0, "sample": 0.0}
    for name, (risks, labels) in columns.items():
        for alpha in (float(a) for a in alphas.split(",")):
            config = CalibrationConfig(target_risk=alpha, delta=delta)
            held = guarantee_check(risks, labels, config, splits=splits, seed=seed)
            pop = guarantee_check(risks, labels, config, splits=splits, seed=seed,
                                  population=True)
            half = len(labels) - round(len(labels) / 2)  # split_indices' held-out size
            for_half = guarantee_check(risks, labels, replace(config, sample_size=half),
                                       splits=splits, seed=seed)
            worst["held_out"] = max(worst["held_out"], held.exceeded_fraction)
            worst["population"] = max(worst["population"], pop.exceeded_fraction)
            worst["sample"] = max(worst["sample"], for_half.exceeded_fraction)
            print(f"| {name} | {alpha:g} | {held.exceeded_fraction:.1%} "
                  f"| {pop.exceeded_fraction:.1%} | {pop.no_threshold} of {splits} "
                  f"| {pop.mean_coverage:.1%} | {for_half.exceeded_fraction:.1%} "
                  f"| {for_half.mean_coverage:.1%} |")
    print(f"\nRESULT items={len(records)} delta={delta} splits={splits} "
          f"worst_held_out_exceeded={worst['held_out']:.3f} "
          f"worst_population_exceeded={worst['population']:.3f} "
          f"worst_held_out_certified_for_it_exceeded={worst['sample']:.3f}")


if __name__ == "__main__":
    typer.run(main)
