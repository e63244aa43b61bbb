"""Helpers for the deploy tests: the external tools, rendering a Kustomize directory.

kubectl and hadolint are installed into the venv by scripts/install_test_tools.sh (which
`make test` runs). A missing tool fails the test under CI=true and skips it elsewhere.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s"
KUSTOMIZATIONS = ("base", "overlays/local-model", "overlays/openai")


def find_tool(name: str) -> str:
    """The venv's copy of ``name`` first (pinned by install_test_tools.sh), then PATH."""
    venv_copy = Path(sys.executable).parent / name
    found = str(venv_copy) if venv_copy.is_file() else shutil.which(name)
    if found:
        return found
    reason = f"{name} not found: run scripts/install_test_tools.sh (make test does)"
    if os.environ.get("CI") == "true":
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


def render(kubectl: str, kustomization: Path) -> list[dict]:
    """``kubectl kustomize DIR`` parsed into a list of manifests."""
    out = subprocess.run([kubectl, "kustomize", str(kustomization)], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, f"kubectl kustomize {kustomization} failed:\n{out.stderr}"
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def one(manifests: list[dict], kind: str) -> dict:
    """The single manifest of ``kind``."""
    found = [m for m in manifests if m["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]
