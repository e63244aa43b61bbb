"""Bundle versions side by side: a gateway bound through a symbolic link moves to the
version the link points to (hot reload), names it in the header and in the metric
``hallgate_calibration_bundle_info``, and goes back when the link points back."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import httpx
import openai

from tests.calibration.bundles import write_bundle
from tests.conftest import fake_settings

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def point(link: Path, target: Path) -> None:
    """Swap the link atomically, as an operator's `ln -sfn` + `mv -T` does."""
    fresh = link.with_name(link.name + ".new")
    fresh.symlink_to(target, target_is_directory=True)
    os.replace(fresh, link)


def info(url: str) -> dict[str, float]:
    """bundle -> value of hallgate_calibration_bundle_info{model="fake"}."""
    text = httpx.get(f"{url}/metrics").text
    return {m.group(1): float(m.group(2)) for m in re.finditer(
        r'hallgate_calibration_bundle_info\{bundle="([^"]+)",model="fake"\} (\S+)', text)}


def in_force(url: str, prefix: str, timeout: float = 20.0) -> str:
    """Wait until the metric names a bundle starting with ``prefix``; that name."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [b for b in info(url) if b.startswith(prefix)]
        if found:
            return found[0]
        time.sleep(0.05)
    raise AssertionError(f"no bundle {prefix}* in force: {info(url)}")


def header(url: str) -> str:
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
    raw = client.chat.completions.with_raw_response.create(model="fake", messages=QUESTION)
    return raw.headers["x-hallgate-calibration"]


def test_the_gateway_follows_the_version_its_binding_points_to_and_back(
        fake_upstream, start_gateway, tmp_path):
    old = write_bundle(tmp_path / "versions" / "fake-v1", thresholds={"mean_logprob": 0.9})
    new = write_bundle(tmp_path / "versions" / "fake-v2", thresholds={"mean_logprob": 0.8})
    (tmp_path / "bound").mkdir()
    point(tmp_path / "bound" / "fake", old)
    url = start_gateway(fake_settings(fake_upstream,
                                      calibration_dir=str(tmp_path / "bound")))
    first = in_force(url, "fake-v1@")
    assert header(url) == first and info(url) == {first: 1.0}
    point(tmp_path / "bound" / "fake", new)
    second = in_force(url, "fake-v2@")
    assert header(url) == second and info(url) == {second: 1.0}  # the old series is gone
    point(tmp_path / "bound" / "fake", old)  # going back: point at the old version
    assert in_force(url, "fake-v1@") == first and header(url) == first
