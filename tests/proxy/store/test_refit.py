"""The refit from feedback: recorded answers served by a gateway with the store on (fake
upstream replaying SmolLM2's answers with their logprobs, openai SDK), labels posted to
/v1/feedback over HTTP, then the store exported as a recording and ``hallgate tune
--from-store`` writing a new bundle version with a before/after report."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from bench.feedback_loop import MODEL, corpus, serve_and_label
from calibration.bundle import load_bundle, sha256_file
from detectors.halt.adapter import logprob_matrix
from evaluation.recording_data import halt_records
from evaluation.store_export import export_store
from hallgate_cli import app
from tests.calibration.bundles import SHIPPED

REPO = Path(__file__).resolve().parents[3]
RECORDING = REPO / "recordings" / "smollm2-135m"


@pytest.fixture(scope="module")
def answers() -> list[dict]:
    """Every correct answer of the recording and as many hallucinated ones (both parts of
    the refit need both classes)."""
    items = corpus(RECORDING, None)
    right = [i for i in items if not i["hallucinated"]]
    wrong = [i for i in items if i["hallucinated"]][:len(right)]
    return right + wrong


def labels_with_gaps(unsure: set[str], unlabelled: set[str]):
    """The recording's label, except for the ``unsure`` and ``unlabelled`` items."""
    def label_of(item: dict) -> str | None:
        if item["id"] in unsure:
            return "unsure"
        if item["id"] in unlabelled:
            return None
        return "incorrect" if item["hallucinated"] else "correct"
    return label_of


def test_the_store_exports_labelled_exchanges_as_a_recording(answers, tmp_path, store_url):
    items = answers[:6] + answers[-6:]
    label_of = labels_with_gaps({i["id"] for i in items[:3]}, {i["id"] for i in items[3:5]})
    served = serve_and_label(items, tmp_path, SHIPPED, concurrency=4, label_of=label_of,
                             store={"url": store_url})
    assert served["answer_mismatch"] == 0 and served["labelled"] == 10
    out = tmp_path / "rec"
    summary = export_store(store_url, MODEL, out)
    assert (summary.items, summary.unsure, summary.unlabelled) == (7, 3, 2)
    assert summary.line().startswith("store: 7 labelled exchanges")
    by_item = {served["ids"][rid]: rid for rid in summary.ids}
    assert set(by_item) == {i["id"] for i in items[5:]}
    assert export_store(store_url, "another-model", tmp_path / "none").items == 0
    assert export_store(store_url, MODEL, tmp_path / "later",
                        since="2999-01-01T00:00:00").items == 0
    # HALT reads from the export the matrix the upstream sent (top 20 as asked)
    exported = {r["id"]: r for r in halt_records(out)}
    for item in items[5:]:
        tokens = exported[by_item[item["id"]]]["tokens"]
        sent = [{**t, "top_logprobs": t["top_logprobs"][:20]} for t in item["tokens"]]
        np.testing.assert_allclose(logprob_matrix(tokens).values,
                                   logprob_matrix(sent).values, atol=1e-6)
        assert exported[by_item[item["id"]]]["hallucinated"] == item["hallucinated"]
    results = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert {r["bundle_id"] for r in results} == set(served["bundles"])
    assert {r["source"] for r in results} <= {i["source"] for i in items}
    mixed = export_store(store_url, MODEL, tmp_path / "mixed", mix=RECORDING)
    recorded = len((RECORDING / "results.jsonl").read_text().splitlines())
    assert (mixed.items, mixed.mixed) == (7, recorded)
    found = {r["id"] for r in halt_records(tmp_path / "mixed")}
    assert set(summary.ids) <= found and len(found) > recorded - 20
    with gzip.open(out / "exchanges.jsonl.gz", "rt") as fh:
        assert not any(item["answer"] in line for line in fh for item in items
                       if len(item["answer"]) > 3)  # no text without include_prompt


def test_tune_from_store_writes_a_new_version_and_compares_it_with_the_old(answers,
                                                                          tmp_path):
    served = serve_and_label(answers, tmp_path, SHIPPED, concurrency=4)
    assert served["labelled"] == len(answers)
    before = sha256_file(SHIPPED / "bundle.json")
    out = tmp_path / "bundles" / "smollm2-135m-instruct-v2"
    args = ["tune", "--from-store", f"sqlite:///{tmp_path / 'exchanges.sqlite3'}",
            "--model", MODEL, "--out", str(out), "--halt-epochs", "1"]
    done = CliRunner().invoke(app, args)
    assert done.exit_code == 0, done.output
    assert f"store: {len(answers)} labelled exchanges" in done.output
    new = load_bundle(out, names={MODEL})
    assert new.halt is not None and new.manifest.data.items > 50
    report = (out / "BEFORE_AFTER.md").read_text()
    old_name = load_bundle(SHIPPED).name
    assert f"{old_name} -> {new.name}" in report
    assert "| old halt |" in report and "| new halt |" in report
    assert "Paired difference, new − old" in report
    assert "hallucinated among answered" in report
    assert sha256_file(SHIPPED / "bundle.json") == before  # the old version is untouched
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 2 and "never overwrites" in again.output
