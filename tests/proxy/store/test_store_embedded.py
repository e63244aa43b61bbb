"""The store and /v1/feedback on the real embedded model (SmolLM2-135M on llama.cpp): an
answer with its real token logprobs is stored, then labelled by its id."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from evaluation.recording_data import halt_records
from evaluation.store_export import export_store
from proxy.config import EMBEDDED_MODEL_NAME, Settings
from tests.proxy.store.helpers import sqlite_rows, wait_written

POLICY = """
version: 1
routes:
  - {name: default, default: true, profile: judged, store: {sample: 1.0}}
profiles:
  judged: {extends: strict-factual, action: annotate}
"""


@pytest.mark.model
def test_a_real_answer_is_stored_and_labelled(start_gateway, tmp_path):
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    db = tmp_path / "exchanges.sqlite3"
    url = start_gateway(Settings(policy_file=str(policy), store={"path": str(db)}))
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0,
                           timeout=300)
    raw = client.chat.completions.with_raw_response.create(
        model=EMBEDDED_MODEL_NAME, max_tokens=12, temperature=0,
        messages=[{"role": "user", "content": "What is 2 + 3? Answer with a number."}])
    resp = raw.parse()
    answer = resp.choices[0].message.content
    wait_written(url, 1, timeout=60)
    [row] = sqlite_rows(db)
    assert row["response_id"] == resp.id and row["model"] == EMBEDDED_MODEL_NAME
    matrix = json.loads(row["logprobs"])
    assert len(matrix["chosen"]) == len(matrix["top"]) >= 1
    assert all(1 <= len(top) <= 21 for top in matrix["top"])  # llama.cpp's varying k
    assert all(lp is None or lp <= 0.0 for lp in matrix["chosen"])
    halt = json.loads(row["detectors"])["halt"]
    assert halt["status"] == "ok" and 0.0 <= halt["risk"] <= 1.0
    assert row["answer"] is None  # no text without include_prompt
    label = "correct" if "5" in answer else "incorrect"
    labelled = httpx.post(f"{url}/v1/feedback", json={"id": resp.id, "label": label})
    assert labelled.status_code == 200, labelled.text
    [stored] = sqlite_rows(db, "feedback")
    assert (stored["response_id"], stored["label"]) == (resp.id, label)
    # the shipped SmolLM2 bundle judged it, and the refit's export reads it back
    assert row["bundle_id"] == raw.headers["x-hallgate-calibration"]
    assert row["bundle_id"].startswith("smollm2-135m-instruct@")
    summary = export_store(str(db), EMBEDDED_MODEL_NAME, tmp_path / "recording")
    assert (summary.items, summary.hallucinated) == (1, label == "incorrect")
    [record] = halt_records(tmp_path / "recording")
    assert [t["logprob"] for t in record["tokens"]] == matrix["chosen"]
