"""The Responses API on the real embedded llama.cpp model (no /responses of its own:
the gateway translates to chat completions)."""

from __future__ import annotations

import pytest

from proxy.config import EMBEDDED_MODEL_NAME

pytestmark = pytest.mark.model


def test_responses_create_plain_and_streaming(embedded_client):
    resp = embedded_client.responses.create(
        model=EMBEDDED_MODEL_NAME, input="What is the capital of France?",
        max_output_tokens=16, temperature=0, top_logprobs=3,
        include=["message.output_text.logprobs"])
    assert resp.status in ("completed", "incomplete") and resp.usage.output_tokens >= 1
    part = resp.output[0].content[0]
    assert "hallgate" in resp.model_extra  # the default policy reported its decision
    if part.type == "output_text":
        assert part.text.strip() and part.logprobs
        assert all(len(t.top_logprobs) <= 3 for t in part.logprobs)
    else:
        assert part.type == "refusal" and part.refusal
    events = list(embedded_client.responses.create(
        model=EMBEDDED_MODEL_NAME, input="Say hello.", max_output_tokens=8, temperature=0,
        stream=True))
    # A stop at max_output_tokens ends in response.incomplete, as OpenAI's does.
    assert events[0].type == "response.created"
    assert events[-1].type in ("response.completed", "response.incomplete")
    final = events[-1].response
    assert final.output  # usage: llama.cpp's server reports none in streams (None, not 0)
    deltas = [e.delta for e in events
              if e.type in ("response.output_text.delta", "response.refusal.delta")]
    part = final.output[0].content[0]
    assert "".join(deltas) == (part.text if part.type == "output_text" else part.refusal)
