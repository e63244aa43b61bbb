"""Record every upstream exchange of a gateway, and answer from that record later.

    live:    InstrumentedUpstream(RecordingUpstream(transport, recording))
    replay:  InstrumentedUpstream(ReplayUpstream(config, recording))   # no upstream at all

A recording is a directory:

    meta.json            the upstream configs it was recorded through (name, supports_n,
                         max_tokens field...), so a replay fans out ``n`` exactly as live did
    exchanges.jsonl.gz   one line per upstream call: {"key", "response"}; appended as
                         separate gzip members, so an interrupted recording keeps every
                         call it finished and a later one appends to it
    exchanges.K.jsonl.gz the same, written by gateway K of a sharded recording
                         (``hallgate eval --record DIR --shards N``: one file per gateway
                         process, so no two processes append to one file); a replay reads
                         exchanges.jsonl.gz first, then the parts in order

Key: SHA-256 of the request body as canonical JSON (sorted keys, ``None`` values, ``n: 1``
and the stream flags dropped), so the same question finds its answer whatever built the
dict. Identical requests (a gate's M samples of one prompt without a seed) are i.i.d.
draws: the k-th identical request of a replay gets the k-th recorded answer, and one more
than was recorded is an error (502 ``replay_missing``), never a made-up answer.

Compaction: the ``bytes`` lists of logprob entries are dropped and logprobs are rounded
to 1e-4 nats (what HALT reads is unchanged at that precision).
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import logging
import threading
import time
import zlib
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from proxy.config import UpstreamModel
from proxy.errors import UpstreamError
from proxy.upstream.base import Upstream

log = logging.getLogger("hallgate.replay")
EXCHANGES = "exchanges.jsonl.gz"
META = "meta.json"
_IGNORED_FIELDS = frozenset({"stream", "stream_options"})


def exchange_key(body: dict) -> str:
    """The request's identity: SHA-256 of its canonical JSON."""
    return hashlib.sha256(_canonical(body).encode()).hexdigest()


def _canonical(body: dict) -> str:
    """The fields that shape the answer, as JSON with sorted keys."""
    fields = {k: v for k, v in body.items()
              if v is not None and k not in _IGNORED_FIELDS and not (k == "n" and v == 1)}
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def compact_response(resp: dict) -> dict:
    """The response without logprob ``bytes`` and with logprobs rounded to 1e-4."""
    out = dict(resp)
    choices = []
    for choice in resp.get("choices") or ():
        logprobs = choice.get("logprobs")
        if logprobs and logprobs.get("content"):
            content = [_compact_entry(e) for e in logprobs["content"]]
            choice = {**choice, "logprobs": {**logprobs, "content": content}}
        choices.append(choice)
    out["choices"] = choices
    return out


def _compact_entry(entry: dict) -> dict:
    top = [{"token": t.get("token"), "logprob": _round(t.get("logprob"))}
           for t in entry.get("top_logprobs") or ()]
    return {"token": entry.get("token"), "logprob": _round(entry.get("logprob")),
            "top_logprobs": top}


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 4)


class Recording:
    """The exchanges of one recording directory: append (live) or look up (replay)."""

    def __init__(self, directory: str | Path, part: str | None = None):
        self.dir = Path(directory)
        self.path = self.dir / (EXCHANGES if part is None else f"exchanges.{part}.jsonl.gz")
        self._lock = threading.Lock()
        self._answers: dict[str, deque] | None = None

    # --- writing ---------------------------------------------------------------------

    def start(self, configs: list[UpstreamModel]) -> None:
        """Create the directory and record (or check) which upstreams it was made with."""
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.dir / META
        models = ({m["name"]: m for m in json.loads(path.read_text())["models"]}
                  if path.exists() else {})
        for config in configs:
            models.setdefault(config.name, config.model_dump(exclude={"api_key_env", "api_base"}))
        path.write_text(json.dumps({"models": list(models.values())}, indent=2) + "\n")

    def append(self, key: str, response: dict) -> None:
        line = json.dumps({"key": key, "response": compact_response(response)},
                          separators=(",", ":"), ensure_ascii=False) + "\n"
        with self._lock, gzip.open(self.path, "ab") as fh:
            fh.write(line.encode())

    # --- reading ---------------------------------------------------------------------

    def models(self) -> list[UpstreamModel]:
        path = self.dir / META
        if not path.exists():
            raise FileNotFoundError(f"{path}: not a hallgate recording (no {META})")
        return [UpstreamModel(**m) for m in
                json.loads(path.read_text())["models"]]

    def take(self, key: str) -> dict | None:
        """The next recorded answer to this request, or None when none is left."""
        with self._lock:
            if self._answers is None:
                self._answers = self._load()
            queue = self._answers.get(key)
            return queue.popleft() if queue else None

    def _load(self) -> dict[str, deque]:
        answers: dict[str, deque] = defaultdict(deque)
        for path in exchange_files(self.dir):
            for row in read_exchanges(path):
                answers[row["key"]].append(row["response"])
        return answers


def exchange_files(directory: Path) -> list[Path]:
    """exchanges.jsonl.gz, then the parts of a sharded recording in order."""
    parts = sorted(directory.glob("exchanges.*.jsonl.gz"),
                   key=lambda p: (len(p.name), p.name))
    return [directory / EXCHANGES, *parts]


def read_exchanges(path: Path):
    """Rows of an exchanges file; a member cut short by an interruption ends the read."""
    if not path.exists():
        return
    with gzip.open(path, "rt") as fh:
        try:
            for line in fh:
                if line.endswith("\n"):
                    yield json.loads(line)
        except (EOFError, zlib.error, gzip.BadGzipFile):
            return


class RecordingUpstream:
    """Forwards to ``inner`` and appends every completed non-streaming exchange."""

    def __init__(self, inner: Upstream, recording: Recording):
        self.inner = inner
        self.recording = recording
        self.config = inner.config
        self.on_retry: Callable[[], None] | None = None

    @property
    def logprobs_supported(self) -> bool:
        """The inner upstream's, asked each time: it can learn that a model refuses them."""
        return self.inner.logprobs_supported

    async def complete(self, body: dict) -> dict:
        self.inner.on_retry = self.on_retry
        resp = await self.inner.complete(body)
        await asyncio.to_thread(self.recording.append, exchange_key(body), resp)
        return resp

    def stream(self, body: dict) -> AsyncIterator[dict]:
        """Streams are forwarded, not recorded (a replay streams recorded completions)."""
        self.inner.on_retry = self.on_retry
        return self.inner.stream(body)

    async def aclose(self) -> None:
        await self.inner.aclose()


class ReplayUpstream:
    """Answers from a recording; a request it never saw is a 502 ``replay_missing``."""

    logprobs_supported = True

    def __init__(self, config: UpstreamModel, recording: Recording):
        self.config = config
        self.recording = recording
        self.on_retry: Callable[[], None] | None = None

    async def complete(self, body: dict) -> dict:
        resp = self.recording.take(exchange_key(body))
        if resp is None:
            log.warning("replay: no recorded answer for %s", _canonical(body)[:400])
            raise UpstreamError("This request is not in the recording (or was asked more "
                                "often than recorded)", code="replay_missing")
        return {**resp, "created": int(time.time())}

    async def stream(self, body: dict) -> AsyncIterator[dict]:
        """The recorded completion as a stream: one chunk per token, then the finish."""
        resp = await self.complete(body)
        for chunk in completion_as_chunks(resp):
            yield chunk

    async def aclose(self) -> None:
        return None


def completion_as_chunks(resp: dict) -> list[dict]:
    """A chat.completion as the chat.completion.chunk sequence a server would stream."""
    base = {"id": resp.get("id", "replay"), "object": "chat.completion.chunk",
            "created": resp.get("created", 0), "model": resp.get("model", "")}
    chunks: list[dict] = []
    for choice in resp.get("choices") or ():
        index = choice.get("index", 0)
        entries = ((choice.get("logprobs") or {}).get("content")) or []
        text = (choice.get("message") or {}).get("content") or ""
        pieces = [e.get("token") or "" for e in entries]
        if "".join(pieces) != text:  # tokens do not spell the text: one content chunk
            pieces, entries = [text], []
        chunks.append({**base, "choices": [{"index": index, "delta": {"role": "assistant",
                                                                      "content": ""},
                                            "finish_reason": None}]})
        for i, piece in enumerate(pieces):
            delta_choice = {"index": index, "delta": {"content": piece}, "finish_reason": None}
            if entries:
                delta_choice["logprobs"] = {"content": [entries[i]]}
            chunks.append({**base, "choices": [delta_choice]})
        chunks.append({**base, "choices": [{"index": index, "delta": {},
                                            "finish_reason": choice.get("finish_reason")}]})
    if resp.get("usage"):
        chunks.append({**base, "choices": [], "usage": resp["usage"]})
    return chunks
