"""StreamUsage: the usage chunk a stream gets when its upstream sends none."""

from __future__ import annotations

from proxy.config import UpstreamModel
from proxy.upstream.usage import StreamUsage, completion_tokens


class ListUpstream:
    """An upstream whose stream is a fixed list of chunks."""

    logprobs_supported = True
    on_retry = None

    def __init__(self, chunks):
        self.config = UpstreamModel(name="m", provider="openai", model="m",
                                    api_base="http://127.0.0.1:9/v1")
        self.chunks = chunks

    async def complete(self, body):
        raise NotImplementedError

    async def stream(self, body):
        for chunk in self.chunks:
            yield chunk

    async def aclose(self):
        pass


def token_chunk(text, n_logprobs=1):
    entries = [{"token": text, "logprob": -0.1, "top_logprobs": []}] * n_logprobs
    return {"id": "c1", "created": 7, "model": "m", "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": {"content": text},
                         "logprobs": {"content": entries} if n_logprobs else None}]}


async def collect(upstream, body=None):
    return [c async for c in upstream.stream(body or {"messages": []})]


async def test_usage_is_appended_with_counted_tokens():
    chunks = [token_chunk("Pa"), token_chunk("ris", n_logprobs=2), token_chunk("", 0)]
    wrapped = StreamUsage(ListUpstream(chunks), count_prompt=lambda body: 11)
    out = await collect(wrapped)
    assert out[:3] == chunks
    assert out[3]["choices"] == [] and out[3]["id"] == "c1"
    assert out[3]["usage"] == {"prompt_tokens": 11, "completion_tokens": 3,
                               "total_tokens": 14}


async def test_an_upstream_usage_chunk_is_kept_and_nothing_is_added():
    usage = {"id": "c1", "choices": [], "usage": {"prompt_tokens": 5,
                                                  "completion_tokens": 1, "total_tokens": 6}}
    wrapped = StreamUsage(ListUpstream([token_chunk("a"), usage]),
                          count_prompt=lambda body: 99)
    assert (await collect(wrapped))[-1] is usage


async def test_an_empty_stream_gets_no_usage():
    assert await collect(StreamUsage(ListUpstream([]), count_prompt=lambda body: 1)) == []


def test_completion_tokens_without_logprobs_counts_content_deltas():
    assert completion_tokens(token_chunk("x", n_logprobs=0)) == 1
    assert completion_tokens(token_chunk("", n_logprobs=0)) == 0
    assert completion_tokens({"choices": []}) == 0
