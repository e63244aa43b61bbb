"""Session fixtures for the deploy tests (helpers live in tests/deploy/tools.py)."""

from __future__ import annotations

import pytest

from tests.deploy.tools import K8S, KUSTOMIZATIONS, find_tool, render


@pytest.fixture(scope="session")
def kubectl() -> str:
    return find_tool("kubectl")


@pytest.fixture(scope="session")
def hadolint() -> str:
    return find_tool("hadolint")


@pytest.fixture(scope="session")
def rendered(kubectl: str) -> dict[str, list[dict]]:
    """Every kustomization under deploy/k8s, rendered once per test session."""
    return {name: render(kubectl, K8S / name) for name in KUSTOMIZATIONS}
