"""A calibration bundle from a recorded corpus and a trained HALT checkpoint.

    .venv/bin/python -m calibration.build \\
        --results recordings/smollm2-135m/results.jsonl \\
        --halt detectors/halt/checkpoints/smollm2-135m-instruct.json \\
        --thresholds detectors/logprob_stats/calibration.json \\
        --model local/smollm2-135m-instruct \\
        --out calibration/bundles/local/smollm2-135m-instruct

The eligible items (HALT never trained on them) are split once, seeded, in halves: the
calibration half gives the combiner, the Learn-then-Test operating points and the score
histograms; the held-out half gives each detector's quality. Answer thresholds are the
ones already chosen on validation data (HALT's checkpoint, the logprob scores' file).
"""

from __future__ import annotations

import hashlib
import json
import math
import shlex
import shutil
import sys
from pathlib import Path

import numpy as np
import typer

from calibration.bundle import FORMAT_VERSION, MANIFEST, load_bundle, sha256_file
from detectors.metrics import (
    auroc,
    best_macro_f1_threshold,
    bootstrap_interval,
    paired_source_bootstrap,
    prr,
    source_aurocs,
)
from policies.calibration import CalibrationConfig, ltt_threshold, split_indices


def _squash(x: float) -> float:
    """s/(1+s): the logprob detectors' risk of a non-negative score s."""
    return x / (1.0 + x)


# detector -> its risk from a results record's `scores` (the detectors' own formulas)
RISKS = {
    "halt": lambda s: s.get("halt"),
    "edfl": lambda s: s.get("edfl"),
    "semantic": lambda s: s.get("semantic"),
    "mean_logprob": lambda s: None if (x := s.get("neg_mean_logprob")) is None else _squash(x),
    "min_logprob": lambda s: None if (x := s.get("neg_min_logprob")) is None else _squash(x),
    # mean normalised top-k entropy, computed from the answer's top-k logprobs (tune)
    "topk_entropy": lambda s: s.get("topk_entropy"),
    # 1 − exp(mean token logprob): one minus the geometric-mean token probability
    "seq_prob": lambda s: (None if (x := s.get("neg_mean_logprob")) is None
                           else 1.0 - math.exp(-x)),
}
HISTOGRAM_BINS = 20
COMBINED = "learned_combiner"  # the combiner's name as a detector set


def risk_columns(records: list[dict]) -> dict[str, np.ndarray]:
    """detector -> (N,) risks, NaN where a record lacks the score."""
    return {name: np.array([np.nan if (v := fn(r["scores"])) is None else float(v)
                            for r in records]) for name, fn in RISKS.items()}


def quality(risks: np.ndarray, labels: np.ndarray, sources: np.ndarray, seed: int) -> dict:
    keep = ~np.isnan(risks)
    s, y, src = risks[keep], labels[keep], sources[keep]
    out: dict = {"items": int(keep.sum()), "hallucinated": int(y.sum())}
    if len(y) == 0 or y.min() == y.max():
        return out
    per_source = source_aurocs(s, y, src)
    boot = paired_source_bootstrap({"s": s}, y, src, resamples=1000, seed=seed)["s"]
    out.update(pooled_auroc=auroc(s, y), pooled_ci=bootstrap_interval(auroc, s, y, seed=seed),
               per_source=per_source,
               mean_of_sources=float(np.mean(list(per_source.values()))) if per_source
               else None,
               mean_of_sources_ci=(tuple(float(q) for q in np.quantile(boot, [0.025, 0.975]))
                                   if len(boot) else None),
               prr=prr(s, y))
    return out


def histogram(risks: np.ndarray) -> dict | None:
    values = risks[~np.isnan(risks)]
    if not len(values):
        return None
    counts, edges = np.histogram(values, bins=HISTOGRAM_BINS, range=(0.0, 1.0))
    return {"edges": [round(float(e), 6) for e in edges], "counts": counts.tolist()}


FREE = ("halt", "mean_logprob", "min_logprob", "topk_entropy", "seq_prob")  # read the
# answer's own logprobs: no upstream call


def recorded_cost(detail: dict) -> dict | None:
    """A detector's recorded cost from its result dict (``hallgate.detectors.<name>``):
    its ``cost`` object (the semantic gate), else the same counts at the top level
    (EDFL: ``sampler_calls``, ``completion_tokens``, ``wall_s``); None when neither."""
    if detail.get("cost"):
        return detail["cost"]
    if "sampler_calls" in detail:
        return {"sampler_calls": detail["sampler_calls"],
                "completion_tokens": detail.get("completion_tokens", 0),
                "sampling_seconds": detail.get("wall_s", 0.0)}
    return None


def cost(records: list[dict], name: str) -> dict | None:
    """Mean recorded cost per request; the free detectors cost no upstream call."""
    if name in FREE:
        return {"upstream_calls": 0.0, "completion_tokens": 0.0}
    found = [c for r in records
             if (c := recorded_cost((r.get("hallgate") or {}).get("detectors", {}).get(name)
                                    or {}))]
    if not found:
        return None
    ms = [1e3 * (c.get("sampling_seconds", 0.0) + c.get("analysis_seconds", 0.0))
          for c in found]
    return {"upstream_calls": float(np.mean([c.get("sampler_calls", 0) for c in found])),
            "completion_tokens": float(np.mean([c.get("completion_tokens", 0) for c in found])),
            "ms": float(np.mean(ms))}


def operating_points(columns: dict[str, np.ndarray], labels: np.ndarray,
                     alphas: list[float], deltas: list[float]) -> list[dict]:
    out = []
    for name, risks in columns.items():
        keep = ~np.isnan(risks)
        if not keep.any():
            continue
        for alpha in alphas:
            for delta in deltas:
                r = ltt_threshold(risks[keep], labels[keep], CalibrationConfig(alpha, delta))
                out.append({"alpha": alpha, "delta": delta, "detector": name,
                            "threshold": r.threshold, "coverage": r.coverage,
                            "answered": r.answered, "errors": r.errors,
                            "upper_bound": r.upper_bound})
    return out


def _cost_pair(cost: dict | None) -> tuple[float | None, float | None] | None:
    """A recorded cost as calibration.selection.set_cost reads it: (upstream calls,
    completion tokens) per request; None when it was not recorded."""
    return None if cost is None else (cost.get("upstream_calls"), cost.get("completion_tokens"))


def combiner_set(combiner, records: list[dict], cal: np.ndarray, held: np.ndarray,
                 detectors: dict[str, dict], alphas: list[float], deltas: list[float],
                 seed: int) -> dict:
    """The learned combiner as one detector set: its cost (the sum of its detectors'),
    its quality on the held-out half, and its LTT operating points on the calibration
    half's out-of-fold risks (each item scored by a combiner not fitted on it, so the
    bound is not flattered by the fit)."""
    from calibration.selection import set_cost
    from evaluation.combiner import combiner_risks, out_of_fold_risks

    labels = np.array([r["hallucinated"] for r in records], dtype=bool)
    sources = np.array([r["source"] for r in records])
    members = sorted(combiner.detectors())
    summed = set_cost([_cost_pair(detectors.get(d, {}).get("cost")) for d in members])
    oof = out_of_fold_risks(combiner, [records[i] for i in cal], seed=seed)
    held_risks = combiner_risks(combiner, [records[i] for i in held])
    return {"detectors": members,
            "cost": None if summed is None else {
                "upstream_calls": summed.upstream_calls,
                "completion_tokens": summed.completion_tokens},
            "quality": quality(held_risks, labels[held], sources[held], seed),
            "operating_points": operating_points({COMBINED: oof}, labels[cal], alphas,
                                                 deltas)}


def selections(points: list[dict], combined: dict | None, detectors: dict[str, dict],
               ) -> list[dict]:
    """For each (α, δ) of ``points``, the cheapest certified detector set
    (calibration/selection.py): every single detector, and the learned combiner over the
    detectors it reads."""
    from calibration.selection import SELECTION_RULE, Candidate, cheapest_set, set_cost

    everything = [(p, (p["detector"],), "single",
                   set_cost([_cost_pair(detectors.get(p["detector"], {}).get("cost"))]))
                  for p in points]
    if combined is not None:
        summed = set_cost([_cost_pair(combined["cost"])])
        everything += [(p, tuple(combined["detectors"]), "learned", summed)
                       for p in combined["operating_points"]]
    out = []
    for alpha, delta in sorted({(p["alpha"], p["delta"]) for p in points}):
        candidates = [Candidate(members, how, cost, p["threshold"], p["coverage"],
                                p["upper_bound"])
                      for p, members, how, cost in everything
                      if p["alpha"] == alpha and p["delta"] == delta]
        best = cheapest_set(candidates)
        entry = {"alpha": alpha, "delta": delta, "rule": SELECTION_RULE}
        if best is not None:
            entry.update(detectors=list(best.detectors), combine=best.combine,
                         threshold=best.threshold, coverage=best.coverage,
                         upper_bound=best.upper_bound,
                         upstream_calls=None if best.cost is None else best.cost.upstream_calls,
                         completion_tokens=None if best.cost is None
                         else best.cost.completion_tokens)
        out.append(entry)
    return out


def _thresholds(halt_meta: dict | None, stats: dict | None, columns: dict[str, np.ndarray],
                labels: np.ndarray) -> dict[str, dict]:
    """Answer thresholds: HALT's checkpoint's and the logprob scores' file's when given;
    else each logprob score's max macro-F1 threshold on the calibration items (the rule
    the file's were chosen by)."""
    out: dict[str, dict] = {"halt": {"threshold_rule": "none: no HALT for this model"}}
    if halt_meta is not None:
        out["halt"] = {"answer_threshold": float(halt_meta["threshold"]),
                       "prefix_threshold": (halt_meta.get("prefix") or {}).get("threshold"),
                       "threshold_rule": "HALT checkpoint: max macro-F1 on its validation "
                                         "split; prefix threshold on validation prefixes"}
    if stats is not None:
        for name, entry in stats.get("detectors", {}).items():
            out[name] = {"answer_threshold": float(entry["threshold"]),
                         "threshold_rule": stats.get("rule", "")}
    else:
        for name in ("mean_logprob", "min_logprob", "topk_entropy", "seq_prob"):
            if name not in columns:  # no score recorded (topk_entropy in a results file)
                continue
            keep = ~np.isnan(columns[name])
            out[name] = {"answer_threshold": min(1.0, max(0.0, best_macro_f1_threshold(
                             columns[name][keep], labels[keep]))) if keep.any() else None,
                         "threshold_rule": "max macro-F1 on the calibration half "
                                           "(flag risk >= threshold)"}
    for name in ("edfl", "semantic"):
        out[name] = {"threshold_rule": "none: the verdict follows from the profile's h*"}
    return out


def split_records(results: Path, halt: Path | None, seed: int, exclude_pool: bool = True,
                  ) -> tuple[list[dict], list[dict], np.ndarray, np.ndarray]:
    """(all records, the eligible ones, calibration indices, held-out indices): with
    ``exclude_pool``, the items of the shared HALT training pool that ``halt`` did not keep
    for its test are left out; the rest split in seeded halves."""
    from evaluation.data import DEFAULT_DATA_DIR, eligible_ids_filter

    eligible = (eligible_ids_filter(DEFAULT_DATA_DIR, halt) if exclude_pool
                else (lambda _id: True))
    rows = [json.loads(line) for line in results.read_text().splitlines() if line.strip()]
    records = [r for r in rows if eligible(str(r["id"]))]
    cal, held = split_indices(len(records), 0.5, seed)
    return rows, records, cal, held


def build_bundle(results: Path, model: str, out: Path, *, halt: Path | None = None,
                 thresholds: Path | None = None, prefix_thresholds: Path | None = None,
                 description: str = "",
                 alphas: tuple[float, ...] = (0.6, 0.7, 0.8, 0.9),
                 deltas: tuple[float, ...] = (0.1,), seed: int = 0, command: str = "",
                 exclude_pool: bool = True):
    """Write the bundle for ``model`` into ``out`` (see the module docstring); the Bundle."""
    from evaluation.combiner import fit_combiner, usable_features

    foreign = None if halt is not None else "halt"  # the recording's HALT is another model's
    rows, records, cal, held = split_records(results, halt, seed, exclude_pool)
    labels = np.array([r["hallucinated"] for r in records], dtype=bool)
    sources = np.array([r["source"] for r in records])
    columns = {n: c for n, c in risk_columns(records).items()
               if n != foreign and not np.isnan(c).all()}
    cal_records = [records[i] for i in cal]

    out.mkdir(parents=True, exist_ok=True)
    if halt is not None:
        for suffix in (".pt", ".json"):
            shutil.copyfile(halt.with_suffix(suffix), out / f"halt{suffix}")
    try:
        combiner = fit_combiner(cal_records, usable_features(cal_records, set(columns)),
                                seed=seed, provenance={"results": str(results),
                                                       "split": "calibration half",
                                                       "seed": seed})
    except ValueError:  # too few of a class on the calibration half: no learned combiner
        combiner = None
    else:
        combiner.save(out / "combiner.json")

    detectors = _thresholds(json.loads(halt.read_text()) if halt else None,
                            json.loads(thresholds.read_text()) if thresholds else None,
                            {n: c[cal] for n, c in columns.items()}, labels[cal])
    if prefix_thresholds is not None:  # chosen on validation prefixes for this model
        for name, entry in json.loads(prefix_thresholds.read_text())["detectors"].items():
            detectors.setdefault(name, {})["prefix_threshold"] = float(entry["threshold"])
    for name, risks in columns.items():
        entry = detectors.setdefault(name, {})
        entry["quality"] = quality(risks[held], labels[held], sources[held], seed)
        entry["histogram"] = histogram(risks[cal])
    for name, entry in detectors.items():
        entry["cost"] = cost(records, name)
    points = operating_points({n: c[cal] for n, c in columns.items()}, labels[cal],
                              list(alphas), list(deltas))
    combined = None if combiner is None else combiner_set(
        combiner, records, cal, held, detectors, list(alphas), list(deltas), seed)

    manifest = {
        "format_version": FORMAT_VERSION,
        "model": {"name": model, "aliases": [], "description": description},
        "command": command,
        "halt": None if halt is None else {
            "weights": {"file": "halt.pt", "sha256": sha256_file(out / "halt.pt")},
            "meta": {"file": "halt.json", "sha256": sha256_file(out / "halt.json")}},
        "detectors": detectors,
        "combiner": None if combiner is None else {
            "file": "combiner.json", "sha256": sha256_file(out / "combiner.json")},
        "operating_points": points,
        "combiner_set": combined,
        "selections": selections(points, combined, detectors),
        "data": {"results": str(results), "sha256": hashlib.sha256(
                     results.read_bytes()).hexdigest(),
                 "items": len(records), "hallucinated": int(labels.sum()),
                 "sources": {str(s): int((sources == s).sum()) for s in np.unique(sources)},
                 "excluded": (f"{len(rows) - len(records)} items of the shared HALT "
                              "training pool" if exclude_pool else
                              "none here (the results hold only items HALT never saw)"),
                 "calibration_items": len(cal), "held_out_items": len(held), "seed": seed},
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return load_bundle(out, names={model})


def main(results: Path = typer.Option(..., exists=True, dir_okay=False,
                                      help="A recording's results.jsonl."),
         halt: Path | None = typer.Option(None, exists=True, dir_okay=False,
                                          help="HALT checkpoint JSON (its .pt beside it) "
                                               "trained on this model; none: no HALT."),
         thresholds: Path | None = typer.Option(
             None, exists=True, dir_okay=False, help="The logprob scores' calibration.json "
             "for this model; none: chosen on the calibration half."),
         prefix_thresholds: Path | None = typer.Option(
             None, exists=True, dir_okay=False, help="The logprob scores' prefix.json for "
             "this model (progressive prefix thresholds); none: their answer thresholds."),
         model: str = typer.Option(..., help="The model name clients send."),
         out: Path = typer.Option(..., help="The bundle directory to write."),
         description: str = typer.Option("", help="Quantisation, serving stack."),
         alphas: str = typer.Option("0.6,0.7,0.8,0.9", help="Target risks α."),
         deltas: str = typer.Option("0.1", help="δ values."),
         seed: int = typer.Option(0)) -> None:
    """Write a calibration bundle for MODEL from a recorded corpus."""
    bundle = build_bundle(results, model, out, halt=halt, thresholds=thresholds,
                          prefix_thresholds=prefix_thresholds, description=description,
                          alphas=tuple(float(a) for a in alphas.split(",")),
                          deltas=tuple(float(d) for d in deltas.split(",")), seed=seed,
                          command="python -m calibration.build " + shlex.join(sys.argv[1:]))
    data = bundle.manifest.data
    typer.echo(f"wrote {bundle.name} to {out}: {data.items} items "
               f"({data.calibration_items} calibration, {data.held_out_items} held out)")


if __name__ == "__main__":
    typer.run(main)
