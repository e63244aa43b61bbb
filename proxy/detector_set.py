"""The detectors this gateway offers: every registered detector's plug-in, loaded once.

    detectors = DetectorSet.load()                  # at start: HALT's weights, gate caches
    detectors.available()                           # ("halt", "edfl", ...): what loaded
    detector = detectors.bind("edfl", profile)      # bound to the profile's settings

A plug-in that cannot load here (no checkpoint, a missing optional package) leaves its
detector unavailable: a policy that enables it is rejected at load.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from detectors.protocol import Detector, DetectorPlugin, DetectorSpec
from detectors.registry import REGISTRY, Registry
from policies import Profile

log = logging.getLogger("hallgate.detectors")

BOUND_CACHE_SIZE = 256  # (detector, settings, profile context) bindings kept


class DetectorSet:
    def __init__(self, plugins: Mapping[str, DetectorPlugin], registry: Registry = REGISTRY):
        self.registry = registry
        self.plugins = dict(plugins)
        self._bound: dict[tuple, Detector] = {}

    @classmethod
    def load(cls, preloaded: Mapping[str, DetectorPlugin] | None = None,
             registry: Registry = REGISTRY) -> DetectorSet:
        """Every registered detector's plug-in; ``preloaded`` ones are used as given (tests
        share one loaded model between apps)."""
        plugins: dict[str, DetectorPlugin] = {}
        for spec in registry:
            if preloaded and spec.name in preloaded:
                plugins[spec.name] = preloaded[spec.name]
                continue
            try:
                plugins[spec.name] = spec.load()
            except (ImportError, FileNotFoundError) as exc:
                log.warning("detector %s unavailable (%s); profiles that enable it will be "
                            "rejected", spec.name, exc)
        return cls(plugins, registry)

    def available(self) -> tuple[str, ...]:
        return tuple(spec.name for spec in self.registry if spec.name in self.plugins)

    def spec(self, name: str) -> DetectorSpec:
        return self.registry.get(name)

    def bind(self, name: str, profile: Profile) -> Detector:
        """The detector ``name`` under ``profile``'s settings (bindings are cached: the
        plug-in keeps per-config state such as decision caches)."""
        settings, context = profile.detectors[name], profile.context()
        key = (name, settings, context)
        found = self._bound.get(key)
        if found is None:
            found = self.plugins[name].bind(settings, context)
            if len(self._bound) < BOUND_CACHE_SIZE:
                self._bound[key] = found
        return found
