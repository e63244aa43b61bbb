"""The PNGs beside a tuned bundle's REPORT.md (matplotlib, Agg backend, small figures).

    names = draw_figures(bundle, data_file, out)   # the three PNGs below, in ``out``

    view = held_out_view(bundle, data_file)     # held-out risks of every detector set
    risk_coverage_png(view, alphas, out / "risk_coverage.png")
    reliability_png(view, out / "reliability.png")
    source_auroc_png(source_intervals(view), out / "source_auroc.png")

All three read the held-out half of the bundle's data (the half its quality is measured
on), never the calibration half its thresholds, combiner and operating points were fitted
on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from calibration.build import COMBINED, risk_columns, split_records
from calibration.bundle import Bundle
from detectors.metrics import auroc, bootstrap_interval
from evaluation.tune_report import FREE_BASELINE

PROBABILITIES = ("halt", COMBINED)  # the sets whose risk is meant as P(hallucinated)
RESAMPLES = 1000  # bootstrap resamples of each per-source AUROC
DPI = 90


@dataclass(frozen=True)
class HeldOut:
    risks: dict[str, np.ndarray]  # detector set -> (N,) risks, NaN where missing
    labels: np.ndarray  # (N,) bool, hallucinated
    sources: np.ndarray  # (N,) str


def held_out_view(bundle: Bundle, data: Path, exclude_pool: bool = False) -> HeldOut:
    """The held-out half of ``data`` as the bundle split it (its seed), with every detector
    the bundle judged and the bundle's combiner."""
    from evaluation.combiner import combiner_risks

    _, records, _, held = split_records(data, None, bundle.manifest.data.seed, exclude_pool)
    part = [records[i] for i in held]
    judged = {n for n, d in bundle.manifest.detectors.items() if d.quality and d.quality.items}
    risks = {n: c for n, c in risk_columns(part).items() if n in judged}
    if bundle.combiner is not None:
        risks[COMBINED] = combiner_risks(bundle.combiner, part)
    return HeldOut(risks, np.array([r["hallucinated"] for r in part], dtype=bool),
                   np.array([r["source"] for r in part]))


def risk_coverage(risks: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(coverage, answered-hallucination rate) answering the k least risky items,
    k = 1 .. N: coverage_k = k / N, rate_k = (1/k) Σ_{i ≤ k} y_(i) in ascending risk
    order (ties in the given order). Items without a risk are left out. Both (N,)."""
    keep = ~np.isnan(risks)
    y = labels[keep][np.argsort(risks[keep], kind="stable")].astype(np.float64)
    k = np.arange(1, len(y) + 1)
    return k / max(len(y), 1), np.cumsum(y) / k


def reliability(probs: np.ndarray, labels: np.ndarray, bins: int = 10,
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean predicted risk, observed hallucination rate, count) per non-empty bin of
    equal width on [0, 1]: the reliability diagram's points (DeGroot & Fienberg 1983)."""
    keep = ~np.isnan(probs)
    p, y = probs[keep], labels[keep].astype(np.float64)
    which = np.clip((p * bins).astype(int), 0, bins - 1)  # (N,) bin of each item
    count = np.bincount(which, minlength=bins)
    nonempty = count > 0
    mean_p = np.bincount(which, weights=p, minlength=bins)[nonempty] / count[nonempty]
    rate = np.bincount(which, weights=y, minlength=bins)[nonempty] / count[nonempty]
    return mean_p, rate, count[nonempty]


def source_intervals(view: HeldOut, seed: int = 0) -> dict[str, dict[str, tuple]]:
    """source -> detector set -> (AUROC, 2.5 %, 97.5 % bootstrap quantiles), over the
    sources with both classes; resampled within the source. A source too small for an
    interval (:func:`bootstrap_interval` gives none: most resamples hold one class) is
    drawn as its point alone."""
    out: dict[str, dict[str, tuple]] = {}
    for source in np.unique(view.sources):
        inside = view.sources == source
        out[str(source)] = {}
        for name, risks in view.risks.items():
            keep = inside & ~np.isnan(risks)
            y = view.labels[keep]
            if y.all() or not y.any():
                continue
            point = auroc(risks[keep], y)
            interval = bootstrap_interval(auroc, risks[keep], y, resamples=RESAMPLES,
                                          seed=seed)
            out[str(source)][name] = (point, *(interval or (point, point)))
    return {s: v for s, v in out.items() if v}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def risk_coverage_png(view: HeldOut, alphas: list[float], path: Path) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.6), dpi=DPI)
    for name, risks in view.risks.items():
        coverage, rate = risk_coverage(risks, view.labels)
        width = 2.2 if name in (FREE_BASELINE, COMBINED) else 1.2
        ax.plot(coverage, rate, label=name, linewidth=width)
    for alpha in alphas:
        ax.axhline(alpha, color="grey", linestyle=":", linewidth=0.8)
        ax.text(1.0, alpha, f" α={alpha:g}", va="center", fontsize=7, color="grey")
    ax.set_xlabel("coverage (fraction answered, least risky first)")
    ax.set_ylabel("answered-hallucination rate")
    ax.set_title("Risk–coverage on the held-out half", fontsize=9)
    ax.set_xlim(0, 1)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def reliability_png(view: HeldOut, path: Path) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.0, 3.6), dpi=DPI)
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=0.8)
    for name in PROBABILITIES:
        if name in view.risks:
            p, rate, count = reliability(view.risks[name], view.labels)
            ax.plot(p, rate, marker="o", linewidth=1, label=name)
            for x, y, n in zip(p, rate, count, strict=True):
                ax.annotate(str(n), (x, y), fontsize=6, xytext=(2, -8),
                            textcoords="offset points")
    ax.set_xlabel("predicted risk (bin mean)")
    ax.set_ylabel("observed hallucination rate")
    ax.set_title("Reliability (held-out half; n per bin)", fontsize=9)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def source_auroc_png(intervals: dict[str, dict[str, tuple]], path: Path) -> None:
    """Dot-and-whisker: per source, each set's AUROC with its 95 % interval; the free
    −mean logprob in black."""
    plt = _pyplot()
    names = sorted({n for per in intervals.values() for n in per},
                   key=lambda n: (n != FREE_BASELINE, n))
    rows = [(s, n) for s in sorted(intervals) for n in names if n in intervals[s]]
    fig, ax = plt.subplots(figsize=(5.5, 0.9 + 0.17 * len(rows)), dpi=DPI)
    colours = {n: ("black" if n == FREE_BASELINE else f"C{i}")
               for i, n in enumerate(names)}
    for y, (source, name) in enumerate(reversed(rows)):
        point, lo, hi = intervals[source][name]
        ax.plot([lo, hi], [y, y], color=colours[name], linewidth=1)
        ax.plot([point], [y], marker="o", markersize=3, color=colours[name])
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([f"{s} · {n}" for s, n in reversed(rows)], fontsize=6)
    ax.axvline(0.5, color="grey", linestyle=":", linewidth=0.8)
    ax.set_xlabel("AUROC within source [95% bootstrap interval]")
    ax.set_title("Per-source AUROC, held-out half (black: −mean logprob)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def draw_figures(bundle: Bundle, data: Path, out: Path, seed: int = 0) -> tuple[str, ...]:
    """risk_coverage.png, reliability.png and source_auroc.png in ``out``; their names."""
    view = held_out_view(bundle, data)
    alphas = sorted({p.alpha for p in bundle.manifest.operating_points})
    risk_coverage_png(view, alphas, out / "risk_coverage.png")
    reliability_png(view, out / "reliability.png")
    source_auroc_png(source_intervals(view, seed), out / "source_auroc.png")
    return ("risk_coverage.png", "reliability.png", "source_auroc.png")
