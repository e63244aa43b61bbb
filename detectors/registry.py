"""The registry of detectors a policy may name, in the order they are reported.

    from detectors.registry import REGISTRY
    REGISTRY.names()                 # ("halt", "edfl", "semantic", ...)
    REGISTRY.get("halt").settings    # its settings model (what a profile may set)
    REGISTRY.register(spec)          # a plug-in (tests register a toy detector this way)

A detector is one folder under ``detectors/`` with a ``spec.py`` that defines its
:class:`~detectors.protocol.DetectorSpec` (settings, needs, a lazy ``load``), plus one
line in :data:`BUILTIN`. Spec modules import only pydantic, so a policy is checked
without importing any detector's implementation.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator

from detectors.protocol import DetectorSpec

# The built-in detectors: "module:attribute" of a DetectorSpec or a tuple of them.
BUILTIN: tuple[str, ...] = (
    "detectors.halt.spec:SPEC",
    "detectors.halt.spec:CAUSAL_SPEC",
    "detectors.edfl.spec:SPEC",
    "detectors.semantic.spec:SPEC",
    "detectors.logprob_stats.spec:SPECS",
)


class Registry:
    def __init__(self, specs: tuple[DetectorSpec, ...] = ()):
        self._specs: dict[str, DetectorSpec] = {}
        self.version = 0  # bumped on every change (caches built from the registry key on it)
        for spec in specs:
            self.register(spec)

    def register(self, spec: DetectorSpec) -> DetectorSpec:
        if spec.name in self._specs and self._specs[spec.name] is not spec:
            raise ValueError(f"a detector named '{spec.name}' is already registered")
        self._specs[spec.name] = spec
        self.version += 1
        return spec

    def unregister(self, name: str) -> None:
        self._specs.pop(name, None)
        self.version += 1

    def get(self, name: str) -> DetectorSpec:
        return self._specs[name]

    def __contains__(self, name: object) -> bool:
        return name in self._specs

    def __iter__(self) -> Iterator[DetectorSpec]:
        return iter(tuple(self._specs.values()))

    def names(self) -> tuple[str, ...]:
        return tuple(self._specs)

    def feature_owners(self) -> dict[str, str]:
        """Combiner feature name -> the detector that produces it."""
        return {f: spec.name for spec in self for f in spec.combiner_features()}


def _builtin_specs() -> tuple[DetectorSpec, ...]:
    out: list[DetectorSpec] = []
    for target in BUILTIN:
        module, _, attr = target.partition(":")
        found = getattr(importlib.import_module(module), attr)
        out.extend(found if isinstance(found, tuple) else (found,))
    return tuple(out)


REGISTRY = Registry(_builtin_specs())
