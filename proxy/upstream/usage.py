"""Token usage for streams whose upstream sends none.

A client that asks ``stream_options: {"include_usage": true}`` is owed a last chunk with
``usage``, as the OpenAI API sends it. OpenAI and vLLM honour the option (hallgate passes
it on); llama-cpp-python's server, the embedded model, ignores it. For that upstream the
gateway counts the tokens itself, exactly:

- prompt tokens: the request's messages rendered and tokenised the way llama_cpp.server
  does it, by the same chat format (the GGUF's own template unless the model is served
  with another) and tokenizer (:class:`PromptTokenCounter`,
  a vocabulary-only load of the model file: about 0.15 s and no weights);
- completion tokens: the answer's logprob entries, one per generated token (the gateway
  always asks the upstream for logprobs).

    upstream = StreamUsage(transport, PromptTokenCounter(gguf_path))

A stream that already ends with a usage chunk is passed through untouched.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from proxy.upstream.base import Upstream
from proxy.upstream.wrapper import UpstreamWrapper


class _Rendered(Exception):
    """Carries the prompt's token ids out of llama_cpp's chat-completion path."""

    def __init__(self, tokens: list[int]):
        super().__init__(len(tokens))
        self.tokens = tokens


class PromptTokenCounter:
    """Counts a chat request's prompt tokens as llama_cpp.server does for one GGUF."""

    def __init__(self, gguf_path: str | Path, chat_format: str | None = None):
        from llama_cpp import Llama

        if chat_format is not None:  # hallgate's own formats (the few-shot QA renderer)
            from proxy.llama_child import register_chat_formats

            register_chat_formats()
        self._llama = Llama(model_path=str(gguf_path), vocab_only=True, verbose=False,
                            chat_format=chat_format)
        # llama_cpp's create_chat_completion renders the template, tokenises the prompt and
        # hands the ids to create_completion: stopping there gives the server's exact count
        self._llama.create_completion = self._capture  # type: ignore[method-assign]

    @staticmethod
    def _capture(prompt, **_kwargs):
        raise _Rendered(list(prompt))

    def count(self, body: dict) -> int:
        """Prompt tokens of an OpenAI chat request dict (messages, tools, tool_choice)."""
        try:
            self._llama.create_chat_completion(
                messages=body.get("messages") or [], tools=body.get("tools"),
                tool_choice=body.get("tool_choice"))
        except _Rendered as rendered:
            return len(rendered.tokens)
        raise RuntimeError("llama_cpp did not tokenise the prompt")  # pragma: no cover


def completion_tokens(chunk: dict) -> int:
    """Generated tokens a stream chunk carries: its logprob entries, or one per content
    delta when the upstream sent no logprobs (llama.cpp streams a token per chunk)."""
    total = 0
    for choice in chunk.get("choices") or ():
        entries = (choice.get("logprobs") or {}).get("content")
        if entries:
            total += len(entries)
        elif (choice.get("delta") or {}).get("content"):
            total += 1
    return total


def usage_chunk(template: dict, prompt_tokens: int, completion: int) -> dict:
    """The OpenAI final usage chunk: no choices, the usage of the whole request."""
    return {"id": template.get("id"), "object": "chat.completion.chunk",
            "created": template.get("created", int(time.time())),
            "model": template.get("model"), "choices": [],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion,
                      "total_tokens": prompt_tokens + completion}}


class StreamUsage(UpstreamWrapper):
    """Wraps an Upstream that sends no usage in streams; appends the counted usage chunk
    when a stream ends without one. ``count_prompt``: request dict -> prompt tokens."""

    def __init__(self, inner: Upstream, count_prompt: Callable[[dict], int]):
        super().__init__(inner)
        self.count_prompt = count_prompt

    async def stream(self, body: dict) -> AsyncIterator[dict]:
        generated, reported = 0, False
        last: dict | None = None
        async with contextlib.aclosing(self.inner.stream(body)) as chunks:
            async for chunk in chunks:
                reported = reported or bool(chunk.get("usage"))
                generated += completion_tokens(chunk)
                last = chunk
                yield chunk
        if last is not None and not reported:
            yield usage_chunk(last, self.count_prompt(body), generated)
