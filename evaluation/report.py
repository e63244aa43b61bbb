"""Summaries, report.md and plots of a ``hallgate eval`` run (plain data in, files out).

    summary = summarise(records, seed=0)       # the results.json object
    write_report(summary, out_dir)             # report.md
    write_plots(records, out_dir)              # risk_coverage.png, roc.png, histograms.png

Each score is a risk (higher = more likely hallucinated). Detectors with a verdict (HALT,
EDFL, semantic, the combined decision) are judged at the policy's own thresholds, on every
item. Scores without one (semantic entropy, the logprob baselines) get the macro-F1
threshold of a seeded half of the items and are judged on the other half.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from detectors.metrics import (
    accuracy_rejection,
    aurac,
    auroc,
    best_macro_f1_threshold,
    bootstrap_interval,
    clopper_pearson_upper,
    macro_f1,
    percentile,
    prr,
    roc_curve,
    wilson_upper,
)
from policies.calibration import split_indices

# (key in record["scores"], label in tables, key in record["verdicts"] or None)
SCORES: tuple[tuple[str, str, str | None], ...] = (
    ("halt", "HALT risk", "halt"),
    ("edfl", "EDFL risk (RoH bound)", "edfl"),
    ("edfl_neg_isr", "EDFL −ISR", None),
    ("semantic", "semantic risk (H/log M)", "semantic"),
    ("semantic_entropy", "semantic entropy, count clusters (nats)", None),
    ("semantic_entropy_prob", "semantic entropy, probability clusters (nats)", None),
    ("neg_mean_logprob", "−mean token logprob", None),
    ("neg_min_logprob", "−min token logprob", None),
    ("answer_tokens", "answer length (tokens)", None),
    ("combined", "combined decision", "combined"),
)
BOOTSTRAP_RESAMPLES = 200  # per metric, per score, per block (a report of 1,200 items: ~10 s)


def _scored(records: list[dict], key: str) -> list[dict]:
    return [r for r in records if _finite(r["scores"].get(key))]


def _finite(x) -> bool:
    return isinstance(x, int | float) and math.isfinite(x)


def _selective(flagged: np.ndarray, y: np.ndarray) -> dict:
    """Abstention rate, and the hallucination rate among answered items with its Wilson
    95% upper bound."""
    answered = ~flagged
    n_ans, errors = int(answered.sum()), int(y[answered].sum())
    return {"abstention_rate": float(flagged.mean()) if len(y) else None,
            "coverage": float(answered.mean()) if len(y) else None,
            "answered": n_ans, "answered_hallucinated": errors,
            "hallucination_rate_answered": errors / n_ans if n_ans else None,
            "wilson95_upper": wilson_upper(errors, n_ans, 0.95),
            "clopper_pearson95_upper": clopper_pearson_upper(errors, n_ans, 0.05)}


def score_summary(records: list[dict], key: str, verdict_key: str | None,
                  seed: int) -> dict:
    """Threshold-free ranking metrics on every scored item, plus the selective metrics at
    the policy's verdict (or a validation-tuned threshold, judged on the held-out half)."""
    rows = _scored(records, key)
    out: dict = {"n": len(rows)}
    if not rows:
        return out
    s = np.array([r["scores"][key] for r in rows], dtype=np.float64)  # (N,)
    y = np.array([r["hallucinated"] for r in rows], dtype=np.int64)  # (N,)
    out.update(auroc=auroc(s, y), aurac=aurac(s, y), prr=prr(s, y))
    for name, metric in (("auroc", auroc), ("aurac", aurac), ("prr", prr)):
        out[f"{name}_ci95"] = bootstrap_interval(metric, s, y, resamples=BOOTSTRAP_RESAMPLES,
                                                 seed=seed)
    if verdict_key is not None:
        flagged = np.array([r["verdicts"].get(verdict_key) == "abstain" for r in rows])
        out.update(threshold="policy verdict", macro_f1=macro_f1(flagged, y),
                   **_selective(flagged, y))
        return out
    val, test = split_indices(len(rows), 0.5, seed)
    if len(val) == 0 or len(test) == 0:
        return out
    t = best_macro_f1_threshold(s[val], y[val])
    flagged = s[test] >= t
    out.update(threshold=f"{t:.4g} (macro-F1 on a seeded half; metrics on the other "
                         f"{len(test)})", macro_f1=macro_f1(flagged, y[test]),
               **_selective(flagged, y[test]))
    return out


def cost_summary(records: list[dict]) -> dict:
    latency = [r["latency_s"] for r in records]
    return {
        "requests": len(records),
        "latency_p50_s": percentile(latency, 50),
        "latency_p95_s": percentile(latency, 95),
        "upstream_completions_per_request": _mean([r["upstream_completions"] for r in records]),
        "tokens_per_request": _mean([r["answer_tokens"] + r["detector_tokens"]
                                     for r in records]),
        "answer_tokens_per_request": _mean([r["answer_tokens"] for r in records]),
    }


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def summarise(records: list[dict], seed: int = 0, extra: dict | None = None) -> dict:
    """The results.json object: overall and per-source metrics of every score, costs."""
    def block(rows: list[dict]) -> dict:
        y = [r["hallucinated"] for r in rows]
        return {"items": len(rows),
                "hallucination_rate": float(np.mean(y)) if y else None,
                "scores": {key: score_summary(rows, key, vk, seed) for key, _, vk in SCORES}}

    sources = sorted({r["source"] for r in records})
    by_source = {s: block([r for r in records if r["source"] == s]) for s in sources}
    return {"overall": block(records), "by_source": by_source,
            "mean_source_auroc": mean_source_auroc(by_source),
            "cost": cost_summary(records), **(extra or {})}


def mean_source_auroc(by_source: dict) -> dict:
    """Per score: the mean of the per-source AUROCs (sources where it is defined), the
    figure a between-source artefact cannot inflate; with the sources it averaged."""
    out = {}
    for key, _, _ in SCORES:
        values = {src: b["scores"][key].get("auroc") for src, b in by_source.items()}
        defined = {src: v for src, v in values.items() if v is not None and math.isfinite(v)}
        out[key] = {"mean": float(np.mean(list(defined.values()))) if defined else None,
                    "sources": sorted(defined)}
    return out


# --------------------------------------------------------------------------- report.md


def _fmt(x, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def _ci(m: dict, key: str) -> str:
    value, ci = m.get(key), m.get(f"{key}_ci95")
    if ci is None:
        return _fmt(value)
    return f"{_fmt(value)} [{ci[0]:.2f}, {ci[1]:.2f}]"


def score_table(block: dict) -> list[str]:
    lines = ["| score | n | AUROC [95% CI] | AURAC [95% CI] | PRR [95% CI] | macro-F1 | "
             "coverage | halluc. among answered (Clopper-Pearson 95% upper) |",
             "|---|---|---|---|---|---|---|---|"]
    for key, label, _ in SCORES:
        m = block["scores"].get(key, {})
        if not m.get("n"):
            lines.append(f"| {label} | 0 | – | – | – | – | – | – |")
            continue
        rate = (f"{_fmt(m.get('hallucination_rate_answered'))} "
                f"({_fmt(m.get('clopper_pearson95_upper'))}) of {m.get('answered', '–')}")
        lines.append(f"| {label} | {m['n']} | {_ci(m, 'auroc')} | {_ci(m, 'aurac')} | "
                     f"{_ci(m, 'prr')} | {_fmt(m.get('macro_f1'))} | "
                     f"{_fmt(m.get('coverage'))} | {rate} |")
    return lines


def source_auroc_table(summary: dict) -> list[str]:
    """Pooled AUROC next to each source's and their mean: the between-source check."""
    sources = list(summary["by_source"])
    lines = ["| score | pooled | " + " | ".join(sources) + " | mean of sources |",
             "|---|---|" + "---|" * len(sources) + "---|"]
    for key, label, _ in SCORES:
        pooled = summary["overall"]["scores"].get(key, {}).get("auroc")
        per = [summary["by_source"][s]["scores"].get(key, {}).get("auroc") for s in sources]
        mean = (summary.get("mean_source_auroc") or {}).get(key, {}).get("mean")
        lines.append(f"| {label} | {_fmt(pooled)} | " + " | ".join(_fmt(v) for v in per)
                     + f" | {_fmt(mean)} |")
    return lines


def write_report(summary: dict, out_dir: Path) -> Path:
    overall = summary["overall"]
    cost = summary["cost"]
    lines = [f"# hallgate eval: {summary.get('dataset', '')}", "",
             f"Command: `{summary.get('command', '')}`", "",
             f"{overall['items']} items, hallucination rate without abstention "
             f"{_fmt(overall['hallucination_rate'])}. Scores are risks (higher = more likely "
             f"hallucinated). macro-F1, abstention and the answered-hallucination rate use "
             f"the policy's verdict for HALT, EDFL, semantic and the combined decision; for "
             f"the others a threshold tuned for macro-F1 on a seeded half, judged on the "
             f"other half. Intervals: percentile bootstrap, {BOOTSTRAP_RESAMPLES} resamples.",
             "", "## AUROC within each source", "",
             "A pooled AUROC can be won by telling the sources apart; the mean of the "
             "per-source AUROCs cannot (– = one class only in that source).", "",
             *source_auroc_table(summary), "", "## All items", "", *score_table(overall), ""]
    for source, block in summary["by_source"].items():
        lines += [f"## {source} ({block['items']} items, hallucination rate "
                  f"{_fmt(block['hallucination_rate'])})", "", *score_table(block), ""]
    lines += ["## Cost per request", "",
              "| latency p50 (s) | latency p95 (s) | upstream completions | tokens "
              "(answer + detectors) | answer tokens |", "|---|---|---|---|---|",
              f"| {_fmt(cost['latency_p50_s'], 2)} | {_fmt(cost['latency_p95_s'], 2)} | "
              f"{_fmt(cost['upstream_completions_per_request'], 1)} | "
              f"{_fmt(cost['tokens_per_request'], 1)} | "
              f"{_fmt(cost['answer_tokens_per_request'], 1)} |", ""]
    gateway = summary.get("gateway_metrics")
    if gateway:
        lines += [f"Gateway /metrics over the run: {gateway}", ""]
    path = out_dir / "report.md"
    path.write_text("\n".join(lines))
    return path


# --------------------------------------------------------------------------- plots


def write_plots(records: list[dict], out_dir: Path) -> list[Path]:
    """risk_coverage.png, roc.png and histograms.png (matplotlib, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = []
    for key, label, _ in SCORES:
        rows = _scored(records, key)
        y = np.array([r["hallucinated"] for r in rows], dtype=np.int64)
        if len(rows) and 0 < y.sum() < len(y):
            series.append((label, np.array([r["scores"][key] for r in rows]), y))
    paths = [out_dir / "risk_coverage.png", out_dir / "roc.png", out_dir / "histograms.png"]
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for label, s, y in series:
        rejection, accuracy = accuracy_rejection(s, y)
        ax.plot(1 - rejection, 1 - accuracy, label=label)
    ax.set(xlabel="coverage (fraction answered)", ylabel="hallucination rate among answered",
           title="Risk-coverage")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(paths[0], dpi=120)
    fig, ax = plt.subplots(figsize=(5, 5))
    for label, s, y in series:
        fpr, tpr = roc_curve(s, y)
        ax.plot(fpr, tpr, label=f"{label} ({auroc(s, y):.2f})")
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set(xlabel="false-positive rate", ylabel="true-positive rate", title="ROC")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(paths[1], dpi=120)
    cols = max(1, min(3, len(series)))
    rows_n = max(1, math.ceil(len(series) / cols))
    fig, axes = plt.subplots(rows_n, cols, figsize=(4 * cols, 3 * rows_n), squeeze=False)
    for ax, (label, s, y) in zip(axes.ravel(), series, strict=False):
        ax.hist([s[y == 0], s[y == 1]], bins=20, label=["correct", "hallucinated"])
        ax.set_title(label, fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(paths[2], dpi=120)
    plt.close("all")
    return paths
