"""What ``hallgate tune`` writes beside a bundle for a person: REPORT.md, the policy
snippet, and which detectors do not pay for themselves on the model.

    text = report(bundle, halt_metrics, figures)  # REPORT.md (figures: PNG names)
    yaml_text = policy_snippet(bundle)            # policy-snippet.yaml
    names = unpaid(bundle)                        # costly sets no better than the free one
"""

from __future__ import annotations

import json
from collections.abc import Callable

from calibration.build import COMBINED
from calibration.bundle import Bundle, Cost, Quality
from calibration.show import fmt_number, operating_table, quality_table

FREE_BASELINE = "mean_logprob"  # what a detector must beat within source to pay for itself


def _detector_sets(bundle: Bundle, combiner_name: Callable[[tuple[str, ...]], str],
                   ) -> list[tuple[str, Cost | None, Quality | None]]:
    """(name, cost, quality) of every detector the bundle judged, then of the learned
    combiner as one set (named by ``combiner_name(its detectors)``) when it has one."""
    sets = [(name, det.cost, det.quality) for name, det in bundle.manifest.detectors.items()]
    combined = bundle.manifest.combiner_set
    if combined is not None:
        sets.append((combiner_name(combined.detectors), combined.cost, combined.quality))
    return sets


def unpaid(bundle: Bundle) -> list[str]:
    """Detector sets that cost upstream calls (or whose cost was not recorded) yet rank
    this model's held-out answers no better, within source, than the free −mean token
    logprob: mean of per-source AUROC q_d <= q_{mean_logprob}. The learned combiner is
    judged the same way, at the summed cost of the detectors it reads."""
    base = bundle.manifest.detectors.get(FREE_BASELINE)
    floor = base.quality.mean_of_sources if base and base.quality else None
    out = []
    for name, cost, quality in _detector_sets(
            bundle, lambda members: f"{COMBINED} (over {', '.join(members)})"):
        calls = cost.upstream_calls if cost else None
        q = quality.mean_of_sources if quality else None
        if (calls is None or calls > 0) and q is not None and floor is not None and q <= floor:
            out.append(name)
    return out


def _profile_lines(chosen, combiner_file: str) -> list[str]:
    """One profile's YAML lines for a selection (calibration/bundle.py Selection)."""
    head = (f"  risk-{round(chosen.alpha * 100)}:  # {' + '.join(chosen.detectors)}: "
            f"coverage {chosen.coverage:.3f} on the calibration half, bound "
            f"{fmt_number(chosen.upper_bound)} <= {chosen.alpha:g}, "
            f"{fmt_number(chosen.upstream_calls, 1)} upstream calls per request")
    enabled = ", ".join(f"{d}: {{enabled: true}}" for d in chosen.detectors)
    if "halt" not in chosen.detectors:
        enabled = "halt: {enabled: false}, " + enabled
    lines = [head, f"    detectors: {{{enabled}}}"]
    if chosen.combine == "learned":
        lines += [f"    combine: {{mode: learned, threshold: {chosen.threshold:g}, "
                  f"model: {combiner_file}}}  # certified for target risk "
                  f"{chosen.alpha:g} (delta {chosen.delta:g})"]
    else:
        lines += [f"    target_risk: {chosen.alpha:g}", f"    target_delta: {chosen.delta:g}"]
    return lines + ["    uncalibrated: abstain"]


def policy_snippet(bundle: Bundle, combiner_file: str = "combiner.json") -> str:
    """A profile per target risk α that some detector set meets: the bundle's selection
    for α (the cheapest certified set, calibration/selection.py). A single detector speaks
    in ``target_risk``; the learned combiner gets its certified ``combine.threshold``
    (``combiner_file``: the bundle's combiner, relative to the policy file)."""
    lines = [f"# profiles certified on {bundle.name} ({bundle.model}); merge into a policy",
             "profiles:"]
    for chosen in bundle.manifest.selections:
        if chosen.detectors and chosen.threshold is not None:
            lines += _profile_lines(chosen, combiner_file)
    if len(lines) == 2:
        lines.append("  {}  # no detector set meets any target risk on this data")
    return "\n".join(lines) + "\n"


def selection_table(bundle: Bundle) -> str:
    rows = ["| α | δ | cheapest certified set | combine | threshold | coverage (calibration) "
            "| bound | upstream calls / request | completion tokens / request |",
            "|---|---|---|---|---|---|---|---|---|"]
    for c in bundle.manifest.selections:
        if not c.detectors:
            rows.append(f"| {c.alpha:g} | {c.delta:g} | none meets α | – | – | – | – | – | – |")
            continue
        rows.append(f"| {c.alpha:g} | {c.delta:g} | {' + '.join(c.detectors)} | {c.combine} "
                    f"| {c.threshold:g} | {c.coverage:.3f} | {fmt_number(c.upper_bound)} | "
                    f"{fmt_number(c.upstream_calls, 2)} | {fmt_number(c.completion_tokens, 1)} |")
    return "\n".join(rows)


def cost_table(bundle: Bundle) -> str:
    rows = ["| detector set | upstream calls / request | completion tokens / request | "
            "ms / request (recorded) | mean of per-source AUROC [95% CI] |",
            "|---|---|---|---|---|"]
    for name, cost, q in _detector_sets(
            bundle, lambda members: f"{COMBINED} ({' + '.join(members)})"):
        money = ("not recorded | – | –" if cost is None else
                 f"{fmt_number(cost.upstream_calls, 2)} | "
                 f"{fmt_number(cost.completion_tokens, 1)} | {fmt_number(cost.ms, 0)}")
        quality = ("–" if q is None or q.mean_of_sources is None else
                   f"{q.mean_of_sources:.3f}" + (f" [{q.mean_of_sources_ci[0]:.3f}, "
                                                 f"{q.mean_of_sources_ci[1]:.3f}]"
                                                 if q.mean_of_sources_ci else ""))
        rows.append(f"| {name} | {money} | {quality} |")
    return "\n".join(rows)


def _verdict(bundle: Bundle) -> str:
    unpaid_list = unpaid(bundle)
    if not unpaid_list:
        return ("Every detector set that costs upstream calls ranks better within source "
                "than the free −mean token logprob on this model.")
    return (f"**Detectors that do not pay for themselves on this model:** "
            f"{', '.join(unpaid_list)}: each "
            "costs upstream calls per request (or its cost was not recorded) and ranks "
            "this model's held-out answers no better within source than the free −mean "
            "token logprob.")


FIGURES = {"risk_coverage.png": "Risk–coverage per detector set (held-out half; the dotted "
           "lines are the target risks α)",
           "reliability.png": "Reliability: predicted risk against the observed "
           "hallucination rate (held-out half)",
           "source_auroc.png": "Per-source AUROC with 95% bootstrap intervals against "
           "−mean logprob (black)",
           "halt_roc.png": "HALT trained for this model: ROC on its own test split"}


def report(bundle: Bundle, halt_metrics: dict, figures: tuple[str, ...] = ()) -> str:
    """REPORT.md: the verdict first, then the choice per target risk, the cost table, the
    figures that exist among ``figures``, and the full tables."""
    data = bundle.manifest.data
    pictures = "".join(f"### {FIGURES.get(f, f)}\n\n![{f}]({f})\n\n" for f in figures)
    return (f"# Calibration of {bundle.model}: bundle {bundle.name}\n\n"
            f"{data.items} items ({data.hallucinated} hallucinated), "
            f"{data.calibration_items} calibration, {data.held_out_items} held out.\n\n"
            f"{_verdict(bundle)}\n\n"
            f"## The cheapest detector set per target risk\n\n{selection_table(bundle)}\n\n"
            f"Rule: {bundle.manifest.selections[0].rule if bundle.manifest.selections else ''}"
            f".\n\n## Cost and quality\n\n{cost_table(bundle)}\n\n## Figures\n\n{pictures}"
            f"## Quality (held-out half)\n\n{quality_table(bundle)}\n\n"
            f"## Learn-then-Test operating points (calibration half)\n\n"
            f"{operating_table(bundle)}\n\n"
            f"## HALT trained for this model\n\n"
            f"```\n{json.dumps(halt_metrics, indent=1)}\n```\n")
