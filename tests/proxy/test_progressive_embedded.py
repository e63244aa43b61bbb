"""`streaming: progressive` on the real embedded model (default policy, enforced and
switched to progressive by headers): whether or not HALT cuts the answer, the stream
must be well-formed: released content, at most one refusal at the end, one finish, the
verdict chunk last, and a cut that never shows the held-back tokens."""

from __future__ import annotations

import openai
import pytest

from policies import load_policy
from policies.loader import EXAMPLES_DIR
from proxy.config import EMBEDDED_MODEL_NAME

pytestmark = pytest.mark.model

QUESTIONS = {  # one the model gets right (not cut when last run), one it must make up
    "known": "Who wrote the novel Moby-Dick, and in what year was it published?",
    "fabricated": "What did Professor Zorblax Quentin discover at the 1987 Geneva "
                  "Conference on Tidal Clocks?",
}


@pytest.mark.parametrize("question", QUESTIONS.values(), ids=QUESTIONS.keys())
def test_progressive_stream_on_the_embedded_model_is_well_formed(embedded_gateway, question):
    client = openai.OpenAI(base_url=f"{embedded_gateway}/v1", api_key="unused",
                           max_retries=0, timeout=600, default_headers={
                               "x-hallgate-action": "abstain",
                               "x-hallgate-streaming": "progressive"})
    raw = client.chat.completions.with_raw_response.create(
        model=EMBEDDED_MODEL_NAME, messages=[{"role": "user", "content": question}],
        max_tokens=48, temperature=0, seed=7, stream=True)
    assert raw.http_response.headers["x-hallgate-decision"] == "deferred"
    chunks = list(raw.parse())
    verdict = chunks[-1].model_extra["hallgate"]
    assert chunks[-1].choices == []
    choices = [c.choices[0] for c in chunks[:-1] if c.choices]
    content = "".join(c.delta.content or "" for c in choices)
    refusals = [i for i, c in enumerate(choices) if c.delta.refusal]
    finishes = [i for i, c in enumerate(choices) if c.finish_reason]
    assert len(finishes) == 1 and finishes[0] == len(choices) - 1
    report = verdict["progressive"]
    assert report["checks"] == report["tokens_read"] // report["rescore_every"]
    if report["cut"]:
        assert verdict["returned"] == "abstain" and refusals == [len(choices) - 2]
        assert choices[refusals[0]].delta.refusal == abstention_text()
        assert report["released_tokens"] <= report["tokens_read"] - report["holdback_tokens"]
        assert not any(c.delta.content for c in choices[refusals[0]:])
    else:
        assert verdict["returned"] == "answer" and refusals == [] and content
        assert report["released_tokens"] == report["tokens_read"]


def abstention_text() -> str:
    """The default route's abstention text (its profile extends strict-factual)."""
    policy = load_policy(EXAMPLES_DIR / "default.yaml")
    return policy.match()[1].abstention_text
