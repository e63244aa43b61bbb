"""Labelled exchanges of the store as a recording directory, for ``hallgate tune``.

    summary = export_store("sqlite:///data/exchanges.sqlite3", "local/smollm2-135m-instruct",
                           out=Path("work/store-recording"), since=..., until=...)
    # out/items.jsonl, out/results.jsonl, out/exchanges.jsonl.gz: what
    # evaluation/recording_data.py and calibration/build.py read from a recording

    exchanges (model, window) ── newest label per response ── correct / incorrect ──> items
                                                              unsure, none ──> counted, skipped
                                                              no logprobs ──> counted, skipped

One stored exchange becomes one item: its id is the response id, its ``source`` the route
that served it (the within-source AUROC of the refit is then within route), its
``hallucinated`` the newest label (``incorrect``), its scores the −mean and −min token
logprob of the stored matrix and each detector's stored risk (``halt`` is the HALT that
judged it live; ``tune`` replaces it with the HALT it trains). The answer exchange holds
the stored token logprob matrix; without ``include_prompt`` the store keeps no token
strings, so the selected token is named ``t`` and, among the alternatives, the first whose
logprob equals the selected one's is named ``t`` too (what HALT's adapter drops as the
selected token), the others ``a1, a2, ...``. The answer's text in the recording is the
response id (unique, so each item finds its own logprobs).

``mix`` adds a recording's items (``hallgate eval --record``) to the stored ones: its
results lines and exchange files go into the same directory.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from detectors.logprob_stats.stats import neg_mean_logprob, neg_min_logprob
from proxy.store.models import Exchange, Feedback
from proxy.upstream.recording import EXCHANGES, exchange_files

HALLUCINATED = {"incorrect": True, "correct": False}  # label -> hallucinated
MATCH_TOLERANCE = 1e-6  # an alternative this close to the selected logprob is that token
# detectors whose stored risk becomes a score of the same name (as a recording's results
# line has them; the logprob scores are computed from the matrix)
RISK_SCORES = ("halt", "edfl", "semantic")


class ExportError(ValueError):
    """The store cannot be exported as asked (the message says why)."""


@dataclass
class ExportSummary:
    items: int = 0  # exchanges written as labelled items
    hallucinated: int = 0
    unsure: int = 0  # newest label "unsure": skipped
    unlabelled: int = 0  # no label: skipped
    no_logprobs: int = 0  # labelled, but stored without a logprob matrix: skipped
    mixed: int = 0  # items of the mixed-in recording
    sources: dict[str, int] = field(default_factory=dict)
    ids: list[str] = field(default_factory=list)  # the stored items' ids (response ids)

    def line(self) -> str:
        return (f"store: {self.items} labelled exchanges ({self.hallucinated} incorrect, "
                f"{self.items - self.hallucinated} correct); skipped {self.unsure} unsure, "
                f"{self.unlabelled} unlabelled, {self.no_logprobs} without logprobs"
                + (f"; {self.mixed} recorded items mixed in" if self.mixed else ""))


def async_url(url: str) -> str:
    """A store URL (as ``store.url`` takes it, or a SQLite file's path) for the async
    engine: ``postgresql+asyncpg://`` or ``sqlite+aiosqlite:///``."""
    if "://" not in url:
        return f"sqlite+aiosqlite:///{Path(url)}"
    parsed = make_url(url)
    driver = {"postgresql": "postgresql+asyncpg", "postgres": "postgresql+asyncpg",
              "sqlite": "sqlite+aiosqlite"}.get(parsed.drivername, parsed.drivername)
    return parsed.set(drivername=driver).render_as_string(hide_password=False)


def parse_time(value: str | None) -> datetime | None:
    """An ISO 8601 time (UTC when it names no zone); None for None."""
    if value is None:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise ExportError(f"'{value}' is not an ISO 8601 time (e.g. 2026-12-04T18:00:00Z)"
                          ) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


async def read_labelled(url: str, model: str, since: datetime | None = None,
                        until: datetime | None = None) -> list[tuple[dict, str | None]]:
    """(exchange row, its newest label or None) of ``model``'s exchanges made in
    [since, until), oldest first."""
    newest = (select(Feedback.response_id, func.max(Feedback.id).label("last"))
              .group_by(Feedback.response_id).subquery())
    query = (select(Exchange, Feedback.label)
             .outerjoin(newest, newest.c.response_id == Exchange.response_id)
             .outerjoin(Feedback, Feedback.id == newest.c.last)
             .where(Exchange.model == model).order_by(Exchange.id))
    if since is not None:
        query = query.where(Exchange.created_at >= since)
    if until is not None:
        query = query.where(Exchange.created_at < until)
    engine = create_async_engine(async_url(url))
    try:
        async with engine.connect() as conn:
            result = await conn.execute(query)
            columns = [c.name for c in Exchange.__table__.columns]
            return [({c: getattr(row, c) for c in columns}, row.label) for row in result]
    finally:
        await engine.dispose()


def token_entries(matrix: dict, strings: list[list[str]] | None = None) -> list[dict]:
    """The stored matrix as OpenAI ``logprobs.content`` entries (see the module
    docstring for the token names when the store kept no strings)."""
    out = []
    for t, (chosen, top) in enumerate(zip(matrix["chosen"], matrix["top"], strict=True)):
        if strings is not None:
            names = strings[t]
            token, alts = names[0], names[1:]
        else:
            token, alts, named = "t", [], False
            for j, lp in enumerate(top, start=1):
                same = (not named and lp is not None and chosen is not None
                        and abs(lp - chosen) <= MATCH_TOLERANCE)
                alts.append("t" if same else f"a{j}")
                named = named or same
        out.append({"token": token, "logprob": chosen,
                    "top_logprobs": [{"token": a, "logprob": lp}
                                     for a, lp in zip(alts, top, strict=False)]})
    return out


def item_scores(row: dict) -> dict:
    """The results line's ``scores`` of a stored exchange."""
    chosen = [lp for lp in row["logprobs"]["chosen"] if lp is not None]
    scores: dict = {}
    if chosen:
        scores["neg_mean_logprob"] = neg_mean_logprob([min(lp, 0.0) for lp in chosen])
        scores["neg_min_logprob"] = neg_min_logprob([min(lp, 0.0) for lp in chosen])
    for name in RISK_SCORES:
        found = (row["detectors"] or {}).get(name)
        if isinstance(found, dict) and found.get("status", "ok") == "ok" \
                and isinstance(found.get("risk"), int | float):
            scores[name] = float(found["risk"])
    return scores


def _results_line(row: dict, hallucinated: bool) -> dict:
    detectors = row["detectors"] or {}
    costs = {n: {"cost": d["cost"]} for n, d in detectors.items()
             if isinstance(d, dict) and isinstance(d.get("cost"), dict)}
    return {"id": row["response_id"], "source": row["route"] or "default", "kind": "open",
            "answer": row["response_id"], "answer_tokens": len(row["logprobs"]["chosen"]),
            "correct": not hallucinated, "hallucinated": hallucinated,
            "scores": item_scores(row), "bundle_id": row["bundle_id"],
            "created_at": row["created_at"].isoformat() if row["created_at"] else None,
            "hallgate": {"detectors": costs}}


def write_recording(rows: list[tuple[dict, str | None]], out: Path,
                    mix: Path | None = None) -> ExportSummary:
    """Write the labelled rows as a recording into ``out`` (created; must be empty)."""
    if out.exists() and any(out.iterdir()):
        raise ExportError(f"{out} is not empty")
    out.mkdir(parents=True, exist_ok=True)
    summary = ExportSummary()
    results, items, exchanges = [], [], []
    for row, label in rows:
        if label is None:
            summary.unlabelled += 1
            continue
        if label not in HALLUCINATED:
            summary.unsure += 1
            continue
        if not row["logprobs"] or not row["logprobs"].get("chosen"):
            summary.no_logprobs += 1
            continue
        wrong = HALLUCINATED[label]
        line = _results_line(row, wrong)
        results.append(line)
        prompt = row["prompt"]
        items.append({"id": line["id"], "source": line["source"], "kind": "open",
                      "prompt": json.dumps(prompt) if prompt is not None else "",
                      "gold": []})
        exchanges.append({"key": line["id"], "response": {"choices": [{
            "index": 0, "message": {"role": "assistant", "content": line["answer"]},
            "logprobs": {"content": token_entries(row["logprobs"], row["tokens"])}}]}})
        summary.items += 1
        summary.hallucinated += int(wrong)
        summary.sources[line["source"]] = summary.sources.get(line["source"], 0) + 1
        summary.ids.append(line["id"])
    if mix is not None:
        summary.mixed = _mix_in(mix, out, results, items)
    (out / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in results))
    (out / "items.jsonl").write_text("".join(json.dumps(i) + "\n" for i in items))
    with gzip.open(out / EXCHANGES, "wt") as fh:
        fh.writelines(json.dumps(e) + "\n" for e in exchanges)
    return summary


def _mix_in(recording: Path, out: Path, results: list[dict], items: list[dict]) -> int:
    """Append a recording's results and items, and copy its exchange files in as parts
    ``exchanges.K.jsonl.gz``; how many of its items."""
    from evaluation.evaluate import ITEMS_FILE

    if not (recording / "results.jsonl").is_file() or not (recording / ITEMS_FILE).is_file():
        raise ExportError(f"{recording} is not a recording (hallgate eval --record): it "
                          f"needs results.jsonl and {ITEMS_FILE}")
    lines = [json.loads(x) for x in (recording / "results.jsonl").read_text().splitlines()
             if x.strip()]
    results.extend(lines)
    items.extend(json.loads(x) for x in (recording / ITEMS_FILE).read_text().splitlines()
                 if x.strip())
    for k, path in enumerate(exchange_files(recording), start=1):
        shutil.copyfile(path, out / f"exchanges.{k}.jsonl.gz")
    return len(lines)


def export_store(url: str, model: str, out: Path, *, since: str | None = None,
                 until: str | None = None, mix: Path | None = None) -> ExportSummary:
    """Read ``model``'s labelled exchanges of the window from the store at ``url`` and
    write them (and ``mix``'s items) as a recording into ``out``."""
    rows = asyncio.run(read_labelled(url, model, parse_time(since), parse_time(until)))
    return write_recording(rows, out, mix)
