"""`hallgate tune` live, against the fake upstream over HTTP: the cost printed before any
call, the budget refusing a run and stopping one, the user's JSONL checked line by line,
and a rerun recording only what is missing."""

from __future__ import annotations

import json
import re

import pytest
import yaml
from typer.testing import CliRunner

from calibration.bundle import load_bundle
from evaluation.recording_data import halt_records
from evaluation.tune_live import estimate, read_user_file
from hallgate_cli import app
from policies import load_policy
from tests.fake_upstream import token_logprobs

POLICY = """\
version: 1
routes:
  - {name: evaluate, default: true, profile: scored}
profiles:
  scored:
    detectors:
      halt: {enabled: true}
      edfl: {enabled: true, m: 1, n: 2}
      semantic: {enabled: true, M: 2, m: 1, skeleton_samples: 1, max_tokens: 8,
                 entailment: lexical}
    action: annotate
    fail_mode: open
"""
QUESTIONS = [
    {"prompt": "What is the capital of France?", "gold": ["Paris"]},
    {"prompt": "What is the capital of Italy?", "gold": ["Rome"]},
    {"prompt": "What is 2 + 2?", "gold": [4]},
    {"prompt": "Which city hosts the Louvre?", "gold": ["Paris"], "source": "museums"},
    {"prompt": "What is the capital of Spain?", "gold": ["Madrid"]},
    {"prompt": "Where is the Eiffel Tower?", "gold": ["Paris"], "id": "eiffel"},
]
# per item (the fake upstream ignores n, as llama.cpp does): the answer 1 call; EDFL
# 1 + m = 2 decisions, and 2·n = 4 sampled ones where the label mass is thin; semantic
# M + m·s = 3 answers, one call each
USUAL_CALLS, MOST_CALLS = 1 + 2 + 3, 1 + 2 + 4 + 3


@pytest.fixture
def setup(fake_upstream, tmp_path):
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    config = tmp_path / "hallgate.yaml"
    config.write_text(yaml.safe_dump({"models": [{
        "name": "fake", "provider": "openai", "model": "fake-model",
        "api_base": fake_upstream.api_base, "supports_n": False}]}))
    data = tmp_path / "questions.jsonl"
    data.write_text("".join(json.dumps(q) + "\n" for q in QUESTIONS))
    fake_upstream.script.text = "Paris."

    def tune(*extra: str, questions=data):
        args = ["tune", "--model", "fake", "--out", str(tmp_path / "bundle"),
                "--gateway-config", str(config), "--policy", str(policy),
                "--data", str(questions), "--max-tokens", "8", "--concurrency", "1",
                "--yes", *extra]
        return CliRunner().invoke(app, args)

    return tune


def _recorded(tmp_path) -> list[dict]:
    path = tmp_path / "bundle.recording" / "results.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_the_estimate_counts_each_detectors_calls_and_bounds_what_is_spent(
        setup, fake_upstream, tmp_path):
    done = setup()
    assert done.exit_code == 0, done.output
    est = estimate(read_user_file(tmp_path / "questions.jsonl")[0],
                   load_policy(tmp_path / "policy.yaml").profiles["scored"], 8, False)
    calls = {row.detector: (row.calls, row.calls_at_most) for row in est.rows}
    n = len(QUESTIONS)
    assert calls["answer"] == (n, n)
    assert calls["edfl"] == (2 * n, 6 * n)
    assert calls["semantic"] == (3 * n, 3 * n)
    assert calls["halt"] == (0, 0)
    assert est.calls == USUAL_CALLS * n and est.calls_at_most == MOST_CALLS * n
    # printed before the run, the total row first among the numbers
    assert f"{n} items; 0 already recorded" in done.output
    assert re.search(rf"total\s*│\s*{USUAL_CALLS * n}\s*│\s*{MOST_CALLS * n}\s*│",
                     done.output), done.output
    assert re.search(r"edfl\s*│\s*12\s*│\s*36\s*│\s*2\s*│", done.output)
    spent = len(fake_upstream.requests)
    assert est.calls <= spent <= est.calls_at_most
    assert est.rows[0].completion_tokens_at_most == 8 * n  # the answer's max_tokens each
    assert sum(r["answer_tokens"] for r in _recorded(tmp_path)) <= 8 * n


def test_a_run_over_the_budget_is_refused_before_any_call(setup, fake_upstream, tmp_path):
    done = setup("--budget-calls", "20")
    assert done.exit_code == 2
    usual = USUAL_CALLS * len(QUESTIONS)
    assert (f"the estimate is {usual} upstream calls for {len(QUESTIONS)} items, over "
            "--budget-calls 20: about 3 items fit") in done.output
    assert "Traceback" not in done.output
    assert fake_upstream.requests == []
    assert not (tmp_path / "bundle.recording").exists()
    tokens = setup("--budget-tokens", "100")
    assert tokens.exit_code == 2 and "over --budget-tokens 100" in tokens.output


def test_the_run_stops_at_the_budget_and_a_rerun_records_only_the_rest(
        setup, fake_upstream, tmp_path):
    budget = 4 * MOST_CALLS  # over the usual estimate (36), under what 6 items can spend
    done = setup("--budget-calls", str(budget))
    assert done.exit_code == 0, done.output
    first = len(fake_upstream.requests)
    assert first <= budget
    recorded = len(_recorded(tmp_path))
    assert 1 <= recorded < len(QUESTIONS)
    assert "stopped at the budget" in done.output
    assert load_bundle(tmp_path / "bundle", names={"fake"}).manifest.data.items == recorded

    again = setup()
    assert again.exit_code == 0, again.output
    assert f"{recorded} already recorded" in again.output
    assert f"{len(QUESTIONS) - recorded} to record" in again.output
    assert sorted(r["id"] for r in _recorded(tmp_path)) == sorted(
        {r["id"] for r in _recorded(tmp_path)})  # no item twice
    assert len(_recorded(tmp_path)) == len(QUESTIONS)
    assert len(fake_upstream.requests) - first <= (len(QUESTIONS) - recorded) * MOST_CALLS


def test_a_second_run_of_the_same_command_asks_nothing(setup, fake_upstream, tmp_path):
    first = setup()
    assert first.exit_code == 0, first.output
    asked = len(fake_upstream.requests)
    again = setup()
    assert again.exit_code == 0, again.output
    assert f"{len(QUESTIONS)} already recorded" in again.output
    assert "nothing to record" in again.output
    assert len(fake_upstream.requests) == asked
    bundle = load_bundle(tmp_path / "bundle", names={"fake"})
    assert bundle.model == "fake"


def test_too_few_answers_of_a_class_give_a_bundle_without_halt_and_say_why(
        setup, tmp_path):
    done = setup()
    assert done.exit_code == 0, done.output
    assert "HALT is not trained" in done.output and "tune needs at least 5" in done.output
    bundle = load_bundle(tmp_path / "bundle", names={"fake"})
    assert bundle.manifest.halt is None and bundle.halt is None
    assert bundle.manifest.data.items == len(QUESTIONS)
    assert "fake" in (tmp_path / "bundle" / "REPORT.md").read_text()


def test_malformed_lines_are_listed_with_file_and_line(setup, fake_upstream, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join([
        json.dumps(QUESTIONS[0]),
        '{"prompt": "unclosed", "gold": ["x"]',
        json.dumps({"prompt": "No gold here"}),
        json.dumps({"prompt": "", "gold": []}),
        json.dumps({"prompt": "Typo?", "golds": ["a"]}),
        json.dumps({"prompt": "Given", "answer": "Paris", "label": "maybe"}),
        json.dumps({"prompt": "Given", "answer": "Paris", "label": "correct"}),
        json.dumps(QUESTIONS[0]),
        "[1, 2]",
    ]) + "\n")
    done = setup(questions=bad)
    assert done.exit_code == 2
    out = done.output
    for line, what in [(2, "not JSON"), (3, "needs 'gold'"),
                       (4, "'prompt' must be a non-empty string"),
                       (4, "'gold' must be a non-empty list"), (5, "unknown key 'golds'"),
                       (6, "'label' must be 'correct' or 'incorrect'"),
                       (7, "a labelled answer"),
                       (8, "id 'prompt-"), (9, "not a JSON object")]:
        assert f"{bad}:{line}: {what}" in out, (line, what, out)
    assert "cannot score an answer it did not write" in out
    assert "repeats line 1 (the same prompt)" in out
    assert "Traceback" not in out
    assert fake_upstream.requests == []


def test_an_unconfigured_model_and_an_unknown_dataset_are_refused(setup, tmp_path):
    done = CliRunner().invoke(app, ["tune", "--model", "gpt-nope", "--out",
                                    str(tmp_path / "b"), "--dataset", "nq_open,trivia",
                                    "--limit", "1", "--yes"])
    assert done.exit_code == 2
    assert "--dataset: unknown set 'trivia'" in done.output
    model = CliRunner().invoke(app, ["tune", "--model", "gpt-nope", "--out",
                                     str(tmp_path / "b"), "--dataset", "nq_open",
                                     "--limit", "1", "--yes"])
    assert model.exit_code == 2
    assert "--model gpt-nope is not a configured upstream" in model.output


def test_the_built_in_sets_load_and_are_costed_through_the_same_path(setup, fake_upstream,
                                                                    tmp_path):
    done = setup("--dataset", "all", "--limit", "2", "--budget-calls", "1")
    assert done.exit_code == 2
    n = 4 * 2 + 2  # two of each built-in set and of the user's file
    assert f"{n} items; 0 already recorded" in done.output
    assert f"the estimate is {USUAL_CALLS * n} upstream calls" in done.output
    assert fake_upstream.requests == []


def test_a_recording_of_another_model_or_max_tokens_is_not_continued(setup, fake_upstream,
                                                                     tmp_path):
    recording = tmp_path / "bundle.recording"
    recording.mkdir()
    (recording / "meta.json").write_text(json.dumps({"models": [{"name": "other"}]}))
    done = setup()
    assert done.exit_code == 2
    assert "is a recording of other, not fake" in done.output
    (recording / "meta.json").write_text(json.dumps({"models": [{"name": "fake"}]}))
    (recording / "asked.json").write_text(json.dumps({"max_tokens": 48}))
    done = setup()
    assert done.exit_code == 2 and "recorded with --max-tokens 48" in done.output
    assert fake_upstream.requests == []


def test_a_rerun_with_more_data_records_only_the_new_items(setup, fake_upstream, tmp_path):
    fewer = tmp_path / "fewer.jsonl"
    fewer.write_text("".join(json.dumps(q) + "\n" for q in QUESTIONS[:3]))
    first = setup(questions=fewer)
    assert first.exit_code == 0, first.output
    asked = len(fake_upstream.requests)
    more = setup()  # questions.jsonl: the same three (same ids) and three more
    assert more.exit_code == 0, more.output
    assert "3 already recorded" in more.output and "3 to record" in more.output
    assert len(fake_upstream.requests) - asked <= 3 * MOST_CALLS
    items = (tmp_path / "bundle.recording" / "items.jsonl").read_text().splitlines()
    assert len(items) == len(QUESTIONS)
    assert load_bundle(tmp_path / "bundle", names={"fake"}).manifest.data.items == 6


def _labelled(i: int, correct: bool) -> dict:
    words = ["Paris"] if correct else ["Lyon", " maybe"]
    logprob = -0.1 - 0.01 * i if correct else -2.0 - 0.1 * i
    return {"prompt": f"Question {i}: where is the Louvre?", "answer": "".join(words),
            "label": "correct" if correct else "incorrect",
            "logprobs": token_logprobs(words, logprob, 5)}


def test_labelled_answers_with_logprobs_are_recorded_without_a_call(setup, fake_upstream,
                                                                    tmp_path):
    mixed = tmp_path / "mixed.jsonl"
    rows = QUESTIONS[:2] + [_labelled(i, correct=i % 2 == 0) for i in range(12)]
    mixed.write_text("".join(json.dumps(r) + "\n" for r in rows))
    done = setup(questions=mixed)
    assert done.exit_code == 0, done.output
    assert "12 labelled answers with their logprobs (12 new): no upstream call" in done.output
    assert len(fake_upstream.requests) <= 2 * MOST_CALLS  # the two questions only
    results = _recorded(tmp_path)
    labelled = [r for r in results if r.get("labelled")]
    assert len(results) == 14 and len(labelled) == 12
    assert all(r["upstream_completions"] == 0 for r in labelled)
    assert sum(r["correct"] for r in labelled) == 6
    assert labelled[0]["scores"]["neg_mean_logprob"] == pytest.approx(0.1)
    halt_ids = {r["id"] for r in halt_records(tmp_path / "bundle.recording")}
    assert {r["id"] for r in labelled} <= halt_ids
    assert load_bundle(tmp_path / "bundle", names={"fake"}).manifest.data.items == 14

    again = setup(questions=mixed)
    assert again.exit_code == 0, again.output
    assert "(0 new)" in again.output and len(_recorded(tmp_path)) == 14


def test_labelled_answers_with_malformed_logprobs_are_refused(setup, tmp_path):
    bad = tmp_path / "bad.jsonl"
    broken = _labelled(0, True)
    broken["logprobs"][0].pop("top_logprobs")
    bad.write_text(json.dumps(broken) + "\n" + json.dumps({**_labelled(1, True),
                                                           "logprobs": []}) + "\n")
    done = setup(questions=bad)
    assert done.exit_code == 2
    assert f"{bad}:1: 'logprobs' entry 0 needs 'token'" in done.output
    assert f"{bad}:2: 'logprobs' must be a non-empty list" in done.output


@pytest.mark.parametrize("row, problem", [
    ({"prompt": "Q", "gold": ["a"], "id": None}, "'id' must be a string or an integer"),
    ({"prompt": "Q", "gold": ["a"], "id": True}, "'id' must be a string or an integer"),
    ({"prompt": "Q", "gold": None}, "'gold' must be a non-empty list"),
    ({"prompt": "Q", "gold": [" "]}, "'gold' must be a non-empty list"),
    ({"prompt": "Q", "gold": ["a"], "kind": "number"}, "'kind' number needs numeric"),
    ({"prompt": "Q", "answer": "A", "label": "correct", "logprobs": None},
     "'logprobs' must be a non-empty list"),
    ({"prompt": "Q", "label": "correct"}, "needs both 'answer' and 'label'"),
    ({"prompt": "Q", "answer": "A", "label": "correct", "kind": "bool"},
     "'kind' must be 'text' or 'number', not 'bool'"),
])
def test_a_user_line_given_null_or_a_wrong_type_is_refused_with_its_key(row, problem):
    # the lines are pydantic models (evaluation.tune_live.UserLine): a key given as null
    # is a wrong value, not an absent key, and every refusal names the key to fix
    from evaluation.tune_live import _row_problems

    assert any(problem in p for p in _row_problems(row)), _row_problems(row)


def test_a_user_line_with_kind_null_is_a_question_whose_kind_is_inferred():
    from evaluation.tune_live import _row_problems

    assert _row_problems({"prompt": "Q", "gold": [3], "kind": None}) == []
