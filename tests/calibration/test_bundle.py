"""Loading calibration bundles: the shipped one loads for its model; a bundle that is
missing, partial, for another model or of another format version is refused with what is
wrong; the store keeps the bundle it had when a reload is refused."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from calibration.build import main as build_main
from calibration.bundle import FORMAT_VERSION, BundleError, load_bundle, sha256_file
from calibration.store import Binding, BundleStore
from tests.calibration.bundles import SHIPPED, SMOLLM2, write_bundle

REPO = Path(__file__).resolve().parents[2]
build_app = typer.Typer()
build_app.command()(build_main)


def test_the_shipped_smollm2_bundle_loads_with_halt_weights_and_its_thresholds():
    bundle = load_bundle(SHIPPED, names={SMOLLM2})
    assert bundle.model == SMOLLM2 and bundle.name.startswith("smollm2-135m-instruct@")
    assert bundle.halt is not None and bundle.calibrates("halt")
    assert bundle.answer_threshold("halt") == pytest.approx(bundle.halt.threshold)
    assert bundle.calibrates("mean_logprob") and not bundle.calibrates("edfl")
    point = bundle.operating_point("mean_logprob", 0.8, 0.1)
    assert point is not None and point.upper_bound <= 0.8
    quality = bundle.manifest.detectors["halt"].quality
    assert quality.items == bundle.manifest.data.held_out_items
    assert quality.mean_of_sources_ci[0] < quality.mean_of_sources < quality.mean_of_sources_ci[1]


def _edit(path: Path, **changes) -> None:
    manifest = json.loads((path / "bundle.json").read_text())
    manifest.update(changes)
    (path / "bundle.json").write_text(json.dumps(manifest))


def test_a_missing_bundle_is_refused(tmp_path):
    with pytest.raises(BundleError, match="no such bundle directory"):
        load_bundle(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BundleError, match="no bundle.json"):
        load_bundle(tmp_path / "empty")


def test_a_bundle_for_another_model_is_refused(tmp_path):
    path = write_bundle(tmp_path / "b", model="gpt-4o-mini")
    with pytest.raises(BundleError, match="made for model 'gpt-4o-mini', bound to"):
        load_bundle(path, names={"fake"})


def test_an_incompatible_format_version_is_refused(tmp_path):
    path = write_bundle(tmp_path / "b", format_version=FORMAT_VERSION + 1)
    with pytest.raises(BundleError, match=f"format_version {FORMAT_VERSION + 1}"):
        load_bundle(path, names={"fake"})


@pytest.mark.parametrize("damage", ["delete", "truncate"])
def test_a_partial_bundle_is_refused(tmp_path, damage):
    path = write_bundle(tmp_path / "b")
    if damage == "delete":
        (path / "halt.pt").unlink()
        expected = "partial: halt.pt is missing"
    else:
        (path / "halt.pt").write_bytes((path / "halt.pt").read_bytes()[:100])
        expected = "partial: halt.pt differs from its SHA-256"
    with pytest.raises(BundleError, match=expected):
        load_bundle(path, names={"fake"})


def test_a_bad_value_is_refused_with_its_key(tmp_path):
    path = write_bundle(tmp_path / "b", thresholds={"halt": 1.5})
    with pytest.raises(BundleError, match=r"key 'detectors\.halt\.answer_threshold'"):
        load_bundle(path, names={"fake"})
    (path / "bundle.json").write_text("{not json")
    with pytest.raises(BundleError, match="not JSON"):
        load_bundle(path)


def test_the_store_keeps_its_bundle_when_a_reload_is_refused(tmp_path, caplog):
    path = write_bundle(tmp_path / "fake")
    seen = []
    store = BundleStore({"fake": Binding(path, frozenset({"fake"}))},
                        on_reload=lambda model, ok: seen.append((model, ok)))
    first = store.get("fake")
    assert first is not None
    _edit(path, format_version=99)
    with caplog.at_level(logging.ERROR, logger="hallgate.calibration"):
        assert store.reload() == {"fake": False}
    assert store.get("fake") is first and "format_version 99" in store.errors["fake"]
    assert "keeping " + first.name in caplog.text
    write_bundle(path, thresholds={"mean_logprob": 0.9})
    assert store.reload() == {"fake": True}
    assert store.get("fake").answer_threshold("mean_logprob") == 0.9
    assert seen == [("fake", False), ("fake", True)]


def test_a_model_without_a_bundle_is_warned_about_at_start(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="hallgate.calibration"):
        store = BundleStore({"other": Binding(tmp_path / "other", frozenset({"other"}))})
    assert store.get("other") is None
    assert "model other has no calibration bundle" in caplog.text


def test_the_shipped_gemma_bundle_has_its_own_halt_and_pins_its_data():
    """Made by ``hallgate tune --replay recordings/gemma3-270m``: HALT trained on Gemma's
    logprobs, every item it judged unseen by that HALT."""
    path = SHIPPED.parent / "gemma3-270m"
    bundle = load_bundle(path, names={"local/gemma3-270m"})
    assert bundle.halt is not None and bundle.calibrates("halt") and "halt" in bundle.plugins
    assert bundle.calibrates("mean_logprob") and bundle.combiner is not None
    data = bundle.manifest.data
    assert sha256_file(REPO / data.results) == data.sha256
    assert bundle.manifest.command.startswith("hallgate tune --replay recordings/gemma3-270m")


def test_build_writes_a_bundle_that_loads_and_is_reproducible(tmp_path):
    rows = (REPO / "recordings/smollm2-135m/results.jsonl").read_text().splitlines()[:240]
    results = tmp_path / "results.jsonl"
    results.write_text("\n".join(rows) + "\n")
    runner = CliRunner()
    digests = []
    for out in ("a", "b"):
        done = runner.invoke(build_app, ["--results", str(results), "--model", "tiny",
                                         "--out", str(tmp_path / out)])
        assert done.exit_code == 0, done.output
        bundle = load_bundle(tmp_path / out, names={"tiny"})
        digests.append(bundle.manifest.model_dump(exclude={"command"}))
    assert digests[0] == digests[1]
    assert bundle.manifest.halt is None and bundle.manifest.data.items == 240
    assert bundle.answer_threshold("mean_logprob") is not None


def test_a_bundle_the_config_names_must_load_at_start(tmp_path):
    path = write_bundle(tmp_path / "b", model="someone-else")
    with pytest.raises(BundleError, match="made for model 'someone-else'"):
        BundleStore({"fake": Binding(path, frozenset({"fake"}), explicit=True)})
    store = BundleStore({"fake": Binding(path, frozenset({"fake"}))})  # by name: served
    assert store.get("fake") is None and "someone-else" in store.errors["fake"]
