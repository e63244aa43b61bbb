"""``hallgate halt ...``: collect, train and evaluate the HALT detector.

The logic lives in ``detectors.halt`` (collect, pipeline); these commands parse arguments,
obtain a sampler from ``proxy.sampler`` and print results.
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import typer

from evaluation.data import DEFAULT_DATA_DIR

app = typer.Typer(help="HALT detector: collect answers with logprobs, train, evaluate.")


def _command_line() -> str:
    return "hallgate halt " + " ".join(shlex.quote(a) for a in sys.argv[2:])


@app.command()
def train(
    data: list[Path] = typer.Option([], "--data", help="JSONL(.gz) answers with logprobs; "
                                    "repeat for several files."),
    out: Path = typer.Option(..., "--out", help="Directory for NAME.pt / NAME.json."),
    name: str = typer.Option("halt", help="Checkpoint file stem."),
    arch: str = typer.Option("small", help="full (BiGRU 5x256) or small (BiGRU 2x128)."),
    epochs: int = typer.Option(60, help="Maximum epochs (early stopping may end sooner)."),
    seed: int = typer.Option(42, help="Seed of the split, the weights and the batch order."),
    batch_size: int = typer.Option(32, help="Training batch size."),
    upstream_model: str = typer.Option("SmolLM2-135M-Instruct (Q4_1, llama.cpp)",
                                       help="The generator the data came from."),
    threads: int = typer.Option(1, help="torch threads (the dev machine has 2 cores)."),
    synthetic: int = typer.Option(0, help="Smoke test: N synthetic answers, no --data."),
    test_data: list[Path] = typer.Option([], "--test-data", help="JSONL(.gz) answers kept "
                                         "for the test only (then --data is split 85/15 "
                                         "into train and validation)."),
    balance_by_source: bool = typer.Option(False, "--balance-by-source", help="Weigh every "
                                           "(source, label) group the same in the loss."),
    select_by: str = typer.Option("macro_f1", "--select-by", help="macro_f1 or "
                                  "source_auroc (mean of per-source validation AUROCs): "
                                  "what picks the epoch kept."),
) -> None:
    """Train HALT with the reference recipe; report validation and held-out test metrics."""
    import torch

    from detectors.halt.pipeline import run_training
    from detectors.halt.train import TrainConfig

    if not data and not synthetic:
        raise typer.BadParameter("give --data FILE (or --synthetic N for a smoke test)")
    torch.set_num_threads(threads)
    if select_by not in ("macro_f1", "source_auroc"):
        raise typer.BadParameter("--select-by is macro_f1 or source_auroc")
    cfg = TrainConfig(max_epochs=epochs, seed=seed, batch_size=batch_size,
                      balance_by_source=balance_by_source, select_by=select_by)

    def show(row: dict) -> None:
        typer.echo(f"epoch {row['epoch']:3d} loss {row['train_loss']:.4f} "
                   f"val macro-F1 {row['val_macro_f1']:.4f} AUROC {row['val_auroc']:.4f} "
                   f"per-source AUROC {row['val_source_auroc']:.4f} "
                   f"lr {row['lr']:.2e} {row['seconds']:.0f}s")

    summary = run_training(data, out, name, arch, cfg, upstream_model, _command_line(),
                           synthetic=synthetic, on_epoch=show, test_data=test_data)
    typer.echo(json.dumps({k: v for k, v in summary.items() if k not in ("val", "test")},
                          indent=1))


@app.command("train-causal")
def train_causal(
    data: Path = typer.Option(DEFAULT_DATA_DIR / "halt_smollm2_dev.jsonl.gz", "--data",
                              help="JSONL(.gz) answers with logprobs (the HALT data)."),
    split_from: Path = typer.Option(None, "--split-from", help="Checkpoint JSON whose "
                                    "validation and test ids are kept out of training "
                                    "(default: the shipped bidirectional checkpoint)."),
    out: Path = typer.Option(None, "--out", help="Directory (default: the package's "
                             "checkpoints)."),
    epochs: int = typer.Option(30, help="Maximum epochs (early stopping may end sooner)."),
    seed: int = typer.Option(42, help="Seed of the weights and the batch order."),
    threads: int = typer.Option(1, help="torch threads (the dev machine has 2 cores)."),
) -> None:
    """Train causal HALT (forward-only, judged at every prefix) on the split of the
    bidirectional checkpoint; save it with its validation and test metrics."""
    import torch

    from detectors.halt.causal import CAUSAL_NAME, CHECKPOINT_DIR
    from detectors.halt.causal_train import CausalTrainConfig
    from detectors.halt.checkpoint import default_checkpoint_path
    from detectors.halt.pipeline import run_causal_training

    torch.set_num_threads(threads)

    def show(row: dict) -> None:
        typer.echo(f"epoch {row['epoch']:3d} loss {row['train_loss']:.3f} val AUROC "
                   f"8/16/32/full {row['val_auroc_8']:.3f} {row['val_auroc_16']:.3f} "
                   f"{row['val_auroc_32']:.3f} {row['val_auroc_full']:.3f} "
                   f"{row['seconds']:.0f}s")

    summary = run_causal_training(
        data, split_from or default_checkpoint_path().with_suffix(".json"),
        out or CHECKPOINT_DIR, CAUSAL_NAME, CausalTrainConfig(max_epochs=epochs, seed=seed),
        _command_line(), on_epoch=show)
    typer.echo(json.dumps(summary, indent=1))


@app.command("eval")
def evaluate(
    checkpoint: Path = typer.Option(..., "--checkpoint", help="NAME.pt (NAME.json beside it)."),
    data: list[Path] = typer.Option(..., "--data", help="JSONL(.gz) answers with logprobs."),
    out: Path = typer.Option(..., "--out", help="Directory for halt_eval.json, halt_roc.png."),
) -> None:
    """Macro-F1, AUROC, accuracy per source and overall, with the mean-logprob baseline."""
    from detectors.halt.pipeline import run_evaluation

    typer.echo(json.dumps(run_evaluation(checkpoint, data, out), indent=1))


@app.command()
def collect(
    dataset: str = typer.Option(..., "--dataset",
                                help="nq_open | halueval | svamp | arithmetic"),
    out: Path = typer.Option(..., "--out", help="JSONL output; ids already in it are skipped."),
    upstream: str = typer.Option("local", "--upstream",
                                 help="OpenAI-compatible base URL, or 'local' for the embedded "
                                      "llama.cpp model."),
    model: str | None = typer.Option(None, "--model", help="Upstream model name."),
    limit: int | None = typer.Option(None, "--limit", help="First N items of the dataset."),
    data_dir: Path = typer.Option(DEFAULT_DATA_DIR, "--data-dir",
                                  help="Directory with the QA files (shared/data)."),
    api_key_env: str | None = typer.Option(None, "--api-key-env",
                                           help="Env var holding the upstream's API key."),
    deadline_s: float = typer.Option(300.0, "--deadline-s",
                                     help="Time budget per answer, retries included (a "
                                          "loaded 2-core machine needs minutes)."),
) -> None:
    """Answer a QA set through an upstream with top-20 logprobs and label every answer."""
    import asyncio

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from detectors.halt.collect import collect as run_collect
    from detectors.halt.collect import load_items, pending
    from proxy.config import RetrySettings
    from proxy.sampler import open_sampler

    items = load_items(dataset, data_dir, limit)
    todo = pending(items, out)
    counts = {"correct": 0, "hallucinated": 0, "no_logprobs": 0}

    async def go() -> int:
        api_base = None if upstream == "local" else upstream
        columns = ("[progress.description]{task.description}", BarColumn(),
                   MofNCompleteColumn(), TimeRemainingColumn())
        with Progress(*columns) as progress:
            task = progress.add_task(f"{dataset} -> {out.name}", total=todo)

            def tick(record: dict) -> None:
                counts["correct" if record["correct"] else "hallucinated"] += 1
                counts["no_logprobs"] += 0 if record["tokens"] else 1
                progress.advance(task)

            async with open_sampler(api_base=api_base, model=model, api_key_env=api_key_env,
                                    retry=RetrySettings(deadline_s=deadline_s)) as sampler:
                return await run_collect(items, sampler, out, on_record=tick)

    written = asyncio.run(go()) if todo else 0
    typer.echo(json.dumps({"items": len(items), "skipped": len(items) - todo,
                           "written": written, **counts}))


@app.command("export-recording")
def export_recording(
    recording: Path = typer.Option(..., "--recording", exists=True, file_okay=False,
                                   help="A `hallgate eval --record` directory."),
    out: Path = typer.Option(..., "--out", file_okay=False, help="Writes halt_train.jsonl.gz "
                             "and held_out.jsonl.gz here."),
) -> None:
    """A recording's answers as HALT training data, split by item id (40 % halt_train,
    evaluation/recording_data.py): train with `halt train --data ../shared/data/... --data
    OUT/halt_train.jsonl.gz --test-data OUT/held_out.jsonl.gz`."""
    import gzip

    from evaluation.recording_data import halt_records, recording_split

    out.mkdir(parents=True, exist_ok=True)
    counts: dict[str, dict[str, int]] = {}
    handles = {part: gzip.open(out / f"{part}.jsonl.gz", "wt", encoding="utf-8")
               for part in ("halt_train", "held_out")}
    try:
        for record in halt_records(recording):
            part = recording_split(record["id"])
            handles[part].write(json.dumps(record) + "\n")
            row = counts.setdefault(part, {"answers": 0, "correct": 0})
            row["answers"] += 1
            row["correct"] += int(record["correct"])
    finally:
        for handle in handles.values():
            handle.close()
    typer.echo(json.dumps(counts))


@app.command()
def compare(
    checkpoint: list[Path] = typer.Option(..., "--checkpoint", help="NAME.pt; repeat to "
                                          "compare several."),
    data: list[Path] = typer.Option(..., "--data", help="JSONL(.gz) answers none of the "
                                    "checkpoints trained or validated on."),
    out: Path | None = typer.Option(None, "--out", dir_okay=False, help="JSON report."),
    resamples: int = typer.Option(1000, "--resamples", min=50),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """AUROC of each checkpoint and of -mean token logprob on the same answers: pooled and
    per source, the mean of the per-source AUROCs with a 95 % bootstrap interval, and each
    checkpoint's gain over -mean logprob in that mean with a paired interval."""
    import numpy as np

    from detectors.halt.checkpoint import load_checkpoint
    from detectors.halt.data import load_examples
    from detectors.halt.evaluate import baseline_risks
    from detectors.halt.train import predict_risks
    from detectors.metrics import (
        auroc,
        bootstrap_interval,
        mean_source_auroc,
        paired_source_bootstrap,
        source_aurocs,
    )

    examples = load_examples(data)
    labels = np.array([e.label for e in examples])
    sources = np.array([e.source for e in examples])
    scores = {"-mean logprob": baseline_risks(examples)}
    for path in checkpoint:
        scores[path.stem] = predict_risks(load_checkpoint(path).model, examples)
    samples = paired_source_bootstrap(scores, labels, sources, resamples=resamples, seed=seed)
    report: dict = {"answers": len(examples), "correct": int((labels == 0).sum()),
                    "sources": {s: {"answers": int((sources == s).sum()),
                                    "correct": int(((sources == s) & (labels == 0)).sum())}
                                for s in np.unique(sources)}, "scores": {}}
    base = samples["-mean logprob"]
    for name, s in scores.items():
        row = {"pooled_auroc": auroc(s, labels),
               "pooled_ci": bootstrap_interval(auroc, s, labels, resamples=resamples,
                                               seed=seed),
               "per_source": source_aurocs(s, labels, sources),
               "mean_of_sources": mean_source_auroc(s, labels, sources),
               "mean_of_sources_ci": [float(q) for q in np.quantile(samples[name],
                                                                    [0.025, 0.975])]}
        if name != "-mean logprob":
            gain = samples[name] - base
            row["gain_over_logprob"] = (row["mean_of_sources"]
                                        - report["scores"]["-mean logprob"]["mean_of_sources"])
            row["gain_ci"] = [float(q) for q in np.quantile(gain, [0.025, 0.975])]
        report["scores"][name] = row
        per = " ".join(f"{k}={v:.3f}" for k, v in row["per_source"].items())
        gain = (f"  gain {row['gain_over_logprob']:+.3f} [{row['gain_ci'][0]:+.3f}, "
                f"{row['gain_ci'][1]:+.3f}]" if "gain_ci" in row else "")
        typer.echo(f"{name:24s} pooled {row['pooled_auroc']:.3f}  mean of sources "
                   f"{row['mean_of_sources']:.3f} [{row['mean_of_sources_ci'][0]:.3f}, "
                   f"{row['mean_of_sources_ci'][1]:.3f}]{gain}  {per}")
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=1) + "\n")
