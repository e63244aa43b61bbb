"""`hallgate tune --replay`: a bundle from a recording with a HALT trained for the model,
a report and a policy snippet; a malformed results line is reported with file and line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from calibration.bundle import load_bundle, sha256_file
from hallgate_cli import app
from tests.calibration.bundles import SHIPPED, SMOLLM2

REPO = Path(__file__).resolve().parents[2]
RECORDING = REPO / "recordings" / "smollm2-135m"


def test_tune_replay_builds_a_bundle_with_its_own_halt(tmp_path):
    out = tmp_path / "local" / "smollm2-135m-instruct"
    done = CliRunner().invoke(app, ["tune", "--replay", str(RECORDING), "--model", SMOLLM2,
                                    "--out", str(out), "--halt-epochs", "1"])
    assert done.exit_code == 0, done.output
    assert "0 upstream calls" in done.output
    assert "stages: reading" in done.output and "HALT training" in done.output
    bundle = load_bundle(out, names={SMOLLM2})
    assert bundle.halt is not None
    # a HALT trained here, not the shipped checkpoint copied
    assert bundle.manifest.halt.weights.sha256 != sha256_file(SHIPPED / "halt.pt")
    assert json.loads((out / "halt.json").read_text())["arch"] == "small"
    halt = bundle.manifest.detectors["halt"]
    assert halt.quality.items == bundle.manifest.data.held_out_items > 100
    report = (out / "REPORT.md").read_text()
    assert bundle.name in report
    assert "do not pay for themselves" in report or "ranks better within source" in report
    for figure in ("halt_roc.png", "risk_coverage.png", "reliability.png",
                   "source_auroc.png"):
        assert (out / figure).stat().st_size > 1000
        assert f"]({figure})" in report
    # the recording's EDFL counts are its cost; topk_entropy is computed from the answers
    detectors = bundle.manifest.detectors
    assert detectors["edfl"].cost.upstream_calls > 1
    assert detectors["topk_entropy"].quality.items == halt.quality.items
    assert bundle.manifest.combiner_set.quality.items == halt.quality.items
    # the cheapest certified set per target risk: in the manifest, the snippet, the report
    chosen = [c for c in bundle.manifest.selections if c.detectors]
    assert chosen and all(c.upper_bound <= c.alpha for c in chosen)
    snippet = (out / "policy-snippet.yaml").read_text()
    assert f"risk-{round(chosen[0].alpha * 100)}:" in snippet
    assert " + ".join(chosen[0].detectors) in snippet
    assert "The cheapest detector set per target risk" in report


def test_a_malformed_results_line_is_reported_with_file_and_line(tmp_path):
    recording = tmp_path / "rec"
    recording.mkdir()
    lines = (RECORDING / "results.jsonl").read_text().splitlines()[:3]
    lines[1] = lines[1][:40]
    (recording / "results.jsonl").write_text("\n".join(lines) + "\n")
    shutil.copyfile(RECORDING / "items.jsonl", recording / "items.jsonl")
    done = CliRunner().invoke(app, ["tune", "--replay", str(recording), "--model", SMOLLM2,
                                    "--out", str(tmp_path / "b")])
    assert done.exit_code == 2
    assert f"{recording / 'results.jsonl'}:2: not JSON" in done.output
    assert not (tmp_path / "b").exists()


def test_a_recording_too_small_to_train_halt_gives_a_bundle_without_it(tmp_path):
    recording = tmp_path / "rec"
    shutil.copytree(RECORDING, recording)
    lines = (recording / "results.jsonl").read_text().splitlines()[:20]
    (recording / "results.jsonl").write_text("\n".join(lines) + "\n")
    done = CliRunner().invoke(app, ["tune", "--replay", str(recording), "--model", SMOLLM2,
                                    "--out", str(tmp_path / "b")])
    assert done.exit_code == 0, done.output
    assert "HALT is not trained" in done.output
    assert "part has" in done.output and "tune needs at least 5 of each" in done.output
    bundle = load_bundle(tmp_path / "b", names={SMOLLM2})
    assert bundle.manifest.halt is None and bundle.manifest.data.items == 20


@pytest.mark.parametrize("alphas", ["1.5", "0.9,x", ""])
def test_target_risks_outside_0_1_are_refused_before_any_work(tmp_path, alphas):
    done = CliRunner().invoke(app, ["tune", "--replay", str(RECORDING), "--model", SMOLLM2,
                                    "--out", str(tmp_path / "b"), "--alphas", alphas])
    assert done.exit_code == 2 and "--alphas" in done.output
    assert not (tmp_path / "b").exists()
