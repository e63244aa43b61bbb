"""The calibration bundles of the models this gateway serves (calibration/store.py),
bound from the settings: ``models[].calibration``, else ``<calibration_dir>/<model name>``.

    store = bundle_store(settings, registry.names(), metrics)
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import calibration
from calibration.binding import NONE
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
    shown: dict[str, str] = {}  # model -> the bundle name its info series carries

    def publish(model: str) -> None:
        """``hallgate_calibration_bundle_info{model, bundle} 1`` for the bundle in force
        (the series of the one it replaced is removed)."""
        bundle = store.get(model)
        name = bundle.name if bundle is not None else NONE
        if shown.get(model) != name:
            if model in shown:
                metrics.calibration_bundle.remove(model, shown[model])
            metrics.calibration_bundle.labels(model, name).set(1)
            shown[model] = name

    def counted(model: str, accepted: bool) -> None:
        metrics.calibration_reloads.labels(model, "accepted" if accepted else "refused").inc()
        publish(model)

    store = BundleStore(bindings(settings, models), on_reload=counted)
    for model in store.models():
        publish(model)
    return store
