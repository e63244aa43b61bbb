"""``hallgate tune --replay recordings/<model>``: a calibration bundle for one model from
its recording, with a HALT trained on that model's own logprobs. No upstream call.

    hallgate tune --replay recordings/smollm2-135m --model local/smollm2-135m-instruct \\
        --out calibration/bundles/local/smollm2-135m-instruct

    1. the recording's answers with their top-20 logprobs (evaluation/recording_data.py);
       its ``halt_train`` items (40 %, by a hash of the id) train HALT (small BiGRU, CPU)
    2. the new HALT scores the other items' answers
    3. those items, with every recorded detector score, make the bundle
       (calibration/build.py): seeded halves for fitting and for judging
    4. REPORT.md (the tables, the detectors that do not pay for themselves), HALT's ROC
       plot, and policy-snippet.yaml (profiles at the certified target risks)
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import Progress

from calibration.build import build_bundle
from calibration.bundle import Bundle
from calibration.show import operating_table, quality_table
from evaluation.data import DEFAULT_DATA_DIR
from evaluation.tune_live import LiveOptions, TuneError, default_policy, record_live

FREE_BASELINE = "mean_logprob"  # what a detector must beat within source to pay for itself


def unpaid(bundle: Bundle) -> list[str]:
    """Detectors that cost upstream calls yet rank this model's held-out answers no
    better, within source, than the free −mean token logprob."""
    dets = bundle.manifest.detectors
    base = dets.get(FREE_BASELINE)
    floor = base.quality.mean_of_sources if base and base.quality else None
    out = []
    for name, det in dets.items():
        calls = det.cost.upstream_calls if det.cost else None
        q = det.quality.mean_of_sources if det.quality else None
        if (calls is None or calls > 0) and q is not None and floor is not None and q <= floor:
            out.append(name)
    return out


def policy_snippet(bundle: Bundle) -> str:
    """A profile per target risk α with a certified threshold: the free detector with the
    highest coverage at α (cheapest first, then coverage)."""
    free = {n for n, d in bundle.manifest.detectors.items()
            if d.cost is not None and d.cost.upstream_calls == 0}
    lines = [f"# profiles certified on {bundle.name} ({bundle.model}); merge into a policy",
             "profiles:"]
    alphas = sorted({p.alpha for p in bundle.manifest.operating_points})
    for alpha in alphas:
        points = [p for p in bundle.manifest.operating_points if p.alpha == alpha
                  and p.threshold is not None and p.detector in free]
        if not points:
            continue
        best = max(points, key=lambda p: p.coverage)
        detectors = "{halt: {enabled: false}, " + best.detector + ": {enabled: true}}" \
            if best.detector != "halt" else "{halt: {enabled: true}}"
        lines += [f"  risk-{round(alpha * 100)}:  # coverage {best.coverage:.3f} on the "
                  "calibration half",
                  f"    detectors: {detectors}",
                  f"    target_risk: {alpha:g}", f"    target_delta: {best.delta:g}",
                  "    uncalibrated: abstain"]
    return "\n".join(lines) + "\n"


def report(bundle: Bundle, halt_metrics: dict) -> str:
    unpaid_list = unpaid(bundle)
    verdict = (f"Detectors that do not pay for themselves on this model (upstream calls, "
               f"no better within source than free −mean logprob): "
               f"{', '.join(unpaid_list)}." if unpaid_list else
               "Every detector that costs upstream calls ranks better within source than "
               "−mean logprob here.")
    data = bundle.manifest.data
    return (f"# Calibration of {bundle.model}: bundle {bundle.name}\n\n"
            f"{data.items} items ({data.hallucinated} hallucinated), "
            f"{data.calibration_items} calibration, {data.held_out_items} held out.\n\n"
            f"{verdict}\n\n## Quality and cost (held-out half)\n\n{quality_table(bundle)}\n\n"
            f"## Learn-then-Test operating points\n\n{operating_table(bundle)}\n\n"
            f"## HALT trained for this model\n\n![HALT ROC](halt_roc.png)\n\n"
            f"```\n{json.dumps(halt_metrics, indent=1)}\n```\n")


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


def tune_command(
    replay: Path | None = typer.Option(None, "--replay", exists=True, file_okay=False,
                                       help="A recording directory (hallgate eval --record); "
                                       "without it, record live first (tune_live.py)."),
    model: str = typer.Option(..., help="The model name clients send."),
    out: Path = typer.Option(..., help="The bundle directory to write."),
    halt_epochs: int = typer.Option(20, help="HALT's maximum training epochs."),
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
    from evaluation.recording_data import halt_records, recording_split

    console = Console()
    if (replay is not None or from_store is not None) and (dataset or data):
        typer.echo("--replay and --from-store build from what is recorded: drop --dataset "
                   "and --data", err=True)
        raise typer.Exit(2)
    if replay is not None and from_store is not None:
        typer.echo("give --replay or --from-store, not both", err=True)
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
    with Progress(console=console, transient=True) as progress:
        step = progress.add_task("reading the recording", total=4)
        answers = halt_records(replay)
        train = [a for a in answers if recording_split(a["id"]) == "halt_train"]
        held = [a for a in answers if recording_split(a["id"]) == "held_out"]
        problems = class_problems({"halt_train": train, "held_out": held})
        risks = None  # no HALT for this model when a part lacks either class
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
                                   TrainConfig(max_epochs=halt_epochs, seed=seed), model,
                                   "hallgate tune " + shlex.join(sys.argv[2:]))
            progress.update(step, advance=1, description="scoring the held-out answers")
            scorer = HaltScorer.load(work / "halt")
            risks = {a["id"]: r.risk for a, r in zip(held, scorer.score_batch(
                [a["tokens"] for a in held]), strict=True)}
        rows = [json.loads(line) for line in results.read_text().splitlines()
                if line.strip()]
        kept = [{"id": r["id"], "source": r["source"], "hallucinated": r["hallucinated"],
                 "scores": {**r["scores"], "halt": risks[r["id"]]} if risks else r["scores"],
                 "hallgate": {"detectors": {n: {"cost": d["cost"]} for n, d in (
                     r.get("hallgate") or {}).get("detectors", {}).items() if d.get("cost")}}}
                for r in rows if risks is None or r["id"] in risks]
        out.mkdir(parents=True, exist_ok=True)
        data = out / "calibration_data.jsonl"
        data.write_text("".join(json.dumps(r) + "\n" for r in kept))
        progress.update(step, advance=1, description="fitting thresholds and the combiner")
        bundle = build_bundle(data, model, out, halt=work / "halt.json" if risks else None,
                              seed=seed,
                              command="hallgate tune " + shlex.join(sys.argv[2:]),
                              exclude_pool=False)
        progress.update(step, advance=1)
    if risks:
        (work / "halt_roc.png").replace(out / "halt_roc.png")
    (out / "REPORT.md").write_text(report(bundle, metrics))
    (out / "policy-snippet.yaml").write_text(policy_snippet(bundle))
    trained = f"{len(train)} answers trained HALT" if risks else "no HALT"
    console.print(f"wrote {bundle.name} to {out} for {model} ({trained}, {len(kept)} "
                  f"calibrated and judged); see {out / 'REPORT.md'}")
    if from_store is not None:
        console.print(refit.finish(out, replay, exported, model, baseline))
