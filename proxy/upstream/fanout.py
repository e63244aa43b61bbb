"""``n`` choices from upstreams that ignore ``n``: concurrent single calls, merged.

llama.cpp's server (the embedded model) always answers one choice; the gateway and the
gates' sampler then fan out n single-choice calls (seed+i where the client gave a seed)
and merge them into one response or one stream, choices renumbered 0..n-1.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from typing import TypeVar

from proxy.upstream.base import Upstream

T = TypeVar("T")


async def gather_or_cancel(aws: list[Awaitable[T]]) -> list[T]:
    """Like ``asyncio.gather`` but the first failure cancels the rest and is re-raised."""
    tasks = [asyncio.ensure_future(aw) for aw in aws]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


def fanout_body(body: dict, i: int) -> dict:
    """The i-th of n single-choice calls; a client seed becomes seed+i so the samples differ."""
    single = {**body, "n": 1}
    if "seed" in body:
        single["seed"] = body["seed"] + i
    return single


def sum_usage(usages: list[dict | None]) -> dict | None:
    present = [u for u in usages if u]
    if not present:
        return None
    keys = ("prompt_tokens", "completion_tokens", "total_tokens")
    return {k: sum(int(u.get(k) or 0) for u in present) for k in keys}


def merge_responses(responses: list[dict]) -> dict:
    """n single-choice responses -> one response with choices 0..n-1 and summed usage
    (the usage is what the upstream really spent, prompt tokens included n times)."""
    merged = dict(responses[0])
    choices = []
    for i, resp in enumerate(responses):
        for choice in resp.get("choices") or ():
            choices.append({**choice, "index": i})
    merged["choices"] = choices
    usage = sum_usage([r.get("usage") for r in responses])
    if usage:
        merged["usage"] = usage
    return merged


async def complete_n(upstream: Upstream, body: dict) -> dict:
    """One answer with ``body["n"]`` choices, fanning out where the upstream ignores ``n``."""
    n = body.get("n", 1)
    if n == 1 or upstream.config.supports_n:
        return await upstream.complete(body)
    calls = [upstream.complete(fanout_body(body, i)) for i in range(n)]
    return merge_responses(await gather_or_cancel(calls))


async def merge_streams(upstream: Upstream, body: dict, n: int) -> AsyncIterator[dict]:
    """n single-choice upstream streams as one, choice i renumbered to index i."""
    queue: asyncio.Queue = asyncio.Queue()
    done = object()

    async def pump(i: int) -> None:
        try:
            async for chunk in upstream.stream(fanout_body(body, i)):
                for choice in chunk.get("choices") or ():
                    choice["index"] = i
                await queue.put(chunk)
            await queue.put(done)
        except BaseException as exc:  # handed to the consumer, which re-raises it
            await queue.put(exc)

    tasks = [asyncio.create_task(pump(i)) for i in range(n)]
    try:
        finished = 0
        while finished < n:
            item = await queue.get()
            if item is done:
                finished += 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield item
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
