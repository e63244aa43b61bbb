"""Chat completions: forward upstream (top-20 logprobs on when a detector reads them), fan
out ``n`` where the upstream ignores it, let the gates judge the answer, shape what the
client gets back.

    router -> ChatService.complete(request)     -> (body, headers)
           -> ChatService.open_stream(request)  -> StreamPlan(headers, SSE byte chunks)

Streams by the profile's mode: ``buffer`` (hold, judge, replay), ``passthrough`` (forward,
verdict chunk at the end), ``progressive`` (proxy/chat/progressive.py: release W tokens
behind the upstream, cut on HALT's prefix risk).

``open_stream`` pulls the first upstream chunk before it returns, so a failing upstream is
still an HTTP error status; after that, a failure ends the stream with an error chunk.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass

from proxy.chat import shaping, tool_calls
from proxy.chat.gate_session import Answer, Gatekeeper, GateOutcome, GateSession, RequestContext
from proxy.chat.progressive import ProgressiveStream
from proxy.chat.schemas import ChatCompletionRequest
from proxy.errors import InvalidRequest, UpstreamError, mid_stream_error
from proxy.registry import UpstreamRegistry
from proxy.upstream import Upstream
from proxy.upstream.fanout import complete_n, merge_streams, sum_usage


async def stamped(chunks: AsyncGenerator[dict, None], response_id: str,
                  ) -> AsyncGenerator[dict, None]:
    """The upstream's chunks under the gateway's response id (an upstream's own id may
    repeat); closing this closes the upstream stream."""
    try:
        async for chunk in chunks:
            chunk["id"] = response_id
            yield chunk
    finally:
        await chunks.aclose()


@dataclass
class StreamPlan:
    headers: dict[str, str]
    body: AsyncIterator[bytes]
    response_id: str | None = None  # the id every chunk carries


@dataclass
class ChatResult:
    body: dict
    headers: dict[str, str]
    outcome: GateOutcome


class ChatService:
    def __init__(self, registry: UpstreamRegistry, gatekeeper: Gatekeeper, max_n: int):
        self.registry = registry
        self.gatekeeper = gatekeeper
        self.max_n = max_n

    def _check(self, req: ChatCompletionRequest) -> Upstream:
        if req.n > self.max_n:
            raise InvalidRequest(f"'n' must be at most {self.max_n} on this gateway", param="n")
        return self.registry.get(req.model)

    # --- non-streaming ---------------------------------------------------------------

    async def complete(self, req: ChatCompletionRequest, ctx: RequestContext) -> ChatResult:
        upstream = self._check(req)
        session = self.gatekeeper.begin(req, ctx, req.model)
        try:
            body = req.upstream_body(upstream.config.max_tokens_field, session.reads_logprobs,
                                     upstream.config.null_content)
            resp = await complete_n(upstream, body)
            resp["id"] = session.response_id  # the upstream's own id may repeat
            # a session that reads no answer (every detector off) is not handed one
            answers = shaping.answers_from_response(resp) if session.reads_logprobs else []
            outcome = tool_calls.settle(await session.judge(answers), answers,
                                        req.response_format)
        finally:
            await session.aclose()
        body = shaping.shape_response(resp, req.model, req.client_top_logprobs(), outcome)
        return ChatResult(body, {**session.headers, **outcome.headers}, outcome)

    # --- streaming -------------------------------------------------------------------

    async def open_stream(self, req: ChatCompletionRequest, ctx: RequestContext) -> StreamPlan:
        upstream = self._check(req)
        session = self.gatekeeper.begin(req, ctx, req.model)
        chunks = stamped(self._upstream_chunks(upstream, req, session.reads_logprobs),
                         session.response_id)
        try:
            first = await anext(chunks)
        except StopAsyncIteration:
            await session.aclose()
            raise UpstreamError("Upstream closed the stream without sending anything",
                                code="upstream_empty_stream") from None
        except BaseException:
            await session.aclose()
            raise
        mode = session.streaming_mode
        plan = session.progressive_plan() if mode == "progressive" and req.n == 1 else None
        if plan is not None:
            tail = functools.partial(self._tail, req, first)  # (outcome, usage) -> SSE end
            stream = ProgressiveStream(req, session, plan, first, chunks, tail)
            return StreamPlan(dict(session.headers), stream.events(), session.response_id)
        if mode != "passthrough":  # buffer, or progressive that cannot be (n > 1, no HALT)
            return await self._buffered(req, session, first, chunks)
        return StreamPlan(dict(session.headers), self._passthrough(req, session, first, chunks),
                          session.response_id)

    def _upstream_chunks(self, upstream: Upstream, req: ChatCompletionRequest,
                         reads_logprobs: bool) -> AsyncGenerator[dict, None]:
        """The upstream's chunks: its own stream when it can give every choice (closing
        it closes the upstream response at once; a progressive cut relies on that), else
        ``n`` streams merged."""
        body = req.upstream_body(upstream.config.max_tokens_field, reads_logprobs,
                                 upstream.config.null_content)
        if req.n == 1 or upstream.config.supports_n:
            return upstream.stream(body)
        return merge_streams(upstream, body, req.n)

    async def _buffered(self, req: ChatCompletionRequest, session: GateSession, first: dict,
                        chunks: AsyncIterator[dict]) -> StreamPlan:
        """Hold the whole answer, decide, then replay it (or its replacement)."""
        acc = shaping.StreamAccumulator()
        held = [first]
        try:
            acc.add(first)
            async for chunk in chunks:
                acc.add(chunk)
                held.append(chunk)
            answers = acc.answers()
            outcome = tool_calls.settle(await session.judge(answers), answers,
                                        req.response_format)
        finally:
            await session.aclose()
        headers = {**session.headers, **outcome.headers}
        return StreamPlan(headers, self._replay(req, held, answers, outcome),
                          session.response_id)

    async def _replay(self, req: ChatCompletionRequest, held: list[dict], answers: list[Answer],
                      outcome: GateOutcome) -> AsyncIterator[bytes]:
        top_k = req.client_top_logprobs()
        usage = [c for c in held if c.get("usage") and not c.get("choices")]
        if outcome.replacement is None:
            for chunk in held:
                if chunk.get("usage") and not chunk.get("choices"):
                    continue
                yield shaping.sse(shaping.shape_chunk(chunk, req.model, top_k))
        else:
            template = {**held[0], "model": req.model}
            for chunk in shaping.replacement_chunks(template, [a.index for a in answers],
                                                    outcome):
                yield shaping.sse(chunk)
        async for tail in self._tail(req, held[0], outcome, usage):
            yield tail

    async def _passthrough(self, req: ChatCompletionRequest, session: GateSession,
                           first: dict, chunks: AsyncGenerator[dict, None],
                           ) -> AsyncIterator[bytes]:
        """Forward chunks as they come; judge at the end and report in a final chunk."""
        top_k = req.client_top_logprobs()
        acc = shaping.StreamAccumulator() if session.reads_logprobs else None
        usage: list[dict] = []
        opening = b""  # a first chunk without text (the role) goes out with the first words
        try:
            chunk: dict | None = first
            while chunk is not None:
                if acc is not None:  # only a session that reads the answer is handed it
                    acc.add(chunk)
                if chunk.get("usage") and not chunk.get("choices"):
                    usage.append(chunk)
                elif chunk is first and not shaping.carries_text(chunk):
                    opening = shaping.sse(shaping.shape_chunk(chunk, req.model, top_k))
                else:  # one write to the client, not two, on the way to its first words
                    yield opening + shaping.sse(shaping.shape_chunk(chunk, req.model, top_k))
                    opening = b""
                chunk = await anext(chunks, None)
            outcome = await session.judge(acc.answers() if acc is not None else [])
            async for tail in self._tail(req, first, outcome, usage):
                yield opening + tail
        except Exception as exc:
            yield opening + shaping.sse(mid_stream_error(exc))
        finally:
            await chunks.aclose()  # a client that left hangs up on the upstream at once
            await session.aclose()

    async def _tail(self, req: ChatCompletionRequest, template: dict, outcome: GateOutcome,
                    usage: list[dict]) -> AsyncIterator[bytes]:
        """The verdict chunk, the usage chunk and [DONE], as one piece (one write)."""
        events = []
        if outcome.metadata is not None:
            events.append(shaping.sse(shaping.verdict_chunk({**template, "model": req.model},
                                                            outcome.metadata)))
        wants_usage = bool(req.stream_options and req.stream_options.include_usage)
        if wants_usage and usage:
            merged = {**usage[-1], "model": req.model,
                      "usage": sum_usage([u["usage"] for u in usage])}
            events.append(shaping.sse(merged))
        events.append(shaping.DONE_EVENT)
        yield b"".join(events)


