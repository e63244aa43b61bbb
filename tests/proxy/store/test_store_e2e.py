"""The store of judged exchanges, end to end: the openai SDK against a real gateway on the
fake upstream, then the SQLite file read back with the standard library."""

from __future__ import annotations

import json

import pytest

from tests.calibration.bundles import write_bundle
from tests.proxy.store.helpers import (
    client,
    metric,
    sqlite_dump,
    sqlite_rows,
    store_settings,
    wait_written,
)

MARKER = "Zorblaxian"
PROMPT = [{"role": "user", "content": f"When did {MARKER} Quimby first visit Paris?"}]


@pytest.mark.parametrize("stream", [False, True], ids=["non_streaming", "streaming"])
def test_a_sampled_exchange_keeps_scores_decision_and_logprob_matrix(
        fake_upstream, start_gateway, tmp_path, stream):
    fake_upstream.script.top_k = 5
    url = start_gateway(store_settings(fake_upstream, tmp_path))
    if stream:
        chunks = list(client(url).chat.completions.create(model="fake", messages=PROMPT,
                                                         stream=True))
        returned_id = chunks[0].id
        assert {c.id for c in chunks} == {returned_id}
    else:
        returned_id = client(url).chat.completions.create(model="fake", messages=PROMPT).id
    wait_written(url, 1)
    [row] = sqlite_rows(tmp_path / "exchanges.sqlite3")
    assert row["response_id"] == returned_id and returned_id.startswith("chatcmpl-")
    assert (row["model"], row["route"], row["profile"]) == ("fake", "kept", "judged")
    assert row["bundle_id"] is None and row["key_name"] is None and row["created_at"]
    detectors = json.loads(row["detectors"])
    assert detectors["halt"]["status"] == "ok" and 0.0 <= detectors["halt"]["risk"] <= 1.0
    assert detectors["halt"]["verdict"] in ("answer", "abstain")
    assert row["decision"] in ("answer", "abstain") and row["action"] == "annotate"
    matrix = json.loads(row["logprobs"])
    words = fake_upstream.script.text.split()
    assert len(matrix["chosen"]) == len(matrix["top"]) == len(words)
    assert matrix["chosen"][0] == pytest.approx(-0.05)
    assert matrix["top"][0] == pytest.approx([-0.05 - j for j in range(5)])
    assert len(row["prompt_sha256"]) == 64 and len(row["answer_sha256"]) == 64
    assert row["prompt"] is None and row["answer"] is None and row["tokens"] is None


def test_each_response_gets_its_own_id_though_the_upstream_repeats_one(
        fake_upstream, start_gateway, tmp_path):
    url = start_gateway(store_settings(fake_upstream, tmp_path))
    ids = [client(url).chat.completions.create(model="fake", messages=PROMPT).id
           for _ in range(3)]
    assert len(set(ids)) == 3  # the fake upstream answers "chatcmpl-fake" every time
    wait_written(url, 3)
    assert [r["response_id"] for r in sqlite_rows(tmp_path / "exchanges.sqlite3")] == ids


def test_a_route_without_a_sample_share_stores_nothing(fake_upstream, start_gateway,
                                                       tmp_path):
    url = start_gateway(store_settings(fake_upstream, tmp_path))
    client(url, route=None).chat.completions.create(model="fake", messages=PROMPT)
    client(url).chat.completions.create(model="fake", messages=PROMPT)
    wait_written(url, 1)
    rows = sqlite_rows(tmp_path / "exchanges.sqlite3")
    assert [r["route"] for r in rows] == ["kept"]


def test_a_share_of_a_half_keeps_about_half(fake_upstream, start_gateway, tmp_path):
    policy = """
version: 1
routes:
  - {name: half, default: true, profile: judged, store: {sample: 0.5}}
profiles:
  judged: {extends: strict-factual, action: annotate}
"""
    url = start_gateway(store_settings(fake_upstream, tmp_path, policy=policy))
    for _ in range(60):
        client(url, route=None).chat.completions.create(model="fake", messages=PROMPT)
    sampled = metric(url, "hallgate_store_sampled_total")  # drawn before each answer left
    wait_written(url, sampled)
    # Binomial(60, 0.5): 10..50 holds with probability 1 - 2e-7
    assert 10 <= len(sqlite_rows(tmp_path / "exchanges.sqlite3")) == sampled <= 50


def run_with_marker(fake_upstream, start_gateway, tmp_path, include_prompt: bool) -> str:
    fake_upstream.script.text = f"{MARKER} Quimby arrived in Paris in 1985."
    db = tmp_path / f"store-{include_prompt}.sqlite3"
    url = start_gateway(store_settings(fake_upstream, tmp_path, path=str(db),
                                       include_prompt=include_prompt))
    for route in ("kept", "semantic"):
        answer = client(url, route=route).chat.completions.create(model="fake",
                                                                   messages=PROMPT)
        assert MARKER in answer.choices[0].message.content
    wait_written(url, 2)
    return sqlite_dump(db)


def test_no_prompt_or_answer_text_reaches_the_store_without_include_prompt(
        fake_upstream, start_gateway, tmp_path):
    dump = run_with_marker(fake_upstream, start_gateway, tmp_path, include_prompt=False)
    assert MARKER.lower() not in dump.lower() and "quimby" not in dump.lower()
    rows = sqlite_rows(tmp_path / "store-False.sqlite3")
    samples = json.loads(rows[1]["samples"])
    assert samples["semantic"]["answers"] == 3
    assert sum(c["size"] for c in samples["semantic"]["clusters"]) == 3
    semantic = json.loads(rows[1]["detectors"])["semantic"]
    assert "answers" in semantic["redacted"] and isinstance(semantic["p_star"], float)


def test_the_text_is_there_with_include_prompt(fake_upstream, start_gateway, tmp_path):
    """The same exchanges with include_prompt: true: proves the test above can fail."""
    dump = run_with_marker(fake_upstream, start_gateway, tmp_path, include_prompt=True)
    assert MARKER in dump
    row = sqlite_rows(tmp_path / "store-True.sqlite3")[0]
    assert json.loads(row["prompt"]) == PROMPT and MARKER in row["answer"]
    assert json.loads(row["tokens"])[0][0] == MARKER


def test_the_store_keeps_every_alternative_the_upstream_sent_whatever_the_client_asked(
        fake_upstream, start_gateway, tmp_path):
    url = start_gateway(store_settings(fake_upstream, tmp_path))
    resp = client(url).chat.completions.create(model="fake", messages=PROMPT, logprobs=True,
                                               top_logprobs=2)
    assert len(resp.choices[0].logprobs.content[0].top_logprobs) == 2
    wait_written(url, 1)
    [row] = sqlite_rows(tmp_path / "exchanges.sqlite3")
    assert {len(top) for top in json.loads(row["logprobs"])["top"]} == {20}


def test_the_stored_exchange_names_the_bundle_that_judged_it(fake_upstream, start_gateway,
                                                              tmp_path):
    write_bundle(tmp_path / "bundles" / "fake")
    url = start_gateway(store_settings(fake_upstream, tmp_path, extra={
        "calibration_dir": str(tmp_path / "bundles")}))
    raw = client(url).chat.completions.with_raw_response.create(model="fake",
                                                                messages=PROMPT)
    name = raw.headers["x-hallgate-calibration"]
    assert name.startswith("fake@")
    wait_written(url, 1)
    [row] = sqlite_rows(tmp_path / "exchanges.sqlite3")
    assert row["response_id"] == raw.parse().id and row["bundle_id"] == name
