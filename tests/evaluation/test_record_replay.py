"""`hallgate eval --record` through a gateway on the fake upstream, then `--replay` with no
upstream at all: the same gateway and detector code, the same scores."""

from __future__ import annotations

import gzip
import json

import pytest

from evaluation.evaluate import evaluate
from proxy.upstream.recording import Recording, exchange_key, read_exchanges
from tests.evaluation.test_eval_command import ITEMS

POLICY = """\
version: 1
routes:
  - {name: evaluate, default: true, profile: scored}
profiles:
  scored:
    detectors:
      halt: {enabled: true}
      edfl: {enabled: true, m: 2, n: 2}
      semantic: {enabled: true, M: 3, m: 1, skeleton_samples: 1, entailment: lexical}
    action: annotate
    fail_mode: open
"""



def test_exchange_key_ignores_what_does_not_shape_the_answer():
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "seed": 3}
    same = {**body, "n": 1, "stream": True, "stream_options": {"include_usage": True},
            "top_p": None}
    assert exchange_key(body) == exchange_key(same)
    assert exchange_key(body) != exchange_key({**body, "seed": 4})
    assert exchange_key(body) != exchange_key({**body, "n": 2})


def test_identical_requests_get_the_recorded_answers_in_order(tmp_path):
    recording = Recording(tmp_path)
    for text in ("first", "second"):
        recording.append("k", {"choices": [{"message": {"content": text}}]})
    replay = Recording(tmp_path)
    got = [replay.take("k"), replay.take("k"), replay.take("k")]
    assert [g["choices"][0]["message"]["content"] for g in got[:2]] == ["first", "second"]
    assert got[2] is None and replay.take("unknown") is None  # never a made-up answer


def test_an_interrupted_write_keeps_every_finished_exchange(tmp_path):
    recording = Recording(tmp_path)
    recording.append("a", {"choices": []})
    path = tmp_path / "exchanges.jsonl.gz"
    whole = gzip.compress(b'{"key": "b", "response": {"choices": []}}\n')
    with path.open("ab") as fh:
        fh.write(whole[: len(whole) // 2])  # the process died mid-member
    assert [row["key"] for row in read_exchanges(path)] == ["a"]


def _record_items(fake_upstream, tmp_path, **options):
    """Record ITEMS through a gateway on the fake upstream; (policy, recording, kwargs)."""
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    dataset = tmp_path / "items.jsonl"
    dataset.write_text("".join(json.dumps(item) + "\n" for item in ITEMS))
    fake_upstream.script.texts.extend(["Paris.", "Paris is in France.", "It is Lyon."] * 20)
    gateway = {"models": [{"name": "fake", "provider": "openai", "model": "fake-model",
                           "api_base": fake_upstream.api_base, "supports_n": False}]}
    kwargs = dict(limit=None, concurrency=2, base_url=None, model=None, max_tokens=16,
                  temperature=0.7, seed=0, data_dir=tmp_path, plots=False)
    recorded_dir = tmp_path / "recording"
    evaluate(str(dataset), policy, "evaluate", recorded_dir, command="record", record=True,
             gateway=gateway, **kwargs, **options)
    return policy, recorded_dir, kwargs


def test_record_then_replay_without_upstream_gives_the_same_scores(fake_upstream, tmp_path):
    policy, recorded_dir, kwargs = _record_items(fake_upstream, tmp_path)
    asked_live = len(fake_upstream.requests)
    assert {p.name for p in recorded_dir.iterdir()} >= {
        "items.jsonl", "asked.json", "meta.json", "exchanges.jsonl.gz", "results.jsonl"}
    assert sum(1 for _ in read_exchanges(recorded_dir / "exchanges.jsonl.gz")) == asked_live

    replayed_dir = tmp_path / "replayed"
    summary = evaluate("", policy, "evaluate", replayed_dir, command="replay",
                       replay=recorded_dir, **{**kwargs, "max_tokens": 99})
    assert len(fake_upstream.requests) == asked_live  # not one upstream call
    assert summary["failures"] == 0 and summary["mode"] == "replay"
    live = _records(recorded_dir)
    again = _records(replayed_dir)
    assert set(again) == {item["id"] for item in ITEMS}
    for item_id, record in live.items():
        assert again[item_id]["answer"] == record["answer"]
        for name in ("halt", "edfl", "semantic", "semantic_entropy", "combined"):
            assert again[item_id]["scores"][name] == pytest.approx(
                record["scores"][name], abs=1e-3), (item_id, name)


def test_a_sharded_recording_writes_one_exchanges_file_per_gateway_and_replays(
        fake_upstream, tmp_path):
    policy, recorded_dir, kwargs = _record_items(fake_upstream, tmp_path, shards=2)
    asked_live = len(fake_upstream.requests)
    parts = [recorded_dir / f"exchanges.{k}.jsonl.gz" for k in (0, 1)]
    counts = [sum(1 for _ in read_exchanges(p)) for p in parts]
    assert min(counts) > 0 and sum(counts) == asked_live  # both gateways recorded
    assert not (recorded_dir / "exchanges.jsonl.gz").exists()
    summary = evaluate("", policy, "evaluate", tmp_path / "replayed", command="replay",
                       replay=recorded_dir, **kwargs)
    assert len(fake_upstream.requests) == asked_live and summary["failures"] == 0
    live, again = _records(recorded_dir), _records(tmp_path / "replayed")
    assert set(again) == set(live) == {item["id"] for item in ITEMS}
    for item_id, record in live.items():
        assert again[item_id]["scores"]["halt"] == pytest.approx(record["scores"]["halt"],
                                                                 abs=1e-3)


def test_a_replay_reads_the_main_exchanges_file_before_the_parts(tmp_path):
    for part, text in ((None, "main"), ("1", "part 1"), ("0", "part 0"), ("10", "part 10")):
        Recording(tmp_path, part).append("k", {"choices": [{"message": {"content": text}}]})
    replay = Recording(tmp_path)
    got = [replay.take("k")["choices"][0]["message"]["content"] for _ in range(4)]
    assert got == ["main", "part 0", "part 1", "part 10"]


def test_a_policy_asking_more_than_was_recorded_fails_that_detector_only(
        fake_upstream, tmp_path):
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    dataset = tmp_path / "items.jsonl"
    dataset.write_text(json.dumps(ITEMS[0]) + "\n")
    gateway = {"models": [{"name": "fake", "provider": "openai", "model": "fake-model",
                           "api_base": fake_upstream.api_base, "supports_n": False}]}
    kwargs = dict(limit=None, concurrency=1, base_url=None, model=None, max_tokens=16,
                  temperature=0.7, seed=0, data_dir=tmp_path, plots=False)
    evaluate(str(dataset), policy, "evaluate", tmp_path / "rec", command="record",
             record=True, gateway=gateway, **kwargs)
    bigger = tmp_path / "bigger.yaml"
    bigger.write_text(POLICY.replace("M: 3", "M: 6"))
    evaluate("", bigger, "evaluate", tmp_path / "out", command="replay",
             replay=tmp_path / "rec", **kwargs)
    (record,) = _records(tmp_path / "out").values()
    detectors = record["hallgate"]["detectors"]
    assert detectors["semantic"]["status"] != "ok"  # asked 6 answers, 3 were recorded
    assert detectors["halt"]["status"] == "ok" and detectors["edfl"]["status"] == "ok"


def _records(directory) -> dict[str, dict]:
    rows = [json.loads(line) for line in (directory / "results.jsonl").read_text().splitlines()]
    return {row["id"]: row for row in rows}
