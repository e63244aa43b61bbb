"""Drift: how far a model's live detector scores have moved from the bundle's calibration
distribution, as the Population Stability Index over the bundle's histogram bins.

    monitor = DriftMonitor(window=500)
    ready = monitor.observe(bundle, "halt", 0.42)  # True once: the window has MIN_SCORES
    value = monitor.psi(bundle, "halt")            # PSI of the last `window` scores, or None

A request only bins its score (constant work); the PSI is computed when it is read (the
gateway reads it when its metrics are scraped).
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Sequence

import numpy as np

from calibration.bundle import Bundle

MIN_SCORES = 50  # fewer live scores than this: no PSI yet (too noisy to alert on)
EPSILON = 1e-4  # floor of a bin's share, so an empty bin gives a finite PSI


def psi(expected: Sequence[float], actual: Sequence[float], epsilon: float = EPSILON) -> float:
    """Population Stability Index of two histograms over the same bins:
    PSI = Σ_i (a_i − e_i) · ln(a_i / e_i), with e_i, a_i each histogram's share of bin i
    (floored at ``epsilon``). 0 = the same distribution; > 0.2 is the usual alarm."""
    e = np.maximum(np.asarray(expected, dtype=np.float64), 0.0)
    a = np.maximum(np.asarray(actual, dtype=np.float64), 0.0)
    e = np.maximum(e / e.sum(), epsilon)  # (B,)
    a = np.maximum(a / a.sum(), epsilon)  # (B,)
    return float(np.sum((a - e) * np.log(a / e)))


class DriftMonitor:
    """The last ``window`` scores of each (bundle, detector), binned as the bundle's
    calibration histogram."""

    def __init__(self, window: int = 500):
        self.window = window
        self._scores: dict[tuple[str, str], tuple[deque, list[int]]] = {}

    def observe(self, bundle: Bundle, detector: str, score: float) -> bool:
        """Bin ``score`` into the window of (bundle, detector); True exactly once, when that
        window first holds MIN_SCORES scores (from then on :meth:`psi` has a value)."""
        entry = bundle.manifest.detectors.get(detector)
        hist = entry.histogram if entry is not None else None
        if hist is None:
            return False
        key = (bundle.name, detector)
        found = self._scores.get(key)
        if found is None:
            found = self._scores[key] = (deque(), [0] * len(hist.counts))
        window, counts = found
        edges = hist.edges
        # bin i holds edges[i] <= s < edges[i+1]; the last bin is closed on the right
        index = min(max(bisect.bisect_right(edges, score) - 1, 0), len(counts) - 1)
        window.append(index)
        counts[index] += 1
        if len(window) > self.window:
            counts[window.popleft()] -= 1
        return len(window) == MIN_SCORES

    def psi(self, bundle: Bundle, detector: str) -> float | None:
        """:func:`psi` of the last ``window`` scores of (bundle, detector) against the
        bundle's histogram; None with fewer than MIN_SCORES scores."""
        found = self._scores.get((bundle.name, detector))
        if found is None or len(found[0]) < MIN_SCORES:
            return None
        return psi(bundle.manifest.detectors[detector].histogram.counts, found[1])
