"""`streaming: progressive`: release a judged answer while it is generated, and cut it when
the prefix judge's risk (HALT, a logprob score) rises.

    upstream chunks ──> held back: the client stays W tokens behind the upstream ──> client
        │  every k tokens: risk = judge(prefix)               (GateSession.feed_prefix)
        └─ risk >= threshold: stop reading, close the upstream stream (it stops generating),
           drop what is held, send the abstention as ``delta.refusal`` + ``finish_reason``,
           the verdict chunk (``hallgate.progressive``: cut at which token, why), [DONE]
    end of the answer: the whole answer is judged (GateSession.judge) *before* the held
    tail goes out; an abstention then cuts at the last token, otherwise the tail, the
    verdict chunk and [DONE] follow. Where the judgement cannot withhold the answer
    (action annotate or shadow) the tail goes out first and the verdict follows.

Prompt-only gates (EDFL) run from the start of the request; no token is released before
they have answered, and when they abstain first the upstream stream is closed before
anything is sent (GateSession.prompt_verdict). With W >= k − 1 every released token lies in
a prefix that passed a check. A token is one entry of ``logprobs.content``; an upstream
that sends content without logprobs cannot be judged early, so the stream is then held
whole, like ``buffer``. Only choice 0 exists here: the service buffers ``n > 1``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from proxy.chat import shaping
from proxy.chat.gate_session import GateOutcome, GateSession, ProgressivePlan
from proxy.chat.schemas import ChatCompletionRequest
from proxy.errors import mid_stream_error

Tail = Callable[[GateOutcome, list[dict]], AsyncIterator[bytes]]  # verdict, usage, [DONE]


def chunk_tokens(chunk: dict) -> tuple[int, bool]:
    """(tokens of choice 0 in this chunk, whether they came with logprobs). A content delta
    without logprobs counts as one token."""
    for choice in chunk.get("choices") or ():
        if choice.get("index", 0) != 0:
            continue
        logprobs = choice.get("logprobs")
        if logprobs and logprobs.get("content"):
            return len(logprobs["content"]), True
        return (1, False) if (choice.get("delta") or {}).get("content") else (0, True)
    return 0, True


def _abstainers(outcome: GateOutcome) -> str:
    """The detectors whose verdict was abstain, by name, from the outcome's report."""
    detectors = (outcome.metadata or {}).get("detectors") or {}
    names = [n for n, d in detectors.items() if d.get("verdict") == "abstain"]
    return ", ".join(names) or "a prompt-time detector"


def next_check(read: int, every: int) -> int:
    """The first multiple of ``every`` above ``read``: where the next prefix check falls."""
    return (read // every + 1) * every


@dataclass
class _Held:
    chunk: dict
    end: int  # tokens read from the upstream through this chunk


class ProgressiveStream:
    """One progressive stream; :meth:`events` is the SSE body."""

    def __init__(self, req: ChatCompletionRequest, session: GateSession, plan: ProgressivePlan,
                 first: dict, chunks: AsyncIterator[dict], tail: Tail):
        self.req, self.session, self.plan = req, session, plan
        self.first, self.chunks, self.tail = first, chunks, tail
        self.top_k = req.client_top_logprobs()
        self.acc = shaping.StreamAccumulator()
        self.held: deque[_Held] = deque()
        self.usage: list[dict] = []
        self.read = 0  # tokens read from the upstream
        self.released = 0  # tokens sent to the client
        self.sent_any = False  # a chunk went out (its role included)
        self.next_check = plan.rescore_every
        self.fed = 0  # tokens handed to the prefix judge so far
        self.checks: list[tuple[int, float]] = []  # (prefix tokens, risk) of every check
        self.crossed: tuple[int, float] | None = None  # first check at/over the threshold
        self.gate_passed = False  # prompt-only gates answered and did not abstain
        self.blind = False  # content without logprobs: hold everything to the end
        self.reading: asyncio.Future | None = None  # a read racing the prompt gates

    async def events(self) -> AsyncIterator[bytes]:
        prompt = asyncio.ensure_future(self.session.prompt_verdict())
        try:
            async for data in self._run(prompt):
                yield data
        except Exception as exc:
            yield shaping.sse(mid_stream_error(exc))
        finally:
            for task in (prompt, self.reading):
                if task is not None:  # a read in flight must end before the close
                    task.cancel()
                    await asyncio.wait({task})
            await self._close_upstream()
            await self.session.aclose()

    async def _run(self, prompt: asyncio.Future) -> AsyncIterator[bytes]:
        chunk: dict | None = self.first
        early: GateOutcome | None = None
        while chunk is not None and early is None:
            self._take(chunk)
            early = self._early(prompt)
            if early is None and not self.blind and self.read >= self.next_check:
                result = await self._check()
                early = self._early(prompt)  # EDFL may have answered during the check
                if early is None and result is not None:
                    prompt.cancel()  # the cut decides; EDFL is reported as it stands
                    async for data in self._cut(result):
                        yield data
                    return
            if early is None:
                for data in self._releasable():
                    yield data
                chunk, early = await self._next(prompt)
        early = early or self._early(prompt)
        if early is not None:  # a prompt-time detector abstained before any release
            await self._close_upstream()
            async for data in self._end_with_refusal(early, f"{_abstainers(early)} "
                                                     "abstained before any token was "
                                                     "released"):
                yield data
            return
        prompt.cancel()  # judge() waits for EDFL itself
        async for data in self._finish():
            yield data

    # --- reading ---------------------------------------------------------------------

    def _take(self, chunk: dict) -> None:
        self.acc.add(chunk)
        if chunk.get("usage") and not chunk.get("choices"):
            self.usage.append(chunk)
            return
        n, with_logprobs = chunk_tokens(chunk)
        self.blind = self.blind or not with_logprobs
        self.read += n
        self.held.append(_Held(chunk, self.read))

    async def _next(self, prompt: asyncio.Future) -> tuple[dict | None, GateOutcome | None]:
        """The next upstream chunk, or the prompt gate's abstention if it comes first."""
        if not self.gate_passed:
            if not prompt.done():
                self.reading = read = asyncio.ensure_future(self._read())
                await asyncio.wait({read, prompt}, return_when=asyncio.FIRST_COMPLETED)
                if read.done():
                    return read.result(), None
                early = self._gate(prompt)
                if early is not None:
                    read.cancel()
                    await asyncio.wait({read})
                    return None, early
                return await read, None
            early = self._gate(prompt)
            if early is not None:
                return None, early
        return await self._read(), None

    async def _read(self) -> dict | None:
        return await anext(self.chunks, None)

    def _early(self, prompt: asyncio.Future) -> GateOutcome | None:
        """The prompt gates' abstention once they have answered (consumed once)."""
        if self.gate_passed or not prompt.done() or prompt.cancelled():
            return None
        return self._gate(prompt)

    def _gate(self, prompt: asyncio.Future) -> GateOutcome | None:
        outcome = prompt.result()
        self.gate_passed = outcome is None
        return outcome

    async def _close_upstream(self) -> None:
        """Closing the generator closes the upstream response: the upstream stops."""
        with contextlib.suppress(Exception):
            await self.chunks.aclose()  # type: ignore[attr-defined]

    # --- judging ---------------------------------------------------------------------

    async def _check(self) -> Any | None:
        """Judge the prefix read so far; the judgement when it crosses and may cut."""
        self.next_check = next_check(self.read, self.plan.rescore_every)
        tokens = self.acc.logprobs.get(0) or []
        result = await self.session.feed_prefix(tokens[self.fed:])  # the new tokens only
        self.fed = len(tokens)
        if result is None:
            return None
        self.checks.append((len(tokens), float(result.risk)))
        if result.risk < self.plan.threshold:
            return None
        self.crossed = self.crossed or (len(tokens), float(result.risk))
        return result if self.plan.cut else None

    async def _cut(self, result: Any) -> AsyncIterator[bytes]:
        await self._close_upstream()  # first: the upstream stops while we judge
        answer = self.acc.answers()[0]
        outcome = await self.session.judge_cut(answer, result)
        why = (f"{self.plan.detector} prefix risk {result.risk:.3f} >= "
               f"{self.plan.threshold:.3f} after {self.read} tokens")
        async for data in self._end_with_refusal(outcome, why):
            yield data

    async def _finish(self) -> AsyncIterator[bytes]:
        """The upstream finished: judge the whole answer, then release or cut. A profile
        whose judgement cannot withhold the answer (annotate, shadow) releases the held
        tail first: the client does not wait for a judgement that changes nothing it
        reads."""
        if not self.plan.holds_tail:
            for data in self._releasable(final=True):
                yield data
        outcome = await self.session.judge(self.acc.answers())
        self.gate_passed = True  # judge() has waited for every gate
        if outcome.abstain:
            async for data in self._end_with_refusal(outcome, "the whole answer was judged: "
                                                     "abstain"):
                yield data
            return
        for data in self._releasable(final=True):
            yield data
        self._report(outcome, None)
        async for data in self.tail(outcome, self.usage):
            yield data

    # --- writing ---------------------------------------------------------------------

    def _releasable(self, final: bool = False) -> list[bytes]:
        """SSE events for the held chunks now W tokens behind the upstream (all when
        ``final``); nothing before the prompt gates passed or while blind."""
        if not final and (not self.gate_passed or self.blind):
            return []
        limit = self.read if final else self.read - self.plan.holdback_tokens
        out = []
        while self.held and self.held[0].end <= limit:
            item = self.held.popleft()
            self.released = item.end
            out.append(shaping.sse(shaping.shape_chunk(item.chunk, self.req.model, self.top_k)))
        self.sent_any = self.sent_any or bool(out)
        return out

    async def _end_with_refusal(self, outcome: GateOutcome, why: str) -> AsyncIterator[bytes]:
        self.held.clear()
        template = {**self.first, "model": self.req.model}
        text = outcome.replacement or ""
        for chunk in shaping.refusal_chunks(template, text, with_role=not self.sent_any):
            yield shaping.sse(chunk)
        self._report(outcome, why)
        async for data in self.tail(outcome, self.usage):
            yield data

    def _report(self, outcome: GateOutcome, cut_reason: str | None) -> None:
        """``hallgate.progressive`` in the verdict chunk: where and why the stream was cut."""
        if outcome.metadata is None:
            return
        report: dict[str, Any] = {
            "cut": cut_reason is not None, "tokens_read": self.read,
            "released_tokens": self.released, "holdback_tokens": self.plan.holdback_tokens,
            "rescore_every": self.plan.rescore_every, "threshold": self.plan.threshold,
            "checks": len(self.checks), "answer_kind": self.plan.answer_kind,
            "max_prefix_risk": max((r for _, r in self.checks), default=None)}
        if cut_reason is not None:
            report.update(cut_at_token=self.read, reason=cut_reason)
        elif self.crossed is not None:  # annotate / shadow / a kind not cut: reported
            report["would_cut_at_token"] = self.crossed[0]
        if self.plan.kind_uncut:
            report["cuts_off"] = (f"answer kind '{self.plan.answer_kind}' is not in the "
                                  "profile's progressive.cut_on")
        outcome.metadata["progressive"] = report
