"""Upstream calls: one interface, two transports, one retry loop.

    Upstream (protocol)            complete(body) -> dict, stream(body) -> chunks
    ├── OpenAIHttpUpstream         lean path (own HTTP/1.1 client) for OpenAI-compatible endpoints
    ├── LiteLLMUpstream            any provider litellm supports (imported lazily)
    ├── RecordingUpstream          wraps one of them, records every exchange
    ├── ReplayUpstream             answers from a recording, no upstream at all
    └── UpstreamWrapper            base of the layers that change one thing of another:
        ├── LogprobsCapability     retries without logprobs for models that refuse them
        └── StreamUsage            counts stream usage for upstreams that send none

The transports raise only :mod:`proxy.errors` types and retry through
:func:`proxy.upstream.base.call_with_retries`.
"""

from __future__ import annotations

from proxy.config import RetrySettings, UpstreamModel
from proxy.upstream.base import Upstream
from proxy.upstream.http1 import HttpClient

__all__ = ["Upstream", "build_upstream"]


def build_upstream(config: UpstreamModel, retry: RetrySettings,
                   client: HttpClient) -> Upstream:
    """The transport this model's config names."""
    if config.provider == "openai":
        from proxy.upstream.openai_http import OpenAIHttpUpstream

        return OpenAIHttpUpstream(config, retry, client)
    from proxy.upstream.litellm_path import LiteLLMUpstream

    return LiteLLMUpstream(config, retry)
