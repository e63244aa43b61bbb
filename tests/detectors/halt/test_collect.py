import json

import pytest

from detectors.halt.collect import (
    QAItem,
    arithmetic_items,
    collect,
    is_correct,
)
from detectors.labels import last_number, normalize_answer
from detectors.sampling import Sample, TokenLogprob
from tests.scripted_sampler import ScriptedSampler


def test_normalisation_and_containment():
    assert normalize_answer("The  Beatles!") == "beatles"
    item = QAItem("q", "nq_open_dev", "text", "p", ("The Beatles",), 0)
    assert is_correct(item, "It was the beatles, in 1964.")
    assert not is_correct(item, "Elvis")


def test_numeric_labels_read_the_last_number():
    assert last_number("27 + 82 = 1,109") == 1109.0
    assert last_number("It is -14.") == -14.0
    assert last_number("no digits") is None
    item = QAItem("a", "arithmetic", "number", "p", (109,), 0)
    assert is_correct(item, "27 + 82 = 109")
    assert not is_correct(item, "109 is wrong, it is 110")
    assert not is_correct(item, "I don't know")


def test_arithmetic_set_is_seeded_and_checkable():
    items = arithmetic_items(50)
    assert items == arithmetic_items(50)
    assert items[0].prompt == "What is 59 - 73? Answer with just the number."
    assert items[0].gold == (-14,)
    for item in items:
        a, op, b = item.prompt.split("?")[0].split()[2:5]
        assert item.gold[0] == eval(f"{a} {op} {b}")  # noqa: S307 - our own digits


def _respond(messages, kwargs, index):
    text = "59 - 73 = -14"
    tokens = tuple(TokenLogprob(w, -0.2, ((w, -0.2), ("x", -2.0))) for w in text.split())
    return Sample(text=text, tokens=tokens, finish_reason="stop")


async def test_collect_writes_records_and_resumes(tmp_path):
    out = tmp_path / "answers.jsonl"
    items = arithmetic_items(3)
    sampler = ScriptedSampler(_respond)
    assert await collect(items[:2], sampler, out) == 2
    assert await collect(items, sampler, out) == 1  # the first two are skipped
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in records] == ["arith-0", "arith-1", "arith-2"]
    first = records[0]
    assert set(first) == {"id", "source", "kind", "gold", "prompt", "answer", "finish_reason",
                          "correct", "hallucinated", "tokens"}
    assert first["correct"] is True and first["hallucinated"] is False
    assert first["tokens"][0] == {"token": "59", "logprob": -0.2,
                                  "top": [["59", -0.2], ["x", -2.0]]}
    _, kwargs = sampler.calls[0]
    assert kwargs["top_logprobs"] == 20 and kwargs["seed"] == 1000
    assert kwargs["temperature"] == pytest.approx(0.7) and kwargs["max_tokens"] == 48


async def test_answers_without_logprobs_are_kept_with_empty_tokens(tmp_path):
    out = tmp_path / "a.jsonl"
    sampler = ScriptedSampler(lambda m, k, i: Sample(text="5", tokens=None))
    await collect(arithmetic_items(1), sampler, out)
    assert json.loads(out.read_text())["tokens"] == []


def test_shared_file_labels_are_reproduced(shared_records):
    from detectors.halt.collect import load_items
    from evaluation.data import DEFAULT_DATA_DIR

    items = {i.id: i for i in load_items("nq_open", DEFAULT_DATA_DIR)}
    for record in shared_records:
        item = items[record["id"]]
        assert item.prompt == record["prompt"] and list(item.gold) == record["gold"]
        assert is_correct(item, record["answer"]) == record["correct"]
