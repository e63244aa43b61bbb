"""OpenAI ``logprobs.content`` dicts <-> the detectors' plain :class:`TokenLogprob`."""

from __future__ import annotations

from collections.abc import Iterable

from detectors.sampling import TokenLogprob
from proxy.chat.schemas import UPSTREAM_TOP_LOGPROBS


def tokens_from_openai(content: Iterable[dict] | None) -> tuple[TokenLogprob, ...]:
    """``[{"token", "logprob", "top_logprobs": [{"token", "logprob"}]}]`` -> TokenLogprobs."""
    out = []
    for item in content or ():
        top = tuple((t.get("token", ""), float(t.get("logprob", float("-inf"))))
                    for t in item.get("top_logprobs") or ())
        out.append(TokenLogprob(item.get("token", ""),
                                float(item.get("logprob", float("-inf"))), top))
    return tuple(out)


def trim_choice_logprobs(choice: dict, top_k: int | None) -> None:
    """Give the client what it asked for: no logprobs (``top_k`` None) or ``top_k``
    alternatives per token. Sets ``choice["logprobs"]`` anew; the token dicts it held are
    left as they were (a stream's gate may still read them)."""
    if top_k is None:
        choice["logprobs"] = None
        return
    logprobs = choice.get("logprobs")
    if not logprobs or top_k >= UPSTREAM_TOP_LOGPROBS:
        return
    content = [{**item, "top_logprobs": (item.get("top_logprobs") or [])[:top_k]}
               for item in logprobs.get("content") or ()]
    choice["logprobs"] = {**logprobs, "content": content}
