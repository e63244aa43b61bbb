"""``hallgate eval`` and ``hallgate calibrate``: measure the detectors through a running
gateway, then choose a threshold with a finite-sample guarantee.

    hallgate eval --dataset all --limit 40 --policy policies/examples/evaluate.yaml \\
        --route evaluate --out runs/eval            # starts a gateway when no --base-url
    hallgate calibrate --results runs/eval --policy policies/examples/evaluate.yaml \\
        --profile evaluate --target-risk 0.05 --delta 0.1 --out calibrated.yaml

``eval`` sends every question with the official async openai client (real HTTP,
``logprobs=True, top_logprobs=20``) on an ``annotate`` route, so each answer comes back
with the decision it would get; it labels the answer, appends one line per item to
results.jsonl (a rerun skips the ids already there), and writes results.json, report.md
and the plots (see eval_report.py). ``calibrate`` runs policies/calibration.py on a seeded
calibration split of those results and reports on the held-out rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import typer
import yaml
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

from detectors.combiner import answer_features, detector_features
from detectors.halt.metrics import auroc
from detectors.metrics import (
    bootstrap_interval,
    clopper_pearson_upper,
    mean_source_auroc,
    wilson_upper,
)
from evaluation.combiner import (
    combiner_risks,
    feature_matrix,
    fit_combiner,
    usable_features,
)
from evaluation.data import DEFAULT_DATA_DIR, QAItem, is_correct, load_items, messages_for
from evaluation.report import summarise, write_plots, write_report
from policies import load_policy
from policies.calibration import (
    CalibrationConfig,
    KnobEditError,
    answered_mask,
    knob_path,
    ltt_threshold,
    set_profile_knob,
    split_indices,
)
from policies.schema import Policy, Profile
from proxy.embedded import free_port, stop_process

console = Console(stderr=True, soft_wrap=True)  # paths stay whole


class EvalError(RuntimeError):
    """A setup problem the user must fix (shown without a traceback)."""


# --------------------------------------------------------------------------- routing


def route_access(policy: Policy, route_name: str) -> tuple[dict[str, str], str]:
    """Headers and path prefix that reach ``route_name`` with an annotate action.

    The route is chosen by its header (x-hallgate-route), else its path prefix, else it must
    be the default route. Its profile must annotate, or allow ``action`` overrides (then
    ``x-hallgate-action: annotate`` is sent)."""
    names = [r.name for r in policy.routes]
    if route_name not in names:
        raise EvalError(f"route '{route_name}' is not in the policy (routes: {', '.join(names)})")
    route = policy.route(route_name)
    profile: Profile = policy.profiles[route.profile]
    headers: dict[str, str] = {}
    prefix = ""
    if route.match.header:
        headers["x-hallgate-route"] = route.match.header[0]
    elif route.match.path_prefix:
        prefix = route.match.path_prefix[0].rstrip("/")
    elif not route.default:
        raise EvalError(f"route '{route_name}' matches only by model or API key; give it a "
                        f"`header:` condition to evaluate it")
    if profile.action != "annotate":
        if "action" not in profile.allow_overrides:
            raise EvalError(
                f"route '{route_name}' uses profile '{profile.name}' with action "
                f"'{profile.action}': evaluation needs every answer back with its decision. "
                f"Set `action: annotate` in that profile, or add `action` to its "
                f"allow_overrides so the x-hallgate-action header can ask for it.")
        headers["x-hallgate-action"] = "annotate"
    return headers, prefix


# --------------------------------------------------------------------------- gateway


@contextlib.contextmanager
def local_gateway(policy_path: Path, audit_path: Path, startup_timeout_s: float = 600.0,
                  **settings: str) -> Iterator[str]:
    """``hallgate serve --config TMP`` as a child process on a free port, with the given
    policy (the embedded model when no models are configured) and an audit log at
    ``audit_path`` (it holds each detector's full metadata); its log goes to a file.
    ``settings``: more gateway settings (``record_dir``, ``replay_dir``)."""
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="hallgate-eval-"))
    config = workdir / "hallgate.yaml"
    config.write_text(json.dumps({"port": port, "policy_file": str(policy_path.resolve()),
                                  "log_level": "warning",
                                  # a CPU model serves one request at a time: the gates'
                                  # samples queue behind each other, so allow long waits
                                  "retry": {"deadline_s": 1800.0},
                                  "audit": {"path": str(audit_path.resolve())},
                                  **settings}))
    exe = Path(sys.executable).with_name("hallgate")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "proxy.cli"]
    log_path = workdir / "gateway.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen([*cmd, "serve", "--config", str(config)], stdout=log,
                                stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, proc, log_path, startup_timeout_s)
        console.print(f"gateway started at {url} (log {log_path})")
        yield url
    finally:
        stop_process(proc, 60)


def _wait_ready(url: str, proc: subprocess.Popen, log_path: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise EvalError(f"the gateway exited ({proc.returncode}):\n"
                            f"{log_path.read_text()[-3000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        time.sleep(0.5)
    raise EvalError(f"the gateway was not ready after {timeout_s:.0f} s (log {log_path})")


def start_gateways(stack: contextlib.ExitStack, policy_path: Path, out: Path, shards: int,
                   gateway: dict | None, record: bool, replay: Path | None,
                   ) -> tuple[list[str], list[Path]]:
    """``shards`` local gateways, one after another (each one's embedded model gets
    cores / shards threads, and writes its own exchanges file when recording); their URLs
    and audit logs. The CPU model serves one request at a time, so N models answer N
    requests at once."""
    urls, audits = [], []
    for k in range(shards):
        audit_log = out / ("gateway_audit.jsonl" if shards == 1
                           else f"gateway_audit.{k}.jsonl")
        settings = dict(gateway or {})
        if replay:
            settings["replay_dir"] = str(replay.resolve())
            # the answers' embeddings are most of a replay's CPU: keep them for the next
            settings.setdefault("embedding_cache", str((replay / EMBEDDING_CACHE).resolve()))
        elif record:
            settings["record_dir"] = str(out.resolve())
        if shards > 1:
            threads = max(1, (os.cpu_count() or 1) // shards)
            settings["embedded"] = {**settings.get("embedded", {}), "n_threads": threads}
            if record:
                settings["record_part"] = str(k)
        urls.append(stack.enter_context(local_gateway(policy_path, audit_log, **settings)))
        audits.append(audit_log)
    return urls, audits


def sum_counters(counters: list[dict[str, float]]) -> dict[str, float]:
    return {k: sum(c[k] for c in counters) for k in counters[0]}


def gateway_counters(base_url: str) -> dict[str, float]:
    """Upstream calls and tokens so far, summed over models, from /metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    out = {"upstream_calls": 0.0, "prompt_tokens": 0.0, "completion_tokens": 0.0}
    with contextlib.suppress(httpx.HTTPError):
        text = httpx.get(f"{base_url}/metrics", timeout=10).text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "hallgate_upstream_seconds_count":
                    out["upstream_calls"] += sample.value
                elif sample.name == "hallgate_tokens_total":
                    kind = sample.labels.get("kind", "")
                    key = f"{kind}_tokens" if not kind.endswith("tokens") else kind
                    if key in out:
                        out[key] += sample.value
    return out


# --------------------------------------------------------------------------- one item


def _token_logprobs(choice) -> list[float]:
    content = getattr(choice.logprobs, "content", None) if choice.logprobs else None
    return [t.logprob for t in content or [] if t.logprob is not None]


def _detector_cost(detectors: dict) -> tuple[int, int]:
    """(completions requested, completion tokens) the detectors spent on one request."""
    edfl = detectors.get("edfl") or {}
    semantic_cost = (detectors.get("semantic") or {}).get("cost") or {}
    completions = int(edfl.get("samples") or 0) + int(semantic_cost.get("samples") or 0)
    tokens = int(edfl.get("completion_tokens") or 0) + \
        int(semantic_cost.get("completion_tokens") or 0)
    return completions, tokens


class AuditTail:
    """Reads the gateway's audit log as it grows; full detector metadata by request id
    (the response's `hallgate` object carries only status, verdict, risk and reasons)."""

    def __init__(self, path: Path | None):
        self.path, self.offset, self.entries = path, 0, {}

    def scores(self, request_id: str) -> dict | None:
        if self.path is None or not self.path.exists():
            return None
        if request_id not in self.entries:
            # bytes, not text: the offset is a byte position, and a line the gateway is
            # still writing (no newline yet) ends the read until the next call
            with self.path.open("rb") as fh:
                fh.seek(self.offset)
                for line in fh:
                    if not line.endswith(b"\n"):
                        break
                    entry = json.loads(line)
                    self.entries[entry.get("request_id")] = entry.get("scores") or {}
                    self.offset += len(line)
        return self.entries.get(request_id)


def make_record(item: QAItem, response, latency_s: float, request_id: str,
                full_scores: dict | None = None) -> dict:
    """One results.jsonl line: the answer, its label, every score and verdict, the costs.
    ``full_scores``: the audit log's per-detector metadata for this request, if known."""
    choice = response.choices[0]
    answer = choice.message.content or ""
    meta = (response.model_extra or {}).get("hallgate")
    if meta is None:
        raise EvalError("the response has no `hallgate` object: is the route annotating?")
    detectors = {name: {**(full_scores or {}).get(name, {}), **d}
                 for name, d in (meta.get("detectors") or {}).items()}

    def ok(name: str) -> dict:
        d = detectors.get(name) or {}
        return d if d.get("status") == "ok" else {}

    logprobs = _token_logprobs(choice)
    correct = is_correct(item, answer)
    completions, detector_tokens = _detector_cost(detectors)
    usage = response.usage
    return {
        "id": item.id, "source": item.source, "kind": item.kind,
        "gold": list(item.gold), "answer": answer, "finish_reason": choice.finish_reason,
        "correct": correct, "hallucinated": not correct,
        "scores": {  # the combiner's features (one definition: detectors/combiner.py)
            **detector_features({name: ok(name) for name in detectors}),
            **answer_features([{"logprob": lp} for lp in logprobs]),
            "semantic_entropy_prob": ok("semantic").get("entropy_prob"),
            "combined": meta.get("risk"),
        },
        "verdicts": {**{name: d.get("verdict") for name, d in detectors.items()},
                     "combined": meta.get("decision")},
        "request_id": request_id, "audit_detail": full_scores is not None,
        "latency_s": latency_s,
        "answer_tokens": usage.completion_tokens if usage else len(logprobs),
        "prompt_tokens": usage.prompt_tokens if usage else None,
        "detector_tokens": detector_tokens,
        "upstream_completions": 1 + completions,
        "hallgate": {**meta, "detectors": detectors},
    }


# --------------------------------------------------------------------------- the run


def read_results(path: Path) -> dict[str, dict]:
    if not path.exists():
        return {}
    records = {}
    for line in path.read_text().splitlines():
        if line.strip():
            record = json.loads(line)
            records[record["id"]] = record
    return records


@dataclass
class Target:
    """One gateway the items are asked through, and its audit log."""

    url: str  # base URL with the route prefix, without /v1
    audit: AuditTail


async def run_items(items: list[QAItem], targets: list[Target], headers: dict[str, str],
                    model: str, results_path: Path, concurrency: int, max_tokens: int,
                    temperature: float, deadline: float = float("inf"),
                    admit: Callable[[int], bool] | None = None) -> tuple[int, int]:
    """Ask every item through the gateways (item i through ``targets[i % len(targets)]``,
    ``concurrency`` at a time on each), appending records as they come; the failures and
    the items not started before ``deadline`` (time.monotonic()), or that ``admit`` (given
    the number of items in flight) refuses, are left for a rerun. Returns (failures,
    skipped)."""
    import openai

    clients = [openai.AsyncOpenAI(base_url=f"{t.url}/v1", max_retries=1, timeout=900,
                                  api_key=os.environ.get("HALLGATE_API_KEY", "unused"),
                                  default_headers=headers) for t in targets]
    semaphores = [asyncio.Semaphore(concurrency) for _ in targets]
    lock = asyncio.Lock()
    failures: list[str] = []
    skipped: list[str] = []
    run_tag = f"{int(time.time()):x}"
    in_flight = 0
    columns = (*Progress.get_default_columns()[:1], BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    with results_path.open("a") as sink, Progress(*columns, console=console) as progress:
        task = progress.add_task("eval", total=len(items))

        async def one(i: int, item: QAItem) -> None:
            k = i % len(targets)
            client, audit = clients[k], targets[k].audit
            async with semaphores[k]:
                nonlocal in_flight
                if time.monotonic() > deadline or (admit is not None
                                                   and not admit(in_flight)):
                    skipped.append(item.id)
                    progress.advance(task)
                    return
                in_flight += 1
                start = time.perf_counter()
                request_id = f"eval-{item.id}-{run_tag}"
                try:
                    response = await client.chat.completions.create(
                        model=model, messages=messages_for(item), max_tokens=max_tokens,
                        temperature=temperature, seed=zlib.crc32(item.id.encode()) % 2**31,
                        logprobs=True, top_logprobs=20,
                        extra_headers={"x-request-id": request_id})
                    latency = time.perf_counter() - start
                    record = make_record(item, response, latency, request_id,
                                         audit.scores(request_id))
                except (openai.OpenAIError, EvalError) as exc:
                    failures.append(f"{item.id}: {exc}")
                    progress.advance(task)
                    return
                finally:
                    in_flight -= 1
            async with lock:
                sink.write(json.dumps(record) + "\n")
                sink.flush()
            progress.advance(task)

        await asyncio.gather(*(one(i, item) for i, item in enumerate(items)))
    for client in clients:
        await client.close()
    for failure in failures[:10]:
        console.print(f"[red]failed[/red] {failure}")
    if skipped:
        console.print(f"[yellow]budget spent: {len(skipped)} items not asked")
    return len(failures), len(skipped)


def _first_model(base_url: str) -> str:
    data = httpx.get(f"{base_url}/v1/models", timeout=30).json()["data"]
    if not data:
        raise EvalError("the gateway serves no models")
    return data[0]["id"]


EMBEDDING_CACHE = "embeddings.cache.npz"  # a replay's sentence embeddings, beside the recording
ITEMS_FILE = "items.jsonl"  # a recording's items, in the JSONL dataset format
ASKED_FILE = "asked.json"  # how a recording asked its items (max_tokens, temperature)


def write_items(items: list[QAItem], path: Path) -> None:
    with path.open("w") as fh:
        for item in items:
            fh.write(json.dumps({"id": item.id, "source": item.source, "kind": item.kind,
                                 "prompt": item.prompt, "gold": list(item.gold)}) + "\n")


def recorded_items(recording: Path) -> list[QAItem]:
    """The items of a recording whose exchanges are complete (their eval line exists)."""
    items_path = recording / ITEMS_FILE
    if not items_path.exists():
        raise EvalError(f"{recording} is not a recording made by `hallgate eval --record` "
                        f"(no {ITEMS_FILE})")
    done = read_results(recording / "results.jsonl")
    return [item for item in load_items(str(items_path), recording) if item.id in done]


def evaluate(dataset: str, policy_path: Path, route: str, out: Path, *, limit: int | None,
             concurrency: int, base_url: str | None, model: str | None, max_tokens: int,
             temperature: float, seed: int, data_dir: Path, command: str,
             exclude_halt_training: bool = True, audit_log: Path | None = None,
             plots: bool = True, time_budget_s: float | None = None,
             record: bool = False, replay: Path | None = None,
             gateway: dict | None = None, shards: int = 1,
             admit: Callable[[int, dict[str, float]], bool] | None = None) -> dict:
    """The whole ``eval`` run; returns the summary it writes to results.json.

    ``record``: the local gateway appends every upstream exchange to ``out`` (a recording
    directory: items.jsonl, meta.json, exchanges.jsonl.gz beside the results).
    ``replay``: a recording; its complete items are asked again through a local gateway
    that answers every upstream call from the recording (same gateway and detector code,
    no upstream). ``gateway``: more settings for the local gateway (e.g. ``models``, to
    record through an upstream other than the embedded model). ``shards``: local gateways
    to spread the items over (:func:`start_gateways`). ``admit``: asked before each item
    starts, with the items in flight and what the gateways spent so far in this run
    (:func:`gateway_counters`); False leaves the item for a rerun."""
    headers, prefix = route_access(load_policy(policy_path), route)
    if replay is not None:
        if replay.resolve() == out.resolve():
            raise EvalError("--out must differ from the recording being replayed")
        items = recorded_items(replay)
    else:
        items = load_items(dataset, data_dir, per_source=limit, seed=seed,
                           exclude_halt_training=exclude_halt_training)
    if not items:
        raise EvalError(f"no items to evaluate in '{replay or dataset}'")
    out.mkdir(parents=True, exist_ok=True)
    if record and not (out / ITEMS_FILE).exists():
        write_items(items, out / ITEMS_FILE)
        (out / ASKED_FILE).write_text(json.dumps({"max_tokens": max_tokens,
                                                  "temperature": temperature}) + "\n")
    if replay is not None:  # ask exactly what was recorded, or nothing will match
        asked = json.loads((replay / ASKED_FILE).read_text())
        max_tokens, temperature = asked["max_tokens"], asked["temperature"]
    results_path = out / "results.jsonl"
    done = read_results(results_path)
    todo = [item for item in items if item.id not in done]
    console.print(f"{len(items)} items, {len(items) - len(todo)} already in {results_path}")
    with contextlib.ExitStack() as stack:
        if base_url:
            urls, audits = [base_url.rstrip("/")], [audit_log]
        else:
            urls, audits = start_gateways(stack, policy_path, out, shards, gateway, record,
                                          replay)
        model = model or _first_model(urls[0])
        before = sum_counters([gateway_counters(u) for u in urls])
        started = time.perf_counter()
        deadline = time.monotonic() + (time_budget_s or float("inf"))
        targets = [Target(u + prefix, AuditTail(a)) for u, a in zip(urls, audits, strict=True)]

        def admitted(in_flight: int) -> bool:
            now = sum_counters([gateway_counters(u) for u in urls])
            return admit(in_flight, {k: now[k] - before[k] for k in now})

        failures, skipped = asyncio.run(run_items(
            todo, targets, headers, model, results_path, concurrency, max_tokens,
            temperature, deadline, admitted if admit else None)) if todo else (0, 0)
        wall_s = time.perf_counter() - started
        after = sum_counters([gateway_counters(u) for u in urls])
    ids = {item.id for item in items}
    records = [r for r in read_results(results_path).values() if r["id"] in ids]
    asked = len(todo) - failures - skipped
    gateway = {k: round((after[k] - before[k]) / asked, 2) for k in after} if asked else {}
    extra = {"dataset": str(replay) if replay else dataset, "command": command,
             "mode": "replay" if replay else "record" if record else "live",
             "policy": str(policy_path),
             "route": route, "model": model, "max_tokens": max_tokens,
             "temperature": temperature, "seed": seed, "limit_per_source": limit,
             "items": sorted(ids), "exclude_halt_training": exclude_halt_training,
             "failures": failures, "not_asked_time_budget": skipped,
             "wall_s_this_run": round(wall_s, 1),
             "gateway_metrics": {f"{k}_per_request": v for k, v in gateway.items()}}
    summary = summarise(records, seed=seed, extra=extra)
    (out / "results.json").write_text(json.dumps(summary, indent=2))
    write_report(summary, out)
    if records and plots:
        write_plots(records, out)
    return summary


# --------------------------------------------------------------------------- calibrate


def _failed_vote(profile: Profile) -> tuple[float, bool]:
    """A detector without a score: (risk, lets the answer through) under the fail mode."""
    return (1.0, False) if profile.fail_mode == "closed" else (float("-inf"), True)


def calibration_inputs(records: list[dict], profile: Profile, knob: str,
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Per item: the score the knob thresholds, and whether every other detector of the
    profile lets the answer through (from the recorded verdicts; fail mode for failures).

    halt.threshold (combine ``any``): score = HALT risk; the others must answer.
    combine.threshold (``weighted``): score = Σ w_d·risk_d / Σ w_d over the counted
    detectors with the profile's weights (a failed detector: risk 1 if closed, left out
    if open)."""
    enabled = profile.detectors.enabled()
    missing = sorted({d for r in records for d in enabled if d not in r["verdicts"]})
    if missing:
        raise EvalError(f"the results have no {', '.join(missing)} scores; rerun eval with "
                        f"a route that enables every detector of profile '{profile.name}'")
    fail_risk, fail_answers = _failed_vote(profile)
    scores, others = [], []
    for r in records:
        if knob == "halt.threshold":
            halt = r["scores"].get("halt")
            scores.append(halt if halt is not None else
                          (float("inf") if not fail_answers else float("-inf")))
            others.append(all(r["verdicts"][d] == "answer" if r["verdicts"][d] else
                              fail_answers for d in enabled if d != "halt"))
            continue
        terms = []
        for d in enabled:
            risk = r["scores"].get(d)
            if risk is None and not fail_answers:
                risk = fail_risk
            if risk is not None:
                terms.append((profile.combine.weight(d), risk))
        total = sum(w for w, _ in terms)
        scores.append(sum(w * x for w, x in terms) / total if total > 0 else float("-inf"))
        others.append(True)
    return np.array(scores, dtype=np.float64), np.array(others, dtype=bool)


def _held_out_report(scores, others, y, threshold: float | None, delta: float) -> dict:
    if threshold is None:
        return {"items": len(y)}
    answered = answered_mask(scores, threshold, others)
    n, errors = int(answered.sum()), int(y[answered].sum())
    return {"items": len(y), "coverage": n / len(y) if len(y) else None, "answered": n,
            "hallucinated": errors, "hallucination_rate": errors / n if n else None,
            "wilson95_upper": wilson_upper(errors, n), "clopper_pearson_upper":
            clopper_pearson_upper(errors, n, delta)}


def write_calibrated_policy(policy: Path, out: Path, profile: str, knob: str,
                            value: float, note: str) -> str:
    """Edit the knob's line in a copy of the policy text (comments kept); fall back to
    re-dumped YAML when the text cannot be edited in place. Returns how it was written."""
    text = policy.read_text()
    try:
        out.write_text(set_profile_knob(text, profile, knob, value, note))
        how = "edited in place (comments kept)"
    except KnobEditError as exc:
        data = yaml.safe_load(text)
        node = data
        for key in knob_path(profile, knob)[:-1]:
            node = node.setdefault(key, {})
        node[knob.rsplit(".", 1)[1]] = value
        out.write_text(yaml.safe_dump(data, sort_keys=False))
        how = f"re-dumped YAML, comments lost ({exc})"
    written = load_policy(out).profiles[profile]
    actual = written.detectors.halt.threshold if knob == "halt.threshold" \
        else written.combine.threshold
    if actual is None or abs(actual - value) > 1e-9:
        raise EvalError(f"{out}: the knob reads {actual} after writing {value}")
    return how


def run_calibration(results: Path, policy_path: Path, profile_name: str, out: Path, *,
                    target_risk: float, delta: float, knob: str | None,
                    calibration_fraction: float, seed: int) -> bool:
    """The ``calibrate`` command; False when no threshold meets the target."""
    if out.resolve() == policy_path.resolve():
        raise EvalError("--out must differ from --policy: calibrate writes a copy")
    policy = load_policy(policy_path)
    if profile_name not in policy.profiles:
        raise EvalError(f"profile '{profile_name}' is not in {policy_path} "
                        f"(profiles: {', '.join(policy.profiles)})")
    profile = policy.profiles[profile_name]
    knob = knob or ("combine.threshold" if profile.combine.mode == "weighted"
                    else "halt.threshold")
    if (knob == "combine.threshold") != (profile.combine.mode == "weighted"):
        raise EvalError(f"knob {knob} does not decide under combine mode "
                        f"'{profile.combine.mode}' of profile '{profile_name}'")
    records = sorted(read_results(results / "results.jsonl").values(), key=lambda r: r["id"])
    if not records:
        raise EvalError(f"{results}/results.jsonl has no results")
    scores, others = calibration_inputs(records, profile, knob)
    y = np.array([r["hallucinated"] for r in records], dtype=bool)
    cal, held = split_indices(len(records), calibration_fraction, seed)
    config = CalibrationConfig(target_risk=target_risk, delta=delta)
    result = ltt_threshold(scores[cal], y[cal], config, others[cal])
    report = {"profile": profile_name, "knob": knob, "target_risk": target_risk,
              "delta": delta, "seed": seed, "calibration_items": len(cal),
              "threshold": result.threshold, "reason": result.reason,
              "calibration": {"coverage": result.coverage, "answered": result.answered,
                              "hallucinated": result.errors,
                              "clopper_pearson_upper": result.upper_bound},
              "held_out": _held_out_report(scores[held], others[held], y[held],
                                           result.threshold, delta),
              "tests": [vars(t) for t in result.tests]}
    if result.threshold is not None:
        note = (f"hallgate calibrate: alpha {target_risk:g}, delta {delta:g}, coverage "
                f"{result.coverage:.3f} on {len(cal)} calibration items")
        report["written"] = write_calibrated_policy(policy_path, out, profile_name, knob,
                                                    result.threshold, note)
        report["out"] = str(out)
    (results / "calibration.json").write_text(json.dumps(report, indent=2))
    _print_calibration(report)
    return result.threshold is not None


def run_combiner_fit(results: Path, policy_path: Path, profile_name: str, out: Path,
                     combiner_out: Path, *, target_risk: float, delta: float,
                     calibration_fraction: float, seed: int) -> bool:
    """``calibrate --fit-combiner``: fit the learned combiner on one half of the
    calibration split, choose its threshold with Learn-then-Test on the other half (the
    guarantee needs data the model did not see), report on the held-out items, and write
    the combiner JSON and a policy copy whose profile uses it (``combine: learned``)."""
    if out.resolve() == policy_path.resolve():
        raise EvalError("--out must differ from --policy: calibrate writes a copy")
    policy = load_policy(policy_path)
    if profile_name not in policy.profiles:
        raise EvalError(f"profile '{profile_name}' is not in {policy_path}")
    enabled = set(policy.profiles[profile_name].detectors.enabled())
    records = sorted(read_results(results / "results.jsonl").values(), key=lambda r: r["id"])
    features = usable_features(records, enabled)
    y = np.array([r["hallucinated"] for r in records], dtype=bool)
    cal, held = split_indices(len(records), calibration_fraction, seed)
    fit_part, ltt_part = (cal[i] for i in split_indices(len(cal), 0.5, seed + 1))
    try:
        combiner = fit_combiner([records[i] for i in fit_part], features, seed=seed,
                                provenance={"results": str(results), "seed": seed,
                                            "split": "calibrate --fit-combiner"})
    except ValueError as exc:
        raise EvalError(str(exc)) from None
    risks = combiner_risks(combiner, records)  # (N,)
    everyone = np.ones(len(records), dtype=bool)
    config = CalibrationConfig(target_risk=target_risk, delta=delta)
    result = ltt_threshold(risks[ltt_part], y[ltt_part], config, everyone[ltt_part])
    report = {"profile": profile_name, "knob": "combine.threshold (learned)",
              "features": features, "fit_items": len(fit_part), "ltt_items": len(ltt_part),
              "target_risk": target_risk, "delta": delta, "seed": seed,
              "threshold": result.threshold, "reason": result.reason,
              "calibration": {"coverage": result.coverage, "answered": result.answered,
                              "hallucinated": result.errors,
                              "clopper_pearson_upper": result.upper_bound},
              "held_out": {**_held_out_report(risks[held], everyone[held], y[held],
                                              result.threshold, delta),
                           "auroc": auroc(risks[held], y[held])},
              "held_out_comparison": held_out_comparison(
                  [records[i] for i in held], risks[held], features, seed)}
    combiner_out.parent.mkdir(parents=True, exist_ok=True)
    combiner.save(combiner_out)
    if result.threshold is not None:
        data = yaml.safe_load(policy_path.read_text())
        block = data.setdefault("profiles", {}).setdefault(profile_name,
                                                           {"extends": profile_name})
        model = os.path.relpath(combiner_out.resolve(), out.resolve().parent)
        block["combine"] = {"mode": "learned", "model": model,
                            "threshold": float(result.threshold)}
        out.write_text(yaml.safe_dump(data, sort_keys=False))
        load_policy(out)  # the copy must load, combiner included
        report["written"], report["out"] = "re-dumped YAML (comments not kept)", str(out)
    (results / "calibration.json").write_text(json.dumps(report, indent=2))
    _print_calibration(report)
    return result.threshold is not None


def held_out_comparison(records: list[dict], combined: np.ndarray, features: list[str],
                        seed: int) -> dict[str, dict]:
    """The combiner against each of its inputs on the same held-out items: pooled AUROC
    with a bootstrap interval, and the mean of the per-source AUROCs."""
    y = np.array([r["hallucinated"] for r in records], dtype=np.int64)
    sources = np.array([r["source"] for r in records])
    inputs = feature_matrix(records, features)  # (N, F), NaN where a record lacks one
    rows = {"learned combiner": combined,  # items without a feature are left out of its row
            **{name: inputs[:, j] for j, name in enumerate(features)}}
    out = {}
    for name, scores in rows.items():
        ok = ~np.isnan(scores)
        interval = bootstrap_interval(auroc, scores[ok], y[ok], resamples=1000, seed=seed)
        out[name] = {"items": int(ok.sum()), "auroc": auroc(scores[ok], y[ok]),
                     "auroc_ci": list(interval) if interval else None,
                     "mean_of_sources": mean_source_auroc(scores[ok], y[ok], sources[ok])}
    return out


def _print_calibration(report: dict) -> None:
    for name, row in report.get("held_out_comparison", {}).items():
        ci = row["auroc_ci"] or (float("nan"), float("nan"))
        console.print(f"held-out {name:22s} AUROC {row['auroc']:.3f} [{ci[0]:.2f}, "
                      f"{ci[1]:.2f}]  mean of sources {row['mean_of_sources'] or float('nan'):.3f}")
    held = report["held_out"]
    if report["threshold"] is None:
        console.print(f"[red]no threshold meets the target[/red]: {report['reason']}")
        return
    console.print(f"{report['knob']} = {report['threshold']:g} for profile "
                  f"{report['profile']}: {report['reason']}")
    console.print(f"calibration coverage {report['calibration']['coverage']:.3f}; held-out "
                  f"({held['items']} items): coverage {held['coverage']:.3f}, "
                  f"{held['hallucinated']} hallucinated of {held['answered']} answered, "
                  f"Wilson 95% upper {held['wilson95_upper']:.3f}")
    console.print(f"wrote {report['out']} ({report['written']})")


# --------------------------------------------------------------------------- CLI


def eval_command(
    dataset: str | None = typer.Option(None, "--dataset", help="nq_open | svamp | halueval "
                                       "| arithmetic | all, or a JSONL file of items."),
    policy: Path = typer.Option(..., "--policy", exists=True, dir_okay=False,
                                help="Policy file the gateway runs."),
    route: str = typer.Option(..., "--route", help="Route to evaluate (must annotate)."),
    out: Path | None = typer.Option(None, "--out", file_okay=False,
                                    help="Output directory (default: the --record DIR)."),
    record: Path | None = typer.Option(None, "--record", file_okay=False, help="Record every "
                                       "upstream exchange into this directory (resumable)."),
    replay: Path | None = typer.Option(None, "--replay", exists=True, file_okay=False,
                                       help="Re-run a recording's items with no upstream."),
    gateway_config: Path | None = typer.Option(
        None, "--gateway-config", exists=True, dir_okay=False, help="hallgate.yaml settings "
        "for the gateway eval starts (e.g. `models:` to record through a real upstream)."),
    limit: int | None = typer.Option(None, "--limit", help="At most N items per source "
                                     "(a seeded random subset)."),
    concurrency: int = typer.Option(4, "--concurrency", min=1, help="Requests in flight "
                                    "per gateway."),
    shards: int = typer.Option(1, "--shards", min=1, help="Local gateways to spread the "
                               "items over, each with its own embedded model on "
                               "cores/N threads (and, recording, its own exchanges file)."),
    base_url: str | None = typer.Option(None, "--base-url", help="A running gateway; "
                                        "default: start one with --policy."),
    model: str | None = typer.Option(None, "--model", help="Default: the first model."),
    max_tokens: int = typer.Option(32, "--max-tokens", min=1),
    temperature: float = typer.Option(0.7, "--temperature", min=0.0),
    seed: int = typer.Option(0, "--seed"),
    data_dir: Path = typer.Option(DEFAULT_DATA_DIR, "--data-dir", file_okay=False),
    exclude_halt_training: bool = typer.Option(
        True, "--exclude-halt-training/--include-halt-training",
        help="Skip items HALT's checkpoint was trained or validated on."),
    time_budget_min: float | None = typer.Option(
        None, "--time-budget-min", help="Stop starting new items after this many "
        "minutes; the report covers the items done (a rerun continues)."),
    audit_log: Path | None = typer.Option(
        None, "--audit-log", dir_okay=False, help="With --base-url: the gateway's audit "
        "log, for each detector's full metadata (semantic entropy, detector costs)."),
) -> None:
    """Score a labelled QA set through the gateway: AUROC, AURAC, PRR, macro-F1, abstention,
    hallucination among answered, cost; results.jsonl/json, report.md, PNG plots."""
    command = "hallgate eval " + shlex.join(sys.argv[2:])
    try:
        if record and replay:
            raise EvalError("--record and --replay exclude each other")
        if (record or replay) and base_url:
            raise EvalError("--record/--replay run their own gateway; drop --base-url")
        if shards > 1 and base_url:
            raise EvalError("--shards starts its own gateways; drop --base-url")
        if replay is None and dataset is None:
            raise EvalError("--dataset is required (except with --replay)")
        if record and out and out.resolve() != record.resolve():
            raise EvalError("--record DIR is also the output directory; drop --out")
        out = record or out
        if out is None:
            raise EvalError("--out is required (except with --record)")
        summary = evaluate(dataset or "", policy, route, out, limit=limit,
                           concurrency=concurrency, record=record is not None, replay=replay,
                           base_url=base_url, model=model, max_tokens=max_tokens,
                           temperature=temperature, seed=seed, data_dir=data_dir,
                           command=command, exclude_halt_training=exclude_halt_training,
                           audit_log=audit_log, shards=shards,
                           gateway=yaml.safe_load(gateway_config.read_text())
                           if gateway_config else None,
                           time_budget_s=time_budget_min * 60 if time_budget_min else None)
    except EvalError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    console.print((out / "report.md").read_text())
    if summary["failures"] or summary["not_asked_time_budget"]:
        console.print(f"[yellow]{summary['failures']} items failed and "
                      f"{summary['not_asked_time_budget']} were not asked; rerun to "
                      f"continue")
        raise typer.Exit(1)


def calibrate_command(
    results: Path = typer.Option(..., "--results", exists=True, file_okay=False,
                                 help="An eval output directory (results.jsonl)."),
    policy: Path = typer.Option(..., "--policy", exists=True, dir_okay=False),
    profile: str = typer.Option(..., "--profile", help="Profile whose threshold to set."),
    out: Path = typer.Option(..., "--out", dir_okay=False, help="Where the calibrated copy "
                             "of the policy goes (never the policy itself)."),
    target_risk: float = typer.Option(0.05, "--target-risk", help="α: answered-"
                                      "hallucination rate to stay under."),
    delta: float = typer.Option(0.1, "--delta", help="The bound holds with prob. >= 1−δ."),
    knob: str | None = typer.Option(None, "--knob", help="halt.threshold or "
                                    "combine.threshold; default: by the combine mode."),
    calibration_fraction: float = typer.Option(0.5, "--calibration-fraction", min=0.05,
                                               max=0.95),
    seed: int = typer.Option(0, "--seed"),
    fit_combiner_out: Path | None = typer.Option(
        None, "--fit-combiner", dir_okay=False, help="Fit the learned combiner, write it "
        "to this JSON, and make the profile use it (combine: learned)."),
) -> None:
    """Choose the profile's threshold with a Learn-then-Test guarantee on a seeded
    calibration split; report on the held-out rest; write a calibrated policy copy."""
    try:
        if fit_combiner_out is not None:
            ok = run_combiner_fit(results, policy, profile, out, fit_combiner_out,
                                  target_risk=target_risk, delta=delta,
                                  calibration_fraction=calibration_fraction, seed=seed)
        else:
            ok = run_calibration(results, policy, profile, out, target_risk=target_risk,
                                 delta=delta, knob=knob, calibration_fraction=calibration_fraction,
                                 seed=seed)
    except (EvalError, ValueError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    if not ok:
        raise typer.Exit(1)
