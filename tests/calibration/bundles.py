"""Test bundles: the shipped SmolLM2 bundle copied and edited for another model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from proxy.calibrations import SHIPPED_BUNDLES

SMOLLM2 = "local/smollm2-135m-instruct"
SHIPPED = SHIPPED_BUNDLES / SMOLLM2


def write_bundle(directory: Path, model: str = "fake", thresholds: dict | None = None,
                 halt: bool = True, **top) -> Path:
    """A copy of the shipped bundle in ``directory`` declared for ``model``, with
    ``thresholds`` (detector -> answer threshold) replacing the shipped ones, without
    HALT's weights when ``halt`` is False, and top-level keys replaced by ``top``."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in ("halt.pt", "halt.json", "combiner.json"):
        shutil.copyfile(SHIPPED / name, directory / name)
    manifest = json.loads((SHIPPED / "bundle.json").read_text())
    manifest["model"]["name"] = model
    for name, value in (thresholds or {}).items():
        manifest["detectors"].setdefault(name, {})["answer_threshold"] = value
    if not halt:
        manifest["halt"] = None
        manifest["detectors"]["halt"]["answer_threshold"] = None
    manifest.update(top)
    (directory / "bundle.json").write_text(json.dumps(manifest, indent=1))
    return directory
