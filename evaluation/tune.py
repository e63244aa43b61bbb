"""``hallgate tune --replay recordings/<model>``: a calibration bundle for one model from
its recording, with a HALT trained on that model's own logprobs. No upstream call.

    hallgate tune --replay recordings/smollm2-135m --model local/smollm2-135m-instruct \\
        --out calibration/bundles/local/smollm2-135m-instruct

    1. the recording's answers with their top-20 logprobs (evaluation/recording_data.py);
       its ``halt_train`` items (40 %, by a hash of the id) train HALT (small BiGRU, CPU)
    2. the new HALT scores the other items' answers, and their top-k entropy is computed
       from the same logprobs
    3. those items, with every recorded detector score and cost, make the bundle
       (calibration/build.py): seeded halves for fitting and for judging, and the
       cheapest certified detector set per target risk (calibration/selection.py)
    4. REPORT.md (evaluation/tune_report.py: the detectors that do not pay for
       themselves, the choice per target risk, the cost table) with its PNGs
       (evaluation/tune_plots.py) and policy-snippet.yaml (a profile per target risk)
"""

from __future__ import annotations

import json
import shlex
import sys
import time
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import Progress

from calibration.build import build_bundle, recorded_cost
from evaluation.data import DEFAULT_DATA_DIR
from evaluation.tune_live import LiveOptions, TuneError, default_policy, record_live
from evaluation.tune_plots import draw_figures
from evaluation.tune_report import policy_snippet, report


class StageClock:
    """Wall-clock seconds of each stage, read as ``stages: reading 3.1 s, ...``."""

    def __init__(self) -> None:
        self.laps: list[tuple[str, float]] = []
        self._last = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.laps.append((stage, now - self._last))
        self._last = now

    def __str__(self) -> str:
        return ", ".join(f"{name} {seconds:.1f} s" for name, seconds in self.laps)


REQUIRED = ("id", "source", "hallucinated", "scores")  # what every results line must have


def check_results(path: Path) -> list[str]:
    """Every problem of a results JSONL file as ``file:line: what``."""
    problems = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(f"{path}:{number}: not JSON ({exc.msg})")
            continue
        missing = [k for k in REQUIRED if not isinstance(row, dict) or k not in row]
        if missing:
            problems.append(f"{path}:{number}: missing {', '.join(missing)}")
    return problems


MIN_PER_CLASS = 5  # correct and hallucinated answers each part needs at least


def class_problems(parts: dict[str, list[dict]]) -> list[str]:
    """Why the parts cannot train and judge HALT (too few of a class), if they cannot."""
    out = []
    for name, answers in parts.items():
        wrong = sum(bool(a["hallucinated"]) for a in answers)
        right = len(answers) - wrong
        if min(right, wrong) < MIN_PER_CLASS:
            out.append(f"the recording's {name} part has {right} correct and {wrong} "
                       f"hallucinated answers; tune needs at least {MIN_PER_CLASS} of each "
                       "(record more items)")
    return out


def parse_alphas(text: str) -> tuple[float, ...]:
    """``--alphas``: comma-separated target risks, each in (0, 1); exit 2 otherwise."""
    try:
        alphas = tuple(float(a) for a in text.split(","))
    except ValueError:
        alphas = ()
    if not alphas or not all(0 < a < 1 for a in alphas):
        typer.echo(f"--alphas {text!r}: give comma-separated target risks in (0, 1)", err=True)
        raise typer.Exit(2)
    return alphas


def source_problem(replay: Path | None, from_store: str | None, live_input: bool) -> str:
    """What is wrong with the choice of data source (recording, store, live), if anything."""
    if replay is not None and from_store is not None:
        return "give --replay or --from-store, not both"
    if (replay is not None or from_store is not None) and live_input:
        return "--replay and --from-store build from what is recorded: drop --dataset and --data"
    return ""


def tune_command(
    replay: Path | None = typer.Option(None, "--replay", exists=True, file_okay=False,
                                       help="A recording directory (hallgate eval --record); "
                                       "without it, record live first (tune_live.py)."),
    model: str = typer.Option(..., help="The model name clients send."),
    out: Path = typer.Option(..., help="The bundle directory to write."),
    halt_epochs: int = typer.Option(20, help="HALT's maximum training epochs."),
    alphas: str = typer.Option("0.6,0.7,0.8,0.9", help="Target risks α to certify "
                               "(comma-separated; a model wrong on most items needs α "
                               "near its error rate)."),
    halt_patience: int = typer.Option(15, help="Epochs without a better validation "
                                      "macro-F1 before HALT's training stops."),
    seed: int = typer.Option(0),
    threads: int = typer.Option(1, help="torch threads."),
    dataset: str | None = typer.Option(None, help="Live: nq_open,svamp,arithmetic,halueval "
                                       "(comma-separated) or all."),
    data: list[Path] = typer.Option([], "--data", exists=True, dir_okay=False, help="Live: "
                                    "a JSONL file of {prompt, gold: [...]} lines (repeatable)."),
    limit: int | None = typer.Option(None, min=1, help="Live: at most N items of each "
                                     "set and of each --data file."),
    budget_calls: int | None = typer.Option(None, min=0, help="Live: upstream calls allowed."),
    budget_tokens: int | None = typer.Option(None, min=0, help="Live: tokens allowed."),
    record: Path | None = typer.Option(None, file_okay=False, help="Live: the recording "
                                       "directory (default: OUT.recording beside the bundle)."),
    gateway_config: Path | None = typer.Option(None, exists=True, dir_okay=False, help="Live: "
                                               "hallgate.yaml whose `models:` names MODEL."),
    yes: bool = typer.Option(False, "--yes", help="Live: start without asking."),
    policy: Path | None = typer.Option(None, exists=True, dir_okay=False, help="Live: the "
                                       "policy whose detectors record (default: evaluate.yaml)."),
    route: str = typer.Option("evaluate", help="Live: its annotating route."),
    max_tokens: int = typer.Option(32, min=1, help="Live: the answer's max_tokens."),
    concurrency: int = typer.Option(2, min=1, help="Live: requests in flight."),
    data_dir: Path = typer.Option(DEFAULT_DATA_DIR, file_okay=False, help="Live: the "
                                  "built-in sets' directory.",
                                  show_default="../shared/data or $HALLGATE_DATA_DIR"),
    from_store: str | None = typer.Option(
        None, "--from-store", help="Refit from the store's labelled exchanges (its URL, or "
        "a SQLite file) instead of a recording; a new version in OUT (evaluation/refit.py)."),
    since: str | None = typer.Option(None, help="--from-store: exchanges from (ISO 8601)."),
    until: str | None = typer.Option(None, help="--from-store: exchanges before (ISO 8601)."),
    mix_builtin: Path | None = typer.Option(None, exists=True, file_okay=False,
                                            help="--from-store: a recording mixed in."),
    baseline: Path | None = typer.Option(None, exists=True, file_okay=False,
                                         help="--from-store: the bundle to compare against "
                                         "(default: the model's shipped bundle)."),
) -> None:
    """Build MODEL's calibration bundle: from its recording (--replay, no upstream call), or
    by recording it live through MODEL's upstream first."""
    import torch

    from detectors.halt.pipeline import run_training
    from detectors.halt.scorer import HaltScorer
    from detectors.halt.train import TrainConfig
    from detectors.logprob_stats.stats import scores as logprob_scores
    from evaluation.recording_data import halt_records, recording_split

    console = Console(soft_wrap=True)  # a path or a message stays whole on its line
    target_risks = parse_alphas(alphas)
    problem = source_problem(replay, from_store, bool(dataset or data))
    if problem:
        typer.echo(problem, err=True)
        raise typer.Exit(2)
    if from_store is not None:
        from evaluation import refit

        replay, exported = refit.prepare(from_store, model, out, since=since, until=until,
                                         mix=mix_builtin)
    elif replay is None:
        try:
            replay = record_live(LiveOptions(
                model, out, dataset, data, limit, budget_calls, budget_tokens, record,
                gateway_config, yes, policy or default_policy(), route, max_tokens,
                concurrency, data_dir, seed), console)
        except TuneError as exc:
            for problem in exc.problems:
                typer.echo(problem, err=True)
            raise typer.Exit(2) from None
    results = replay / "results.jsonl"
    problems = check_results(results) if results.is_file() else [f"{results}: no such file"]
    if problems:
        for problem in problems[:20]:
            typer.echo(problem, err=True)
        raise typer.Exit(2)
    torch.set_num_threads(threads)
    console.print(f"replay of {replay}: 0 upstream calls, 0 tokens")
    work = out.parent / f".{out.name}.work"
    work.mkdir(parents=True, exist_ok=True)
    clock = StageClock()
    with Progress(console=console, transient=True) as progress:
        step = progress.add_task("reading the recording", total=4)
        answers = halt_records(replay)
        train = [a for a in answers if recording_split(a["id"]) == "halt_train"]
        held = [a for a in answers if recording_split(a["id"]) == "held_out"]
        problems = class_problems({"halt_train": train, "held_out": held})
        risks = None  # no HALT for this model when a part lacks either class
        clock.lap("reading")
        if problems:
            metrics = {"halt": "none", "why": problems}
            console.print("[yellow]HALT is not trained (the bundle says `halt: null`): "
                          + "; ".join(problems))
        else:
            (work / "halt_train.jsonl").write_text("".join(json.dumps(a) + "\n"
                                                           for a in train))
            progress.update(step, advance=1,
                            description=f"training HALT on {len(train)} answers")
            metrics = run_training([work / "halt_train.jsonl"], work, "halt", "small",
                                   TrainConfig(max_epochs=halt_epochs, seed=seed,
                                               early_stop_patience=halt_patience), model,
                                   "hallgate tune " + shlex.join(sys.argv[2:]))
            metrics["checkpoint"] = "halt.pt"  # the bundle's copy; the work dir is scratch
            clock.lap("HALT training")
            progress.update(step, advance=1, description="scoring the held-out answers")
            scorer = HaltScorer.load(work / "halt")
            risks = {a["id"]: r.risk for a, r in zip(held, scorer.score_batch(
                [a["tokens"] for a in held]), strict=True)}
        entropy = {a["id"]: (logprob_scores(a["tokens"]) or {}).get("topk_entropy")
                   for a in answers}
        rows = [json.loads(line) for line in results.read_text().splitlines()
                if line.strip()]
        kept = [{"id": r["id"], "source": r["source"], "hallucinated": r["hallucinated"],
                 "scores": {**r["scores"], **({"halt": risks[r["id"]]} if risks else {}),
                            "topk_entropy": entropy.get(r["id"])},
                 "hallgate": {"detectors": {n: {"cost": c} for n, d in (
                     r.get("hallgate") or {}).get("detectors", {}).items()
                     if (c := recorded_cost(d))}}}
                for r in rows if risks is None or r["id"] in risks]
        out.mkdir(parents=True, exist_ok=True)
        data = out / "calibration_data.jsonl"
        data.write_text("".join(json.dumps(r) + "\n" for r in kept))
        clock.lap("scoring")
        progress.update(step, advance=1, description="fitting thresholds and the combiner")
        bundle = build_bundle(data, model, out, halt=work / "halt.json" if risks else None,
                              seed=seed,
                              command="hallgate tune " + shlex.join(sys.argv[2:]),
                              exclude_pool=False,
                              alphas=target_risks)
        clock.lap("bundle")
        progress.update(step, advance=1)
    figures = draw_figures(bundle, data, out, seed)
    if risks:
        (work / "halt_roc.png").replace(out / "halt_roc.png")
        figures += ("halt_roc.png",)
    (out / "REPORT.md").write_text(report(bundle, metrics, figures))
    (out / "policy-snippet.yaml").write_text(policy_snippet(bundle))
    clock.lap("report")
    trained = f"{len(train)} answers trained HALT" if risks else "no HALT"
    console.print(f"wrote {bundle.name} to {out} for {model} ({trained}, {len(kept)} "
                  f"calibrated and judged); see {out / 'REPORT.md'}")
    console.print(f"stages: {clock}")
    if from_store is not None:
        console.print(refit.finish(out, replay, exported, model, baseline))
