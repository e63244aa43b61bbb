"""The proxy's implementation of :class:`detectors.sampling.Sampler`.

Gates ask for ``n`` samples of a prompt; this turns that into upstream calls through the
same upstream, retry loop and ``n`` fan-out the chat endpoint uses, and counts what they
cost in :class:`SamplerStats`.

``open_sampler()`` gives CLI commands and bench scripts a sampler without a gateway:
with no ``api_base`` it starts the embedded local model for the duration of the block.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence

from detectors.sampling import Message, Sample, SamplerStats
from proxy.chat.schemas import ChatCompletionRequest
from proxy.config import EmbeddedSettings, RetrySettings, UpstreamModel
from proxy.logprobs import tokens_from_openai
from proxy.upstream import Upstream, build_upstream
from proxy.upstream.fanout import complete_n


class UpstreamSampler:
    def __init__(self, upstream: Upstream, stats: SamplerStats | None = None):
        self.upstream = upstream
        self.stats = stats or SamplerStats()

    async def __call__(self, messages: Sequence[Message], *, n: int = 1,
                       temperature: float = 0.0, top_p: float | None = None,
                       max_tokens: int | None = 64, top_logprobs: int = 20,
                       seed: int | None = None,
                       stop: Sequence[str] | None = None) -> list[Sample]:
        fields = {"model": self.upstream.config.name, "messages": list(messages), "n": n,
                  "temperature": temperature, "top_p": top_p, "max_tokens": max_tokens,
                  "seed": seed, "stop": list(stop) if stop else None}
        req = ChatCompletionRequest.parse({k: v for k, v in fields.items() if v is not None})
        body = req.upstream_body(self.upstream.config.max_tokens_field,
                                 null_content=self.upstream.config.null_content)
        if top_logprobs <= 0 or not self.upstream.logprobs_supported:
            body.pop("logprobs", None)
            body.pop("top_logprobs", None)
        else:
            body["top_logprobs"] = top_logprobs
        resp = await complete_n(self.upstream, body)
        self.stats.calls += 1 if (n == 1 or self.upstream.config.supports_n) else n
        usage = resp.get("usage") or {}
        self.stats.prompt_tokens += int(usage.get("prompt_tokens") or 0)
        self.stats.completion_tokens += int(usage.get("completion_tokens") or 0)
        return [_sample(choice) for choice in resp.get("choices") or ()]


def _sample(choice: dict) -> Sample:
    logprobs = choice.get("logprobs")
    tokens = tokens_from_openai(logprobs.get("content")) if logprobs else None
    text = (choice.get("message") or {}).get("content") or ""
    return Sample(text=text, tokens=tokens, finish_reason=choice.get("finish_reason"),
                  completion_tokens=len(tokens) if tokens else 0)


@contextlib.asynccontextmanager
async def open_sampler(api_base: str | None = None, model: str | None = None,
                       api_key_env: str | None = None,
                       retry: RetrySettings | None = None) -> AsyncIterator[UpstreamSampler]:
    """A sampler over ``api_base`` (OpenAI-compatible), or over the embedded model."""
    from proxy.embedded import EmbeddedModel, embedded_upstream_config
    from proxy.upstream.http1 import HttpClient

    async with contextlib.AsyncExitStack() as stack:
        client = await stack.enter_async_context(HttpClient())
        if api_base is None:
            embedded = EmbeddedModel(EmbeddedSettings())
            await embedded.start()
            stack.push_async_callback(embedded.stop)
            config = embedded_upstream_config(embedded)
        else:
            name = model or "default"
            config = UpstreamModel(name=name, provider="openai", model=name,
                                   api_base=api_base, api_key_env=api_key_env)
        yield UpstreamSampler(build_upstream(config, retry or RetrySettings(), client))
