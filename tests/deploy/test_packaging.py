"""The image installs hallgate non-editably (deploy/Dockerfile: HALLGATE_EDITABLE=0), so
only what setuptools packages reaches the container. An editable dev install hides both
mistakes checked here: a package folder without __init__.py (setuptools' find skips it)
and a data file (checkpoint, profile YAML) that no package-data pattern names.
"""

from __future__ import annotations

import fnmatch

import pytest

from tests.deploy.tools import REPO

tomllib = pytest.importorskip("tomllib")  # Python 3.11+, as in the image

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
PACKAGES = [p.rstrip("*") for p in PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]]
PACKAGE_DATA: dict[str, list[str]] = PYPROJECT["tool"]["setuptools"].get("package-data", {})
NOT_RUNTIME = {".md", ".png", ".jpg", ".svg"}  # docs and plots beside the code; no code reads them


def source_files(package: str):
    """Files of a top-level package, without caches and editors' hidden temp files."""
    for path in sorted((REPO / package).rglob("*")):
        relative = path.relative_to(REPO)
        if path.is_file() and not any(part.startswith((".", "__pycache__"))
                                      for part in relative.parts):
            yield relative


@pytest.mark.parametrize("package", PACKAGES)
def test_every_package_folder_has_an_init(package: str) -> None:
    folders = {f.parent for f in source_files(package) if f.suffix == ".py"}
    missing = sorted(str(d) for d in folders if not (REPO / d / "__init__.py").is_file())
    assert not missing, f"not packaged without __init__.py: {missing}"


@pytest.mark.parametrize("package", PACKAGES)
def test_every_data_file_is_package_data(package: str) -> None:
    patterns = PACKAGE_DATA.get(package, [])
    unpackaged = []
    for file in source_files(package):
        if file.suffix == ".py" or file.suffix in NOT_RUNTIME:
            continue
        inside = file.relative_to(package).as_posix()
        if not any(fnmatch.fnmatch(inside, pattern) for pattern in patterns):
            unpackaged.append(file.as_posix())
    assert not unpackaged, (
        f"missing from the image: {unpackaged}; add a pattern to "
        f"[tool.setuptools.package-data] {package} in pyproject.toml")
