"""``hallgate calibrate-logprob-stats``: thresholds of the four logprob-score detectors,
chosen on validation answers, and their AUROC on held-out answers beside HALT's.

    hallgate calibrate-logprob-stats --recording recordings/smollm2-135m \
        --out detectors/logprob_stats/calibration.json --report docs/logprob_stats.json

Validation (thresholds): the HALT training file's validation split (``split.val_ids`` of
the shipped checkpoint) plus the recorded corpus's calibration half (the same seeded split
`hallgate calibrate` uses). Held out (reported only): the checkpoint's test split and the
corpus's other half. Each threshold maximises macro-F1 on validation, the rule HALT's
checkpoint threshold was chosen by, so the two read the same way in a profile.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import typer

from evaluation.data import DEFAULT_DATA_DIR

NAMES = ("mean_logprob", "min_logprob", "topk_entropy", "seq_prob")


def risks_of(records: Sequence[dict]) -> dict[str, np.ndarray]:
    """Each detector's risk on each record (records without logprobs are left out by the
    caller). {name: (N,)}."""
    from detectors.logprob_stats.stats import scores

    rows = [scores(r["tokens"]) for r in records]
    return {name: np.array([row[name] for row in rows]) for name in NAMES}


def auroc_report(score_sets: dict[str, np.ndarray], labels: np.ndarray, sources: np.ndarray,
                 *, resamples: int, seed: int) -> dict:
    """Pooled AUROC with a bootstrap interval, per-source AUROCs and their mean with a
    paired-bootstrap interval (resampled within sources), for every score."""
    from detectors.metrics import (
        auroc,
        bootstrap_interval,
        mean_source_auroc,
        paired_source_bootstrap,
        source_aurocs,
    )

    samples = paired_source_bootstrap(score_sets, labels, sources, resamples=resamples,
                                      seed=seed)
    out = {}
    for name, s in score_sets.items():
        out[name] = {
            "pooled_auroc": auroc(s, labels),
            "pooled_ci": bootstrap_interval(auroc, s, labels, resamples=resamples, seed=seed),
            "per_source": source_aurocs(s, labels, sources),
            "mean_of_sources": mean_source_auroc(s, labels, sources),
            "mean_of_sources_ci": [float(q) for q in np.quantile(samples[name],
                                                                 [0.025, 0.975])],
        }
    return out


def _split_records(data: Path, checkpoint: Path, recording: Path | None,
                   ) -> dict[str, list[dict]]:
    """{"validation": [...], "halt_test": [...], "corpus_held_out": [...]} with tokens."""
    from detectors.halt.data import read_records
    from policies.calibration import split_indices

    split = json.loads(checkpoint.read_text())["split"]
    val_ids, test_ids = set(split["val_ids"]), set(split["test_ids"])
    halt = [r for r in read_records(data) if r.get("tokens")]
    parts = {"validation": [r for r in halt if str(r["id"]) in val_ids],
             "halt_test": [r for r in halt if str(r["id"]) in test_ids],
             "corpus_held_out": []}
    if recording is not None:
        from evaluation.evaluate import read_results
        from evaluation.recording_data import halt_records

        # the split `hallgate calibrate` makes: results sorted by id, seeded, half and half
        ids = sorted(read_results(recording / "results.jsonl"))
        cal, _ = split_indices(len(ids), 0.5, 0)
        calibration = {ids[i] for i in cal}
        for record in halt_records(recording):
            if record.get("tokens"):
                part = "validation" if record["id"] in calibration else "corpus_held_out"
                parts[part].append(record)
    return parts


def _halt_risks(records: Sequence[dict]) -> np.ndarray:
    from detectors.halt.checkpoint import default_checkpoint_path, load_checkpoint
    from detectors.halt.data import example_from_record
    from detectors.halt.train import predict_risks

    examples = [example_from_record(r) for r in records]
    return predict_risks(load_checkpoint(default_checkpoint_path()).model, examples)


def _coverage(risk: np.ndarray, labels: np.ndarray, threshold: float) -> dict:
    """What the threshold means on these answers: the share answered and their error."""
    answered = risk < threshold
    return {"answered": float(answered.mean()),
            "hallucination_rate_answered": (float(labels[answered].mean())
                                            if answered.any() else None),
            "correct_kept": (float(answered[labels == 0].mean())
                             if (labels == 0).any() else None)}


def calibrate_logprob_stats(
    data: Path = typer.Option(DEFAULT_DATA_DIR / "halt_smollm2_dev.jsonl.gz", "--data",
                              exists=True, dir_okay=False,
                              help="HALT's training answers (JSONL.gz)."),
    checkpoint: Path = typer.Option(Path("detectors/halt/checkpoints/"
                                         "smollm2-135m-instruct.json"), "--checkpoint",
                                    exists=True, dir_okay=False,
                                    help="The checkpoint JSON whose split to use."),
    recording: Path | None = typer.Option(None, "--recording", exists=True, file_okay=False,
                                          help="A recorded corpus (results.jsonl + "
                                               "exchanges): its calibration half joins "
                                               "validation, its other half is reported."),
    out: Path = typer.Option(Path("detectors/logprob_stats/calibration.json"), "--out",
                             dir_okay=False, help="The thresholds the detectors load."),
    report: Path | None = typer.Option(None, "--report", dir_okay=False,
                                       help="The full JSON report (AUROCs, coverage)."),
    resamples: int = typer.Option(1000, "--resamples", min=50),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Choose each logprob detector's threshold on validation answers; report AUROC
    (pooled and mean within source, 95 % bootstrap intervals) on held-out answers, with
    HALT on the same answers."""
    from detectors.metrics import best_macro_f1_threshold

    parts = _split_records(data, checkpoint, recording)
    val = parts["validation"]
    val_y = np.array([int(bool(r["hallucinated"])) for r in val])
    val_risks = risks_of(val)
    thresholds = {name: best_macro_f1_threshold(val_risks[name], val_y) for name in NAMES}
    val_sources = np.array([str(r.get("source", "unknown")) for r in val])
    val_rows = auroc_report(val_risks, val_y, val_sources, resamples=resamples, seed=seed)
    # the best on validation (mean within source; ties: the first in NAMES) is the one the
    # fast-factual profile pairs with HALT
    best = max(NAMES, key=lambda n: (val_rows[n]["mean_of_sources"], -NAMES.index(n)))
    halt_threshold = float(json.loads(checkpoint.read_text())["threshold"])
    args = (("data", data), ("checkpoint", checkpoint), ("recording", recording))
    full: dict = {"command": "hallgate calibrate-logprob-stats " + " ".join(
                      f"--{k} {os.path.relpath(v)}" for k, v in args if v is not None),
                  "rule": "max macro-F1 on validation (flag risk >= threshold)",
                  "validation": {"answers": len(val), "correct": int((val_y == 0).sum()),
                                 "scores": val_rows},
                  "thresholds": thresholds, "best_on_validation": best,
                  "halt_threshold": halt_threshold, "held_out": {}}
    for part in ("halt_test", "corpus_held_out"):
        records = parts[part]
        if not records:
            continue
        y = np.array([int(bool(r["hallucinated"])) for r in records])
        sources = np.array([str(r.get("source", "unknown")) for r in records])
        sets = {**risks_of(records), "halt": _halt_risks(records)}
        rows = auroc_report(sets, y, sources, resamples=resamples, seed=seed)
        for name in NAMES:
            rows[name]["at_threshold"] = _coverage(sets[name], y, thresholds[name])
        rows["halt"]["at_threshold"] = _coverage(sets["halt"], y, halt_threshold)
        # fast-factual: HALT and the best score, combine any (answer only when both do)
        both = np.maximum(sets["halt"] >= halt_threshold, sets[best] >= thresholds[best])
        rows[f"halt+{best} (any)"] = {"at_threshold": _coverage(both.astype(float), y, 0.5)}
        full["held_out"][part] = {"answers": len(records), "correct": int((y == 0).sum()),
                                  "scores": rows}
        for name, row in rows.items():
            if "pooled_auroc" not in row:
                continue
            ci = row["mean_of_sources_ci"]
            typer.echo(f"{part:16s} {name:13s} pooled {row['pooled_auroc']:.3f} "
                       f"[{row['pooled_ci'][0]:.3f}, {row['pooled_ci'][1]:.3f}]  mean of "
                       f"sources {row['mean_of_sources']:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]")
    calibration = {"model": json.loads(checkpoint.read_text()).get("upstream_model"),
                   "rule": full["rule"], "validation": full["validation"],
                   "command": full["command"],
                   "detectors": {name: {"threshold": round(t, 6)}
                                 for name, t in thresholds.items()}}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(calibration, indent=1) + "\n")
    typer.echo(f"thresholds {json.dumps({k: round(v, 4) for k, v in thresholds.items()})} "
               f"-> {out}")
    if report is not None:
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(json.dumps(full, indent=1) + "\n")
