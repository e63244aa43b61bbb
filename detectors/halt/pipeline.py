"""What ``hallgate halt train`` and ``hallgate halt eval`` do, minus argument parsing:
load data, split, train, evaluate on the held-out split, write checkpoint and reports."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from detectors.halt.checkpoint import load_checkpoint, save_checkpoint
from detectors.halt.data import (
    Example,
    Split,
    load_examples,
    stratified_split,
    synthetic_examples,
)
from detectors.halt.evaluate import evaluate_model, plot_roc
from detectors.halt.model import HaltConfig, count_parameters
from detectors.halt.train import TrainConfig, train_halt


def _headline(report: dict) -> dict:
    halt, base = report["halt"]["overall"], report["mean_logprob_baseline"]["overall"]
    return {"test_auroc": halt["auroc"], "test_macro_f1": halt["macro_f1"],
            "test_accuracy": halt["accuracy"], "baseline_test_auroc": base["auroc"],
            "baseline_test_macro_f1": base["macro_f1"],
            "test_source_auroc": _mean_of_sources(report["halt"]),
            "baseline_test_source_auroc": _mean_of_sources(report["mean_logprob_baseline"])}


def _mean_of_sources(detector: dict) -> float:
    """The mean of the per-source AUROCs (sources with both classes)."""
    values = [v["auroc"] for k, v in detector.items() if isinstance(v, dict)
              and k != "overall" and v.get("auroc") == v.get("auroc")]  # not NaN
    return sum(values) / len(values) if values else float("nan")


def run_training(data: Sequence[str | Path], out: str | Path, name: str, arch: str,
                 train_config: TrainConfig, upstream_model: str, command: str,
                 synthetic: int = 0, on_epoch: Callable[[dict], None] | None = None,
                 test_data: Sequence[str | Path] = ()) -> dict:
    """Train on ``data`` (or ``synthetic`` generated answers), evaluate, save; the report.
    Without ``test_data`` a seeded 70/15/15 split of ``data`` gives train, validation and
    test; with it, ``data`` less the ids of ``test_data`` is split 85/15 into train and
    validation, and the answers of ``test_data`` are the test set."""
    if synthetic:
        examples: list[Example] = synthetic_examples(synthetic, seed=train_config.seed)
        upstream_model = "synthetic (smoke test only)"
    else:
        examples = load_examples(data)
    test = load_examples(test_data) if test_data else []
    held_out = {e.id for e in test}  # a test answer never trains, even if --data has it
    examples = [e for e in examples if e.id not in held_out]
    fractions = (0.85, 0.15) if test_data else (0.70, 0.15)
    split = stratified_split(examples, seed=train_config.seed, fractions=fractions)
    if test_data:
        split = Split(split.train, split.val, test)
    model_config = HaltConfig.for_arch(arch)
    result = train_halt(split.train, split.val, model_config, train_config, on_epoch)
    report = evaluate_model(result.model, result.threshold, split.test, split.val)
    meta = {
        "upstream_model": upstream_model, "arch": arch,
        "parameters": count_parameters(result.model),
        "metrics": {**_headline(report), "best_epoch": result.best_epoch,
                    "epochs_run": len(result.history), "train_seconds": result.seconds,
                    "torch_threads": torch.get_num_threads(),
                    "val": result.val, "test": {k: report[k] for k in
                                                ("halt", "mean_logprob_baseline")}},
        "train_config": train_config.to_dict(),
        # provenance, relative to where the command ran (no machine's absolute paths)
        "data": [os.path.relpath(p) for p in data] if not synthetic
        else [f"synthetic:{synthetic}"],
        "test_data": [os.path.relpath(p) for p in test_data],
        "split": {"seed": train_config.seed, "fractions": [*fractions,
                                                             round(1 - sum(fractions), 2)],
                  "stratified_by": ["source", "label"], "sizes": [len(split.train),
                  len(split.val), len(split.test)],
                  "val_ids": [e.id for e in split.val], "test_ids": [e.id for e in split.test]},
        "command": command,
        "history": result.history,
    }
    weights = save_checkpoint(out, name, result.model, result.threshold, meta)
    plot_roc(report, Path(out) / f"{name}_roc.png", title=f"HALT ({arch}) on {upstream_model}")
    return {"checkpoint": str(weights), **meta["metrics"]}


def run_evaluation(checkpoint: str | Path, data: Sequence[str | Path], out: str | Path) -> dict:
    """Evaluate on the checkpoint's own test ids when ``data`` holds them (thresholds from
    its validation ids), otherwise on every answer in ``data`` (baseline threshold then
    tuned on those answers, flagged as optimistic in the report)."""
    ckpt = load_checkpoint(checkpoint)
    examples = load_examples(data)
    split = ckpt.meta.get("split", {})
    by_id = {e.id: e for e in examples}
    test = [by_id[i] for i in split.get("test_ids", []) if i in by_id]
    val = [by_id[i] for i in split.get("val_ids", []) if i in by_id]
    items = "checkpoint test split" if test else "all answers in the data"
    if not test:
        test, val = examples, []
    report = evaluate_model(ckpt.model, ckpt.threshold, test, val)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    report["items"] = items
    report["checkpoint"] = str(checkpoint)
    (out / "halt_eval.json").write_text(json.dumps(report, indent=1) + "\n")
    plot_roc(report, out / "halt_roc.png", title=f"HALT on {ckpt.upstream_model}")
    return {"items": items, **_headline(report),
            "per_source": {k: v for k, v in report["halt"].items() if isinstance(v, dict)},
            "baseline_per_source": {k: v for k, v in report["mean_logprob_baseline"].items()
                                    if isinstance(v, dict)}}


def run_causal_training(data: str | Path, split_from: str | Path, out: str | Path, name: str,
                        train_config, command: str,
                        on_epoch: Callable[[dict], None] | None = None) -> dict:
    """Causal HALT on ``data``, split as the checkpoint JSON ``split_from`` was (its
    validation and test ids; the rest trains); test AUROC at every prefix of
    detectors/halt/causal_train.py's PREFIXES, saved with the weights."""
    from detectors.halt import metrics
    from detectors.halt.causal import CausalConfig, save_causal
    from detectors.halt.causal_train import PREFIXES, prefix_risks, train_causal

    split = json.loads(Path(split_from).read_text())["split"]
    examples = load_examples([data])
    by_id = {e.id: e for e in examples}
    val = [by_id[i] for i in split["val_ids"] if i in by_id]
    test = [by_id[i] for i in split["test_ids"] if i in by_id]
    held = set(split["val_ids"]) | set(split["test_ids"])
    train = [e for e in examples if e.id not in held]
    result = train_causal(train, val, CausalConfig(), train_config, on_epoch)
    labels = [e.label for e in test]
    test_metrics = {f"test_auroc_{'full' if k is None else k}":
                    metrics.auroc(prefix_risks(result.model, test, k), labels)
                    for k in PREFIXES}
    meta = {"upstream_model": json.loads(Path(split_from).read_text()).get("upstream_model"),
            "parameters": count_parameters(result.model),
            "metrics": {**test_metrics, "best_epoch": result.best_epoch,
                        "epochs_run": len(result.history), "train_seconds": result.seconds,
                        "torch_threads": torch.get_num_threads(), "val": result.val},
            "train_config": train_config.to_dict(),
            "data": [os.path.relpath(data)],
            "split": {"from": os.path.relpath(split_from), "sizes": [len(train), len(val),
                                                                     len(test)],
                      "val_ids": [e.id for e in val], "test_ids": [e.id for e in test]},
            "command": command, "history": result.history}
    weights = save_causal(Path(out), name, result.model, result.threshold, meta)
    return {"checkpoint": os.path.relpath(weights), "kb": round(weights.stat().st_size / 1024),
            **meta["metrics"]}
