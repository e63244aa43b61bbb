"""Upstream calls: one interface, two transports, one retry loop.

    Upstream (protocol)            complete(body) -> dict, stream(body) -> chunks
    ├── OpenAIHttpUpstream         lean httpx path for OpenAI-compatible endpoints
    └── LiteLLMUpstream            any provider litellm supports (imported lazily)

Both raise only :mod:`proxy.errors` types and retry through :func:`call_with_retries`.
"""

from proxy.upstream.base import Upstream, build_upstream

__all__ = ["Upstream", "build_upstream"]
