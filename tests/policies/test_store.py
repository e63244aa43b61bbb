"""PolicyStore: a bad reload keeps the old policy; a good change is picked up."""

import asyncio
import logging
import os

import pytest

from policies import PolicyError, PolicyStore

GOOD = """
routes:
  - {name: strict, match: {header: strict}, profile: strict-factual}
  - {name: default, default: true, profile: shadow}
"""


@pytest.fixture
def policy_file(tmp_path):
    path = tmp_path / "policy.yaml"
    path.write_text(GOOD)
    return path


def _rewrite(path, text):
    path.write_text(text)
    st = path.stat()  # make sure the mtime moves even on coarse clocks
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


def test_bad_initial_file_raises(tmp_path):
    path = tmp_path / "policy.yaml"
    path.write_text("routes: []\n")
    with pytest.raises(PolicyError, match="default route is required"):
        PolicyStore(path)


def test_bad_reload_keeps_the_old_policy_and_says_why(policy_file, caplog):
    store = PolicyStore(policy_file)
    before = store.policy
    _rewrite(policy_file, GOOD.replace("profile: shadow", "profile: shaddow"))
    with caplog.at_level(logging.ERROR, logger="hallgate.policies"):
        result = store.reload()
    assert not result.ok and "unknown profile 'shaddow'" in result.error
    assert f"{policy_file}:4" in result.error
    assert store.policy is before and store.generation == 1
    assert store.last_error == result.error
    assert "keeping the previous policy" in caplog.text


def test_good_reload_swaps_the_policy(policy_file):
    store = PolicyStore(policy_file)
    old = store.policy
    assert store.reload().changed is False
    _rewrite(policy_file, GOOD.replace("profile: shadow", "profile: code-creative"))
    result = store.reload()
    assert result.ok and result.changed and store.generation == 2
    assert store.policy.match()[1].name == "code-creative"
    assert old.match()[1].name == "shadow"  # a request holding the old policy keeps it


async def test_watch_reloads_on_change_and_survives_bad_files(policy_file):
    store = PolicyStore(policy_file)
    stop = asyncio.Event()
    task = asyncio.create_task(store.watch(interval_s=0.01, stop=stop))

    async def until(condition):
        for _ in range(300):
            if condition():
                return
            await asyncio.sleep(0.01)
        raise AssertionError("watch() did not react")

    _rewrite(policy_file, "routes: [oops")
    await until(lambda: store.last_error is not None)
    assert store.policy.match()[1].name == "shadow"
    _rewrite(policy_file, GOOD.replace("profile: shadow", "profile: strict-factual"))
    await until(lambda: store.generation == 2)
    assert store.policy.match()[1].name == "strict-factual" and store.last_error is None
    stop.set()
    await asyncio.wait_for(task, 1)
