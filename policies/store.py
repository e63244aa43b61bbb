"""The current policy of a running gateway, reloaded when its file changes.

    store = PolicyStore("policy.yaml")        # raises PolicyError: don't start on a bad file
    policy = store.policy                     # read ONCE per request, then use that object
    result = store.reload()                   # SIGHUP; a bad file keeps the old policy
    task = asyncio.create_task(store.watch())  # polls the file, reloads on change

A Policy is immutable and ``store.policy`` is swapped in one assignment, so a request
that took the old policy finishes under it while new requests get the new one.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from policies.loader import load_policy
from policies.schema import Policy
from policies.yaml_source import PolicyError

log = logging.getLogger("hallgate.policies")


@dataclass(frozen=True)
class ReloadResult:
    ok: bool  # the file loaded (the policy may still be the same as before)
    changed: bool  # the file's content differed from the loaded policy's
    error: str | None = None  # why it was rejected; the previous policy stays in force

    def __str__(self) -> str:
        if not self.ok:
            return f"policy reload failed, keeping the previous policy:\n{self.error}"
        return "policy reloaded" if self.changed else "policy unchanged"


class PolicyStore:
    def __init__(self, path: str | Path, *, available_detectors: Iterable[str] | None = None):
        self.path = Path(path)
        self.available_detectors = (None if available_detectors is None
                                    else tuple(available_detectors))
        self._seen = self._stat_key()  # the file's state when last (re)loaded
        self._digest = self._read_digest()
        self._policy = load_policy(self.path, available_detectors=self.available_detectors)
        self.generation = 1  # bumped on every successful change
        self.loaded_at = time.time()
        self.last_error: str | None = None  # the latest rejected reload, until a good one

    @property
    def policy(self) -> Policy:
        return self._policy

    def _read_digest(self) -> str | None:
        try:
            return hashlib.sha256(self.path.read_bytes()).hexdigest()
        except OSError:
            return None

    def reload(self) -> ReloadResult:
        """Load the file again; on any error keep the current policy and say why."""
        self._seen = self._stat_key()
        digest = self._read_digest()
        try:
            policy = load_policy(self.path, available_detectors=self.available_detectors)
        except PolicyError as exc:
            self.last_error = str(exc)
            result = ReloadResult(ok=False, changed=False, error=self.last_error)
            log.error("%s", result)
            return result
        changed = digest != self._digest
        self._policy, self._digest, self.last_error = policy, digest, None
        if changed:
            self.generation += 1
            self.loaded_at = time.time()
        log.info("%s from %s (generation %d)", "policy reloaded" if changed else
                 "policy unchanged", self.path, self.generation)
        return ReloadResult(ok=True, changed=changed)

    def _stat_key(self) -> tuple[int, int, int] | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size, st.st_ino

    async def watch(self, interval_s: float = 1.0, stop: asyncio.Event | None = None) -> None:
        """Poll the file's mtime/size/inode every ``interval_s`` and reload on a change.

        Runs until cancelled or until ``stop`` is set. A file that disappears for a
        moment (editors that write a new file and rename it) is simply seen on the next
        poll; a bad file is reported once per change and the old policy stays.
        """
        while stop is None or not stop.is_set():
            if stop is None:
                await asyncio.sleep(interval_s)
            else:
                try:
                    await asyncio.wait_for(stop.wait(), timeout=interval_s)
                    return
                except TimeoutError:
                    pass
            key = self._stat_key()
            if key is not None and key != self._seen:
                await asyncio.to_thread(self.reload)
