"""`streaming: progressive` on the real embedded model (default policy, enforced and
switched to progressive by headers): whether or not HALT cuts the answer, the stream
must be well-formed: released content, at most one refusal at the end, one finish, the
verdict chunk last, and a cut that never shows the held-back tokens."""

from __future__ import annotations

import openai
import pytest

from detectors.logprob_stats.stats import RunningStats
from policies import load_policy
from policies.loader import EXAMPLES_DIR
from proxy.config import EMBEDDED_MODEL_NAME, Settings

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


LONG_POLICY = """
version: 1
routes:
  - {name: long, default: true, profile: long}
profiles:
  long:
    detectors: {halt: {enabled: true}, mean_logprob: {enabled: true}}
    streaming: progressive
    progressive: {detector: mean_logprob}
    action: annotate
"""


def test_the_running_mean_logprob_judges_the_embedded_models_prefixes(start_gateway,
                                                                       tmp_path):
    """`progressive.detector: mean_logprob` on the real model: fed only the new tokens at
    each check, its risks are those of the whole prefix recomputed from the logprobs the
    client received; HALT still judges the whole answer."""
    path = tmp_path / "policy.yaml"
    path.write_text(LONG_POLICY)
    url = start_gateway(Settings(policy_file=str(path)))
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0,
                           timeout=600)
    chunks = list(client.chat.completions.create(
        model=EMBEDDED_MODEL_NAME, max_tokens=48, temperature=0, seed=7, stream=True,
        logprobs=True, top_logprobs=20,
        messages=[{"role": "user", "content": "Explain in three sentences how a bicycle "
                                              "works."}]))
    verdict = chunks[-1].model_extra["hallgate"]
    tokens = [t.model_dump() for c in chunks[:-1] for ch in c.choices
              if ch.logprobs and ch.logprobs.content for t in ch.logprobs.content]
    report = verdict["progressive"]
    assert report["cut"] is False and report["tokens_read"] == len(tokens) >= 16
    every = report["rescore_every"]
    risks = [RunningStats().add(tokens[:end]).scores()["mean_logprob"]
             for end in range(every, len(tokens) + 1, every)]
    assert report["checks"] == len(risks)
    assert report["max_prefix_risk"] == pytest.approx(max(risks), abs=1e-9)
    assert report["threshold"] == pytest.approx(0.4317)  # prefix.json, chosen on validation
    assert set(verdict["detectors"]) >= {"halt", "mean_logprob"}
    assert verdict["detectors"]["halt"]["risk"] is not None


CAUSAL_POLICY = """
version: 1
routes:
  - {name: causal, default: true, profile: causal}
profiles:
  causal:
    detectors: {halt: {enabled: false}, halt_causal: {enabled: true, threshold: 1.0}}
    streaming: progressive
    progressive: {detector: halt_causal, cut_on: [short_answer]}  # prefix threshold: the
    action: abstain  # checkpoint's (chosen on validation); the whole answer always passes
"""


def test_causal_halt_reads_each_token_once_and_long_form_is_not_cut(start_gateway, tmp_path):
    """`progressive.detector: halt_causal` with `cut_on: [short_answer]` on the real model:
    a long-form request is checked but never cut; every check's risk is the causal
    stream's over the logprobs the client received, and the whole answer's judgement is
    that stream's state after the last token (no second pass, no report-only HALT)."""
    from detectors.halt.adapter import logprob_matrix
    from detectors.halt.causal import CausalStream, CompiledCausal, load_causal

    path = tmp_path / "policy.yaml"
    path.write_text(CAUSAL_POLICY)
    url = start_gateway(Settings(policy_file=str(path)))
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0,
                           timeout=600)
    chunks = list(client.chat.completions.create(
        model=EMBEDDED_MODEL_NAME, max_tokens=80, temperature=0, seed=7, stream=True,
        logprobs=True, top_logprobs=20,
        messages=[{"role": "user", "content": "Write four sentences about the history of "
                                              "the Roman Empire."}]))
    verdict = chunks[-1].model_extra["hallgate"]
    report = verdict["progressive"]
    assert report["answer_kind"] == "other" and "cuts_off" in report
    assert report["cut"] is False and verdict["decision"] == "answer"
    assert report["threshold"] == pytest.approx(load_causal().prefix_threshold)
    tokens = [t.model_dump() for c in chunks[:-1] for ch in c.choices
              if ch.logprobs and ch.logprobs.content for t in ch.logprobs.content]
    assert report["tokens_read"] == len(tokens) >= 16
    every = report["rescore_every"]
    stream = CausalStream(CompiledCausal(load_causal().model))
    mat = logprob_matrix(tokens).values
    risks = [stream.feed(mat[end - every:end]) for end in range(every, len(mat) + 1, every)]
    assert report["max_prefix_risk"] == pytest.approx(max(risks), abs=1e-6)
    final = stream.feed(mat[len(risks) * every:])
    judged = verdict["detectors"]["halt_causal"]
    assert judged["streamed_state"] is True and "halt" not in verdict["detectors"]
    assert judged["risk"] == pytest.approx(final, abs=1e-6)
