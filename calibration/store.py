"""The calibration bundles bound to a gateway's models, reloaded when they change.

    store = BundleStore({"local/smollm2-135m-instruct": Binding(path, names)})
    store.get("local/smollm2-135m-instruct")   # the Bundle, or None (uncalibrated)
    store.reload()                             # a bad bundle keeps the previous one
    task = asyncio.create_task(store.watch())  # polls the bundles' files

As with policies, a bundle is swapped in one assignment: a request keeps the bundle it
started with. A bundle the config names (``models[].calibration``) that is refused at
start stops the start with :class:`BundleError`; a model whose bundle directory (by name)
is absent or refused at start is served uncalibrated (a warning or an error names it); a
refused reload keeps the bundle in force and says why.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from calibration.bundle import Bundle, BundleError, load_bundle

log = logging.getLogger("hallgate.calibration")


@dataclass(frozen=True)
class Binding:
    path: Path  # the bundle directory
    names: frozenset[str]  # the names the model is served under (identity check)
    explicit: bool = False  # named in the config (its absence is an error, not a default)


def _stat_key(path: Path) -> tuple | None:
    """The bundle directory's files' (name, mtime, size, inode); None when absent."""
    try:
        return tuple(sorted((p.name, st.st_mtime_ns, st.st_size, st.st_ino)
                            for p in path.iterdir() if p.is_file() for st in (p.stat(),)))
    except OSError:
        return None


class BundleStore:
    def __init__(self, bindings: Mapping[str, Binding],
                 on_reload: Callable[[str, bool], None] | None = None):
        self.bindings = dict(bindings)
        self.on_reload = on_reload  # (model, accepted) after each reload attempt
        self._bundles: dict[str, Bundle | None] = {}
        self._seen: dict[str, tuple | None] = {}
        self.errors: dict[str, str] = {}  # model -> why its bundle was refused last
        for model in self.bindings:
            self._load(model, initial=True)

    def get(self, model: str) -> Bundle | None:
        return self._bundles.get(model)

    def models(self) -> tuple[str, ...]:
        return tuple(self.bindings)

    def _load(self, model: str, initial: bool = False) -> bool:
        binding = self.bindings[model]
        self._seen[model] = _stat_key(binding.path)
        if self._seen[model] is None and not binding.explicit:
            self._bundles.setdefault(model, None)
            if initial:
                log.warning("model %s has no calibration bundle (none at %s): it is served "
                            "uncalibrated (see its profiles' `uncalibrated` setting)",
                            model, binding.path)
            return True
        try:
            bundle = load_bundle(binding.path, binding.names)
        except BundleError as exc:
            if initial and binding.explicit:
                raise  # a bundle the config names must load, as the policy file must
            self.errors[model] = str(exc)
            kept = self._bundles.get(model)
            self._bundles.setdefault(model, None)
            log.error("calibration bundle for model %s refused: %s; %s", model, exc,
                      f"keeping {kept.name}" if kept else "the model is served uncalibrated")
            return False
        self.errors.pop(model, None)
        old = self._bundles.get(model)
        self._bundles[model] = bundle
        if old is None or old.digest != bundle.digest:
            log.info("model %s: calibration bundle %s loaded", model, bundle.name)
        return True

    def reload(self, model: str | None = None) -> dict[str, bool]:
        """Load the bundles again (all, or ``model``'s): model -> accepted."""
        out = {}
        for name in ([model] if model else self.bindings):
            out[name] = self._load(name)
            if self.on_reload:
                self.on_reload(name, out[name])
        for name in out:
            if self._bundles.get(name) is None:
                log.warning("model %s is served uncalibrated", name)
        return out

    def changed(self) -> list[str]:
        return [m for m, b in self.bindings.items() if _stat_key(b.path) != self._seen.get(m)]

    async def watch(self, interval_s: float = 1.0) -> None:
        """Poll every bound bundle's files every ``interval_s``; reload those that changed
        (a bundle rewritten file by file may be seen half-written: it is refused, and
        accepted on the next poll once complete)."""
        while True:
            await asyncio.sleep(interval_s)
            for model in self.changed():
                await asyncio.to_thread(self.reload, model)
