"""Before and after a refit: the old bundle and the new one on labelled items neither was
fitted on, within source, with bootstrap CIs.

    table, figures = before_after(recording, new_bundle, old_bundle, exclude=ids)

The items: the new bundle's held-out half (its data manifest: ``calibration_data.jsonl``
and seed; HALT's training items are not in that file at all), restricted to ``only`` (the
stored exchanges, not a mixed-in recording) and without ``exclude`` (what the old bundle
was fitted on). Each bundle judges them as a gateway bound to it would:

- its HALT on the answer's logprob matrix (HALT's adapter), at its answer threshold;
- its learned combiner on the recorded scores with ``halt`` replaced by its own HALT's;
- its ``mean_logprob`` threshold on −mean token logprob, squashed s/(1+s).

Ranking: pooled AUROC (percentile bootstrap CI) and the mean of per-source AUROC (a paired
bootstrap within source, so the new − old difference has its own interval). Deciding: at
the bundle's threshold, the answered-hallucination rate errors / answered (with a
percentile bootstrap CI over the items) and the coverage answered / items.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from calibration.build import split_records
from calibration.bundle import Bundle
from detectors.metrics import (
    auroc,
    bootstrap_interval,
    mean_source_auroc,
    paired_source_bootstrap,
)

RESAMPLES = 1000


def held_out_ids(bundle: Bundle) -> list[str]:
    """The ids of the bundle's held-out half (its data manifest), in file order."""
    data = bundle.manifest.data
    results = Path(data.results)
    if not results.is_absolute() and not results.exists():
        results = bundle.path / results.name
    _, records, _, held = split_records(results, None, data.seed, exclude_pool=False)
    return [str(records[i]["id"]) for i in held]


def fitted_ids(bundle: Bundle) -> set[str]:
    """The ids a bundle's calibration half holds (what its thresholds and combiner were
    fitted on), when its data file can be read here; else the empty set."""
    data = bundle.manifest.data
    for results in (Path(data.results), bundle.path / Path(data.results).name):
        if results.is_file():
            _, records, cal, _ = split_records(results, None, data.seed, exclude_pool=False)
            return {str(records[i]["id"]) for i in cal}
    return set()


def answered_rate(risks: np.ndarray, threshold: float | None,
                  labels: np.ndarray) -> dict | None:
    """At ``threshold`` (abstain when risk >= threshold): errors among the answered, the
    answered count, coverage, and the rate's 95% percentile bootstrap interval."""
    if threshold is None:
        return None
    answered = risks < threshold
    n = int(answered.sum())
    errors = int(labels[answered].sum())
    rng = np.random.default_rng(0)
    rates = []
    for _ in range(RESAMPLES):
        pick = rng.integers(0, len(labels), len(labels))
        a = answered[pick]
        if a.any():
            rates.append(labels[pick][a].mean())
    ci = tuple(float(q) for q in np.quantile(rates, [0.025, 0.975])) if rates else None
    return {"threshold": float(threshold), "answered": n, "errors": errors,
            "rate": errors / n if n else None, "coverage": n / len(labels), "ci": ci}


def judge(bundle: Bundle, rows: list[dict], tokens: list[list]) -> dict[str, np.ndarray]:
    """A bundle's scores of the rows: its HALT, its combiner, its mean_logprob risk."""
    out: dict[str, np.ndarray] = {}
    halt = None
    if bundle.halt is not None:
        halt = np.array([r.risk for r in bundle.halt.score_batch(tokens)])
        out["halt"] = halt
    if bundle.combiner is not None:
        out["combiner"] = np.array([bundle.combiner.risk(
            {**r["scores"], **({"halt": float(halt[i])} if halt is not None else {})})
            for i, r in enumerate(rows)])
    neg_mean = np.array([r["scores"].get("neg_mean_logprob", np.nan) for r in rows])
    out["mean_logprob"] = neg_mean / (1.0 + neg_mean)
    return out


def _fmt(ci) -> str:
    return f"[{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "[–]"


def before_after(recording: Path, new: Bundle, old: Bundle | None, *,
                 only: set[str] | None = None, exclude: set[str] = frozenset(),
                 ) -> tuple[str, dict]:
    """The markdown tables and the figures (for a RESULT line) of old vs new."""
    from evaluation.evaluate import read_results
    from evaluation.recording_data import halt_records

    results = read_results(recording / "results.jsonl")
    answers = {a["id"]: a["tokens"] for a in halt_records(recording)}
    ids = [i for i in held_out_ids(new) if i in answers and i not in exclude
           and (only is None or i in only)]
    rows = [results[i] for i in ids]
    tokens = [answers[i] for i in ids]
    y = np.array([r["hallucinated"] for r in rows], dtype=bool)
    src = np.array([r["source"] for r in rows])
    figures: dict = {"items": len(ids), "correct": int((~y).sum())}
    if len(ids) == 0 or y.all() or not y.any():
        return (f"Before/after: {len(ids)} held-out labelled items, {int((~y).sum())} "
                "correct: both classes are needed to compare.\n", figures)
    bundles = {"new": new} if old is None else {"old": old, "new": new}
    judged = {tag: judge(b, rows, tokens) for tag, b in bundles.items()}
    scores = {f"{tag} {what}": s for tag, got in judged.items() for what, s in got.items()
              if what != "mean_logprob"}
    scores["−mean token logprob"] = judged["new"]["mean_logprob"]
    boot = paired_source_bootstrap(scores, y, src, resamples=RESAMPLES, seed=0)
    counts = {str(k): int(v) for k, v in zip(*np.unique(src, return_counts=True), strict=True)}
    lines = [f"{len(ids)} held-out labelled items ({int((~y).sum())} correct), neither "
             f"bundle fitted on them; sources {counts}.", "",
             "| score | pooled AUROC [95% CI] | mean of per-source AUROC [95% CI] |",
             "|---|---|---|"]
    for name, s in scores.items():
        pooled = auroc(s, y)
        mean = mean_source_auroc(s, y, src)
        ci = (tuple(np.quantile(boot[name], [0.025, 0.975])) if len(boot[name]) else None)
        lines.append(f"| {name} | {pooled:.3f} {_fmt(bootstrap_interval(auroc, s, y))} | "
                     f"{mean:.3f} {_fmt(ci)} |" if mean is not None else
                     f"| {name} | {pooled:.3f} | – |")
        figures[name.replace(" ", "_").replace("−", "neg_")] = mean
    if old is not None:
        lines += ["", "Paired difference, new − old, mean of per-source AUROC:", ""]
        for what in ("halt", "combiner"):
            a, b = boot.get(f"new {what}"), boot.get(f"old {what}")
            if a is not None and b is not None and len(a) and len(a) == len(b):
                diff = a - b
                lo, hi = np.quantile(diff, [0.025, 0.975])
                point = (mean_source_auroc(scores[f"new {what}"], y, src)
                         - mean_source_auroc(scores[f"old {what}"], y, src))
                lines.append(f"- {what}: {point:+.3f} [{lo:+.3f}, {hi:+.3f}]")
                figures[f"diff_{what}"] = point
    lines += ["", "At each bundle's answer threshold (abstain when risk >= threshold):", "",
              "| bundle | detector | threshold | answered | hallucinated among answered "
              "[95% CI] | coverage |", "|---|---|---|---|---|---|"]
    for tag, bundle in bundles.items():
        for det in ("halt", "mean_logprob"):
            if det not in judged[tag]:
                continue
            got = answered_rate(judged[tag][det], bundle.answer_threshold(det), y)
            if got is None:
                continue
            rate = f"{got['rate']:.3f} {_fmt(got['ci'])}" if got["rate"] is not None else "–"
            lines.append(f"| {tag} ({bundle.name}) | {det} | {got['threshold']:.3f} | "
                         f"{got['errors']} / {got['answered']} | {rate} | "
                         f"{got['coverage']:.3f} |")
            figures[f"{tag}_{det}_answered_rate"] = got["rate"]
            figures[f"{tag}_{det}_coverage"] = got["coverage"]
    return "\n".join(lines) + "\n", figures
