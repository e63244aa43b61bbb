"""What ``hallgate tune`` writes beside a bundle for a person: REPORT.md, the policy
snippet, and which detectors do not pay for themselves on the model.

    text = report(bundle, halt_metrics)      # REPORT.md
    yaml_text = policy_snippet(bundle)       # policy-snippet.yaml
    names = unpaid(bundle)                   # costly detectors no better than the free one
"""

from __future__ import annotations

import json

from calibration.bundle import Bundle
from calibration.show import operating_table, quality_table

FREE_BASELINE = "mean_logprob"  # what a detector must beat within source to pay for itself


def unpaid(bundle: Bundle) -> list[str]:
    """Detectors that cost upstream calls yet rank this model's held-out answers no
    better, within source, than the free −mean token logprob."""
    dets = bundle.manifest.detectors
    base = dets.get(FREE_BASELINE)
    floor = base.quality.mean_of_sources if base and base.quality else None
    out = []
    for name, det in dets.items():
        calls = det.cost.upstream_calls if det.cost else None
        q = det.quality.mean_of_sources if det.quality else None
        if (calls is None or calls > 0) and q is not None and floor is not None and q <= floor:
            out.append(name)
    return out


def policy_snippet(bundle: Bundle) -> str:
    """A profile per target risk α with a certified threshold: the free detector with the
    highest coverage at α (cheapest first, then coverage)."""
    free = {n for n, d in bundle.manifest.detectors.items()
            if d.cost is not None and d.cost.upstream_calls == 0}
    lines = [f"# profiles certified on {bundle.name} ({bundle.model}); merge into a policy",
             "profiles:"]
    alphas = sorted({p.alpha for p in bundle.manifest.operating_points})
    for alpha in alphas:
        points = [p for p in bundle.manifest.operating_points if p.alpha == alpha
                  and p.threshold is not None and p.detector in free]
        if not points:
            continue
        best = max(points, key=lambda p: p.coverage)
        detectors = "{halt: {enabled: false}, " + best.detector + ": {enabled: true}}" \
            if best.detector != "halt" else "{halt: {enabled: true}}"
        lines += [f"  risk-{round(alpha * 100)}:  # coverage {best.coverage:.3f} on the "
                  "calibration half",
                  f"    detectors: {detectors}",
                  f"    target_risk: {alpha:g}", f"    target_delta: {best.delta:g}",
                  "    uncalibrated: abstain"]
    return "\n".join(lines) + "\n"


def report(bundle: Bundle, halt_metrics: dict) -> str:
    unpaid_list = unpaid(bundle)
    verdict = (f"Detectors that do not pay for themselves on this model (upstream calls, "
               f"no better within source than free −mean logprob): "
               f"{', '.join(unpaid_list)}." if unpaid_list else
               "Every detector that costs upstream calls ranks better within source than "
               "−mean logprob here.")
    data = bundle.manifest.data
    return (f"# Calibration of {bundle.model}: bundle {bundle.name}\n\n"
            f"{data.items} items ({data.hallucinated} hallucinated), "
            f"{data.calibration_items} calibration, {data.held_out_items} held out.\n\n"
            f"{verdict}\n\n## Quality and cost (held-out half)\n\n{quality_table(bundle)}\n\n"
            f"## Learn-then-Test operating points\n\n{operating_table(bundle)}\n\n"
            f"## HALT trained for this model\n\n![HALT ROC](halt_roc.png)\n\n"
            f"```\n{json.dumps(halt_metrics, indent=1)}\n```\n")
