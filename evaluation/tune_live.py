"""``hallgate tune --model M --out DIR``: record M's answers and every detector's upstream
calls through a local gateway, then build M's bundle from that recording.

    hallgate tune --model gpt-4o-mini --gateway-config hallgate.yaml \\
        --out bundles/gpt-4o-mini --dataset nq_open,svamp --limit 100 \\
        --data my-questions.jsonl --budget-calls 5000 --yes

    1. the items: built-in sets (evaluation/data.py, from ../shared/data) and the user's
       JSONL files, every line checked first (:func:`read_user_file`: ``file:line: what``)
    2. the cost, before any call: upstream calls and tokens per detector of the policy's
       profile, for the items not yet recorded (:func:`estimate`); ``--budget-calls`` /
       ``--budget-tokens`` refuse a run whose estimate exceeds them, and stop a run before
       an item that could pass them (:class:`BudgetGate`)
    3. the recording: ``hallgate eval --record`` (evaluation/evaluate.py) into
       ``DIR.recording`` beside the bundle; a rerun asks only the items without a result
    4. evaluation/tune.py goes on as for ``--replay DIR.recording``

Labelled answers (``{"prompt", "answer", "label"}`` lines) need their token logprobs: HALT
and the logprob scores read them, and an OpenAI-compatible chat upstream cannot score an
answer it did not write (chat completions have no ``echo``). A line that carries them
(``"logprobs"``: OpenAI's ``logprobs.content``) costs no call: it goes into the recording
as a results line and a HALT record (:func:`write_labelled`), and EDFL and the semantic
gate do not judge it; a line without them is refused.
"""

from __future__ import annotations

import hashlib
import json
import math
import shlex
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

import typer
import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
    model_validator,
)
from rich.console import Console
from rich.table import Table

from evaluation.data import SOURCES, QAItem, load_items, messages_for

CHARS_PER_TOKEN = 4.0  # the usual English ratio of BPE tokenisers, for prompt estimates
CHAT_OVERHEAD_TOKENS = 8  # role and template tokens around each message


class TuneError(RuntimeError):
    """What the user must fix before tune can start; every line of it is shown."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


# --------------------------------------------------------------------------- datasets


def _is_number(x) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def _not_blank(text: str) -> str:
    if not text.strip():
        raise ValueError("blank")
    return text


Number = Annotated[StrictInt | StrictFloat, Field(allow_inf_nan=False)]
Text = Annotated[StrictStr, AfterValidator(_not_blank)]


class _Alternative(BaseModel):
    token: StrictStr
    logprob: Number


class _TokenLogprob(BaseModel):
    """One entry of OpenAI's ``logprobs.content`` (other keys, e.g. ``bytes``, ignored)."""

    token: StrictStr
    logprob: Annotated[Number, Field(le=0)]
    top_logprobs: list[_Alternative] = Field(min_length=1)


class UserLine(BaseModel):
    """One line of a user's JSONL file: a question (``prompt`` + ``gold``) or an answer
    labelled elsewhere (``prompt`` + ``answer`` + ``label`` + ``logprobs``)."""

    model_config = ConfigDict(extra="forbid")

    # an absent key is None; a key given as null is refused like any wrong value (pydantic
    # does not validate defaults), except 'kind', whose null means "infer it"
    id: StrictStr | StrictInt = None
    source: Annotated[StrictStr, Field(min_length=1)] = None
    kind: Literal["text", "number"] | None = None
    prompt: Text
    gold: Annotated[list[Text | Number], Field(min_length=1)] = None
    answer: StrictStr = None
    label: Literal["correct", "incorrect"] = None
    logprobs: Annotated[list[_TokenLogprob], Field(min_length=1)] = None

    @model_validator(mode="after")
    def _question_or_labelled_answer(self) -> UserLine:
        fields = self.model_fields_set
        has_gold, has_answer = "gold" in fields, bool({"answer", "label"} & fields)
        if has_gold and "logprobs" in fields:
            raise ValueError("'logprobs' belong to a labelled 'answer', not to a 'gold' "
                             "question")
        if has_gold and has_answer:
            raise ValueError("give either 'gold' (the model answers) or 'answer' and "
                             "'label', not both")
        if has_gold and self.kind == "number" and not all(map(_is_number, self.gold)):
            raise ValueError("'kind' number needs numeric 'gold' values")
        if has_answer and (self.answer is None or self.label is None):
            raise ValueError("a labelled answer needs both 'answer' and 'label'")
        if not has_gold and not has_answer:
            raise ValueError("needs 'gold' (a list of accepted answers) or 'answer' and "
                             "'label'")
        return self


USER_KEYS = tuple(UserLine.model_fields)  # named in the message for an unknown key
_FIELD_PROBLEMS = {  # what a user is told for a field pydantic refused
    "prompt": "'prompt' must be a non-empty string",
    "id": "'id' must be a string or an integer",
    "source": "'source' must be a non-empty string",
    "gold": "'gold' must be a non-empty list of strings or numbers",
    "answer": "'answer' must be a string",
}


def _problem(error: dict, row: dict) -> str:
    """One of pydantic's errors as a line a user can act on."""
    loc = error["loc"]
    key = loc[0] if loc else None
    if error["type"] == "extra_forbidden":
        return f"unknown key '{key}' (known: {', '.join(USER_KEYS)})"
    if key == "kind":
        return f"'kind' must be 'text' or 'number', not {row.get('kind')!r}"
    if key == "label":
        return f"'label' must be 'correct' or 'incorrect', not {row.get('label')!r}"
    if key == "logprobs":
        if len(loc) > 1 and isinstance(loc[1], int):
            return (f"'logprobs' entry {loc[1]} needs 'token', a 'logprob' <= 0 and a "
                    "non-empty 'top_logprobs' list of {token, logprob}")
        return "'logprobs' must be a non-empty list (OpenAI's logprobs.content)"
    if key in _FIELD_PROBLEMS:
        return _FIELD_PROBLEMS[key]
    return str(error["msg"]).removeprefix("Value error, ")


def _row_problems(row) -> list[str]:
    """What is wrong with one parsed user line (empty: nothing), one line per key."""
    if not isinstance(row, dict):
        return ["not a JSON object"]
    try:
        UserLine.model_validate(row)
    except ValidationError as exc:
        return list(dict.fromkeys(_problem(e, row) for e in exc.errors()))
    return []


@dataclass(frozen=True)
class LabelledAnswer:
    """An answer labelled elsewhere, with the token logprobs its model gave it."""

    item: QAItem
    answer: str
    correct: bool
    logprobs: list  # OpenAI's logprobs.content entries


def read_user_file(path: Path) -> tuple[list[QAItem | LabelledAnswer], list[str]]:
    """The QA items of a user JSONL file and every problem as ``file:line: what``.

    A line is ``{"prompt", "gold": [...]}`` (graded like the built-in sets: a text gold is
    found in the answer, a numeric gold equals the answer's last number; optional ``id``,
    ``source``, ``kind``), or ``{"prompt", "answer", "label", "logprobs"}``, an answer
    labelled elsewhere with its token logprobs (a :class:`LabelledAnswer`; without
    ``logprobs`` it is refused: see the module docstring)."""
    items: list[QAItem] = []
    problems: list[str] = []
    seen: dict[str, int] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        return [], [f"{path}: cannot read it ({exc})"]
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(f"{path}:{number}: not JSON ({exc.msg}, column {exc.colno})")
            continue
        wrong = _row_problems(row)
        if not wrong and "gold" not in row and "logprobs" not in row:
            wrong = ["a labelled answer ('answer' + 'label') needs its token logprobs, and "
                     "an OpenAI-compatible chat upstream cannot score an answer it did not "
                     "write: add the model's 'logprobs' (OpenAI's logprobs.content) or give "
                     "the question as {\"prompt\", \"gold\": [...]} so the model answers it"]
        if wrong:
            problems += [f"{path}:{number}: {what}" for what in wrong]
            continue
        labelled = "gold" not in row
        gold = () if labelled else tuple(row["gold"])
        kind = row.get("kind") or ("number" if gold and all(map(_is_number, gold))
                                   else "text")
        key = row["prompt"] + ("\0" + row["answer"] if labelled else "")
        item_id = str(row["id"]) if "id" in row else \
            ("labelled-" if labelled else "prompt-") + \
            hashlib.sha256(key.encode()).hexdigest()[:12]
        if item_id in seen:
            problems.append(f"{path}:{number}: id '{item_id}' repeats line {seen[item_id]}"
                            + ("" if "id" in row else " (the same prompt)"))
            continue
        seen[item_id] = number
        item = QAItem(item_id, row.get("source") or path.stem, kind, row["prompt"], gold,
                      len(items))
        items.append(LabelledAnswer(item, row["answer"], row["label"] == "correct",
                                    row["logprobs"]) if labelled else item)
    if not items and not problems:
        problems.append(f"{path}: no items (the file is empty)")
    return items, problems


def gather_items(dataset: str | None, data_files: list[Path], data_dir: Path,
                 limit: int | None, seed: int) -> tuple[list[QAItem], list[LabelledAnswer]]:
    """The built-in sets named in ``dataset`` (comma-separated, or ``all``; ``limit`` per
    source) and every user file's questions, and the files' labelled answers; TuneError
    listing every problem."""
    items: list[QAItem] = []
    labelled: list[LabelledAnswer] = []
    problems: list[str] = []
    names = [] if not dataset else list(SOURCES) if dataset == "all" else \
        [n.strip() for n in dataset.split(",") if n.strip()]
    for name in names:
        if name not in SOURCES:
            problems.append(f"--dataset: unknown set '{name}' (known: "
                            f"{', '.join(SOURCES)}, all)")
            continue
        try:
            items += load_items(name, data_dir, per_source=limit, seed=seed)
        except (OSError, ValueError, KeyError) as exc:
            problems.append(f"--dataset {name}: cannot read it from {data_dir} ({exc})")
    for path in data_files:
        found, wrong = read_user_file(path)
        problems += wrong
        found = found[:limit] if limit is not None else found
        items += [f for f in found if isinstance(f, QAItem)]
        labelled += [f for f in found if isinstance(f, LabelledAnswer)]
    if not names and not data_files:
        problems.append("give --dataset (nq_open, svamp, arithmetic, halueval or all) "
                        "and/or --data FILE.jsonl")
    ids = Counter([item.id for item in items] + [a.item.id for a in labelled])
    twice = sorted(i for i, n in ids.items() if n > 1)
    if twice:
        problems.append(f"item ids appear in more than one dataset: {', '.join(twice[:5])}")
    if problems:
        raise TuneError(problems)
    return items, labelled


# --------------------------------------------------------------------------- cost


def prompt_tokens(messages: list[dict]) -> float:
    """≈ tokens of a chat prompt: characters / CHARS_PER_TOKEN plus a few per message."""
    return sum(len(m.get("content") or "") / CHARS_PER_TOKEN + CHAT_OVERHEAD_TOKENS
               for m in messages)


@dataclass
class DetectorCost:
    """What one detector (or the answer) asks the upstream for, summed over items."""

    detector: str
    calls: float = 0.0  # upstream calls, as usual
    calls_at_most: float = 0.0  # ... with every fallback taken (EDFL's sampled decisions)
    max_tokens: int | None = None  # per call (completion)
    completion_tokens: float = 0.0  # at most, for `calls`
    completion_tokens_at_most: float = 0.0  # at most, for `calls_at_most`
    prompt_tokens: float = 0.0  # ≈, for `calls`
    prompt_tokens_at_most: float = 0.0  # ≈, for `calls_at_most`
    note: str = ""

    def add(self, calls: float, max_tokens: int, prompt: float, extra_calls: float = 0.0,
            extra_max_tokens: int = 0, extra_prompt: float = 0.0,
            completions: float | None = None, extra_completions: float = 0.0) -> None:
        """One item's calls; ``completions`` (default: one per call) bound the tokens."""
        completions = calls if completions is None else completions
        self.calls += calls
        self.calls_at_most += calls + extra_calls
        self.max_tokens = max_tokens
        self.completion_tokens += completions * max_tokens
        self.completion_tokens_at_most += (completions * max_tokens
                                           + extra_completions * extra_max_tokens)
        self.prompt_tokens += calls * prompt
        self.prompt_tokens_at_most += calls * prompt + extra_calls * extra_prompt

    @property
    def tokens(self) -> float:
        return self.completion_tokens + self.prompt_tokens

    @property
    def tokens_at_most(self) -> float:
        return self.completion_tokens_at_most + self.prompt_tokens_at_most


@dataclass
class Estimate:
    items: int
    rows: list[DetectorCost] = field(default_factory=list)

    @property
    def calls(self) -> float:
        return sum(r.calls for r in self.rows)

    @property
    def calls_at_most(self) -> float:
        return sum(r.calls_at_most for r in self.rows)

    @property
    def tokens(self) -> float:
        return sum(r.tokens for r in self.rows)

    @property
    def tokens_at_most(self) -> float:
        return sum(r.tokens_at_most for r in self.rows)


def estimate(items: list[QAItem], profile, max_tokens: int, supports_n: bool) -> Estimate:
    """Upstream calls and tokens of asking ``items`` under ``profile``: the answer (one
    call of ``max_tokens``), EDFL (1 + m decisions of 2 tokens; where the label mass is
    thin, n sampled 4-token decisions per prompt), the semantic gate (M + m·s answers of
    its max_tokens: 1 + m calls when the upstream honours ``n``, else one per answer);
    HALT and the logprob scores read the answer's logprobs and cost nothing more."""
    from detectors.edfl.config import EdflConfig
    from detectors.edfl.decision import decision_messages
    from detectors.registry import REGISTRY

    answer = DetectorCost("answer")
    rows = {"answer": answer}
    edfl_cfg = EdflConfig()
    for item in items:
        messages = messages_for(item)
        prompt = prompt_tokens(messages)
        answer.add(1, max_tokens, prompt)
        for name in profile.detectors.enabled():
            settings = profile.detectors[name]
            row = rows.setdefault(name, DetectorCost(name))
            if name == "edfl":
                decide = prompt_tokens(decision_messages(messages, edfl_cfg.prompt_style))
                prompts = 1 + settings.m
                sampled = prompts * (1 if supports_n else settings.n)
                row.add(prompts, edfl_cfg.decision_max_tokens, decide, sampled,
                        edfl_cfg.sample_max_tokens, decide,
                        extra_completions=prompts * settings.n)
                row.note = f"1 + m = {prompts} decisions; up to {prompts * settings.n} " \
                           "sampled ones where the label mass is thin"
            elif name == "semantic":
                answers = settings.M + settings.m * settings.skeleton_samples
                calls = 1 + settings.m if supports_n else answers
                row.add(calls, settings.max_tokens, prompt, completions=answers)
                row.note = f"M + m·s = {answers} sampled answers" + (
                    "; plus the LLM judge's calls" if settings.entailment == "llm" else "")
            elif REGISTRY.get(name).needs.sampler:
                row.note = "calls not estimated (a plug-in detector)"
            else:
                row.note = "reads the answer's logprobs: no call"
    return Estimate(len(items), list(rows.values()))


def _n(x: float) -> str:
    return f"{x:,.0f}"


def cost_table(est: Estimate, recorded: int) -> Table:
    """The estimate by detector, one row each, the notes under it (rich renders it)."""
    table = Table(title=f"upstream cost of the {est.items} items to record ({recorded} "
                  "already recorded: no call for those)", title_justify="left",
                  caption="\n".join(f"{r.detector}: {r.note}" for r in est.rows if r.note)
                  + f"\ntokens: {_n(est.tokens)} as usual, {_n(est.tokens_at_most)} at "
                  f"most (prompt tokens ≈ characters / {CHARS_PER_TOKEN:g})",
                  caption_justify="left")
    table.add_column("detector")
    for col in ("calls", "calls at most", "max_tokens", "completion tokens ≤",
                "prompt tokens ≈"):
        table.add_column(col, justify="right")
    for r in est.rows:
        table.add_row(r.detector, _n(r.calls), _n(r.calls_at_most),
                      "–" if r.max_tokens is None else str(r.max_tokens),
                      _n(r.completion_tokens_at_most), _n(r.prompt_tokens_at_most))
    table.add_row("total", _n(est.calls), _n(est.calls_at_most), "",
                  _n(sum(r.completion_tokens_at_most for r in est.rows)),
                  _n(sum(r.prompt_tokens_at_most for r in est.rows)), style="bold")
    return table


def budget_problems(est: Estimate, budget_calls: int | None, budget_tokens: int | None,
                    limit: int | None) -> list[str]:
    """Why the run must not start: its usual cost already exceeds a budget."""
    out = []
    for what, need, budget in (("calls", est.calls, budget_calls),
                               ("tokens", est.tokens, budget_tokens)):
        if budget is None or need <= budget:
            continue
        per_item = need / max(est.items, 1)
        fits = int(budget // per_item) if per_item else est.items
        hint = (f"lower --limit (now {limit}) or " if limit is not None else
                "set --limit (items per source) or ")
        out.append(f"the estimate is {_n(need)} upstream {what} for {est.items} items, over "
                   f"--budget-{what} {budget:,}: about {fits} items fit; {hint}raise the "
                   "budget")
    return out


@dataclass
class BudgetGate:
    """Admits an item only if what the run spent so far, plus the most each item in flight
    and this one can still spend, stays within the budgets; once it refuses, it always
    does (the run stops; the recording keeps what finished)."""

    calls: int | None
    tokens: int | None
    item_calls: float  # the most one item may cost (calls_at_most of the costliest item)
    item_tokens: float
    stopped: bool = False
    spent: dict = field(default_factory=dict)

    def __call__(self, in_flight: int, spent: dict[str, float]) -> bool:
        self.spent = spent
        used_tokens = spent.get("prompt_tokens", 0.0) + spent.get("completion_tokens", 0.0)
        reserve = in_flight + 1
        if (self.calls is not None and
                spent.get("upstream_calls", 0.0) + reserve * self.item_calls > self.calls):
            self.stopped = True
        if (self.tokens is not None and
                used_tokens + reserve * self.item_tokens > self.tokens):
            self.stopped = True
        return not self.stopped


def item_ceiling(items: list[QAItem], profile, max_tokens: int, supports_n: bool,
                 ) -> tuple[float, float]:
    """(calls, tokens) at most of the costliest single item."""
    worst = [estimate([item], profile, max_tokens, supports_n) for item in items]
    return (max((e.calls_at_most for e in worst), default=0.0),
            max((e.tokens_at_most for e in worst), default=0.0))


# --------------------------------------------------------------------------- upstream


def gateway_for(model: str, gateway_config: Path | None) -> tuple[dict | None, bool]:
    """The settings of the gateway that records (``--gateway-config``, else the embedded
    model named ``model``) and whether ``model``'s upstream honours ``n``."""
    from pydantic import ValidationError

    from proxy.config import EmbeddedModelName, Settings

    data: dict = {}
    if gateway_config is not None:
        try:
            data = yaml.safe_load(gateway_config.read_text()) or {}
            settings = Settings(**data)
        except (OSError, yaml.YAMLError, ValidationError, TypeError) as exc:
            raise TuneError([f"{gateway_config}: {exc}"]) from None
        for configured in settings.models:
            if configured.name == model:
                return data, configured.supports_n
        served = [m.name for m in settings.models]
    else:
        served = []
    embedded = list(EmbeddedModelName.__args__)
    if model in embedded and not served:
        return {**data, "embedded": {**data.get("embedded", {}), "models": [model]}}, False
    where = f"{gateway_config} serves {', '.join(served)}" if served else \
        f"with no --gateway-config the embedded models are {', '.join(embedded)}"
    raise TuneError([f"--model {model} is not a configured upstream ({where}); give a "
                     "--gateway-config whose `models:` names it"])


# --------------------------------------------------------------------------- the run


@dataclass(frozen=True)
class LiveOptions:
    model: str
    out: Path
    dataset: str | None
    data: list[Path]
    limit: int | None
    budget_calls: int | None
    budget_tokens: int | None
    record: Path | None
    gateway_config: Path | None
    yes: bool
    policy: Path
    route: str
    max_tokens: int
    concurrency: int
    data_dir: Path
    seed: int


def default_policy() -> Path:
    import policies

    return Path(policies.__file__).resolve().parent / "examples" / "evaluate.yaml"


def _merge_items(recording: Path, items: list[QAItem]) -> None:
    """Add to the recording's items.jsonl the items it does not list yet (a rerun with
    more data); the items it lists stay as they are."""
    from evaluation.evaluate import ITEMS_FILE, write_items

    path = recording / ITEMS_FILE
    if not path.exists():
        return
    listed = load_items(str(path), recording)
    known = {item.id for item in listed}
    new = [item for item in items if item.id not in known]
    if new:
        write_items(listed + new, path)


def _check_recording(recording: Path, model: str, max_tokens: int) -> None:
    """A recording continues only with the model and max_tokens it was made with."""
    from evaluation.evaluate import ASKED_FILE

    meta, asked = recording / "meta.json", recording / ASKED_FILE
    if meta.exists():
        names = [m.get("name") for m in json.loads(meta.read_text()).get("models", [])]
        if model not in names:
            raise TuneError([f"{recording} is a recording of {', '.join(map(str, names))}, "
                             f"not {model}: give another --record or --out"])
    if asked.exists():
        recorded = json.loads(asked.read_text()).get("max_tokens")
        if recorded != max_tokens:
            raise TuneError([f"{recording} was recorded with --max-tokens {recorded}; pass "
                             "the same to continue it"])


def record_live(opts: LiveOptions, console: Console) -> Path:
    """Check everything, print the cost, ask, record; the recording directory. Raises
    TuneError (shown as its lines, exit 2) before any upstream call."""
    from evaluation.evaluate import EvalError, read_results, route_access
    from policies import load_policy

    items, labelled = gather_items(opts.dataset, opts.data, opts.data_dir, opts.limit,
                                   opts.seed)
    gateway, supports_n = gateway_for(opts.model, opts.gateway_config)
    try:
        policy = load_policy(opts.policy)
        route_access(policy, opts.route)
    except (ValueError, EvalError, OSError) as exc:  # a policy error names file, line, key
        raise TuneError([str(exc)]) from None
    profile = policy.profiles[policy.route(opts.route).profile]
    recording = opts.record or opts.out.parent / f"{opts.out.name}.recording"
    _check_recording(recording, opts.model, opts.max_tokens)
    done = read_results(recording / "results.jsonl")
    todo = [item for item in items if item.id not in done]
    est = estimate(todo, profile, opts.max_tokens, supports_n)
    console.print(f"{len(items)} items; {len(items) - len(todo)} already recorded in "
                  f"{recording}, {len(todo)} to record through {opts.model}")
    console.print(cost_table(est, len(items) - len(todo)))
    problems = budget_problems(est, opts.budget_calls, opts.budget_tokens, opts.limit)
    if problems:
        raise TuneError(problems)
    if todo and not opts.yes and sys.stdin.isatty() and not typer.confirm(
            f"spend about {_n(est.calls)} upstream calls and {_n(est.tokens)} tokens?"):
        raise typer.Exit(1)
    if labelled:
        added = write_labelled(recording, labelled)
        console.print(f"{len(labelled)} labelled answers with their logprobs ({added} new): "
                      "no upstream call; they feed HALT and the logprob scores, EDFL and "
                      "the semantic gate do not judge them")
    if not todo:
        console.print("nothing to record: every item is in the recording")
        return recording
    item_calls, item_tokens = item_ceiling(todo, profile, opts.max_tokens, supports_n)
    gate = BudgetGate(opts.budget_calls, opts.budget_tokens, item_calls, item_tokens) \
        if opts.budget_calls is not None or opts.budget_tokens is not None else None
    recording.mkdir(parents=True, exist_ok=True)
    _merge_items(recording, items)
    summary = _run_recorder(opts, items, recording, gateway, gate, console)
    _say_spent(summary, len(todo), est, gate, console)
    return recording


def write_labelled(recording: Path, labelled: list[LabelledAnswer]) -> int:
    """Append the labelled answers not yet in the recording: a results line each (the
    logprob scores; no detector ran) and HALT's record in LABELLED_FILE. How many."""
    from detectors.combiner import answer_features
    from evaluation.evaluate import read_results
    from evaluation.recording_data import LABELLED_FILE

    recording.mkdir(parents=True, exist_ok=True)
    done = read_results(recording / "results.jsonl")
    new = [a for a in labelled if a.item.id not in done]
    with (recording / LABELLED_FILE).open("a") as halt, \
            (recording / "results.jsonl").open("a") as results:
        for a in new:
            item, wrong = a.item, not a.correct
            common = {"id": item.id, "source": item.source, "kind": item.kind, "gold": [],
                      "answer": a.answer, "finish_reason": "stop", "correct": a.correct,
                      "hallucinated": wrong}
            halt.write(json.dumps({**common, "prompt": item.prompt, "tokens": [
                {"token": e["token"], "logprob": e["logprob"],
                 "top": [[t["token"], t["logprob"]] for t in e["top_logprobs"]]}
                for e in a.logprobs]}) + "\n")
            results.write(json.dumps({**common, "scores": answer_features(a.logprobs),
                                      "verdicts": {}, "answer_tokens": len(a.logprobs),
                                      "prompt_tokens": None, "detector_tokens": 0,
                                      "upstream_completions": 0, "labelled": True,
                                      "hallgate": {"detectors": {}}}) + "\n")
    return len(new)


def _run_recorder(opts: LiveOptions, items: list[QAItem], recording: Path,
                  gateway: dict | None, gate: BudgetGate | None, console: Console) -> dict:
    """``hallgate eval --record`` of ``items`` into ``recording``; its summary."""
    from evaluation.evaluate import EvalError, evaluate, write_items

    with tempfile.TemporaryDirectory(prefix="hallgate-tune-") as tmp:
        dataset = Path(tmp) / "items.jsonl"
        write_items(items, dataset)
        try:
            return evaluate(
                str(dataset), opts.policy, opts.route, recording, limit=None,
                concurrency=opts.concurrency, base_url=None, model=opts.model,
                max_tokens=opts.max_tokens, temperature=0.7, seed=opts.seed,
                data_dir=opts.data_dir, command="hallgate tune " + shlex.join(sys.argv[2:]),
                plots=False, record=True, gateway=gateway, admit=gate)
        except EvalError as exc:
            raise TuneError([str(exc)]) from None
        except KeyboardInterrupt:
            console.print(f"[yellow]interrupted: every finished item is kept in {recording}; "
                          "the same command continues it")
            raise typer.Exit(130) from None


def _say_spent(summary: dict, todo: int, est: Estimate, gate: BudgetGate | None,
               console: Console) -> None:
    asked = todo - summary["failures"] - summary["not_asked_time_budget"]
    spent = summary["gateway_metrics"]
    calls = spent.get("upstream_calls_per_request", 0.0) * asked
    tokens = (spent.get("prompt_tokens_per_request", 0.0)
              + spent.get("completion_tokens_per_request", 0.0)) * asked
    console.print(f"recorded {asked} items this run ({_n(calls)} upstream calls, "
                  f"{_n(tokens)} tokens; estimated {_n(est.calls)} and {_n(est.tokens)} "
                  f"for all {todo})")
    if gate is not None and gate.stopped:
        console.print(f"[yellow]stopped at the budget: {summary['not_asked_time_budget']} "
                      "items not asked; what is recorded is kept, and the same command "
                      "with a larger budget records the rest")
    if summary["failures"]:
        console.print(f"[yellow]{summary['failures']} items failed; the same command asks "
                      "them again")
