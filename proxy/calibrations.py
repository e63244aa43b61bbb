"""The calibration bundles of the models this gateway serves (calibration/store.py),
bound from the settings: ``models[].calibration``, else ``<calibration_dir>/<model name>``.

    store = bundle_store(settings, registry.names(), metrics)
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import calibration
from calibration.store import Binding, BundleStore
from proxy.config import Settings
from proxy.metrics import Metrics

SHIPPED_BUNDLES = Path(calibration.__file__).resolve().parent / "bundles"


def bindings(settings: Settings, models: Iterable[str]) -> dict[str, Binding]:
    """model name -> where its bundle is and the names it may declare."""
    configured = {m.name: m for m in settings.models}
    root = Path(settings.calibration_dir) if settings.calibration_dir else SHIPPED_BUNDLES
    out = {}
    for name in models:
        entry = configured.get(name)
        names = frozenset({name, entry.model} if entry else {name})
        if entry is not None and entry.calibration:
            out[name] = Binding(Path(entry.calibration), names, explicit=True)
        elif ".." not in Path(name).parts:
            out[name] = Binding(root / name, names)
    return out


def bundle_store(settings: Settings, models: Iterable[str], metrics: Metrics) -> BundleStore:
    def counted(model: str, accepted: bool) -> None:
        metrics.calibration_reloads.labels(model, "accepted" if accepted else "refused").inc()
    return BundleStore(bindings(settings, models), on_reload=counted)
