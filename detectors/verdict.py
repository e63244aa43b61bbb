"""The verdict every detector returns, so that ``policies/`` can combine them without
knowing which detector produced what.

Each detector's result dataclass (HaltResult, EdflResult, SemanticResult) has:
  - ``verdict``: ANSWER or ABSTAIN under the detector's own thresholds;
  - ``risk``: a hallucination-risk score in [0, 1], higher = riskier (used by the
    weighted-score combination and by evaluation/AUROC);
  - ``to_dict()``: JSON-safe metadata for the response's ``hallgate`` object and the audit log.
"""

from __future__ import annotations

from enum import Enum


class Verdict(str, Enum):
    ANSWER = "answer"
    ABSTAIN = "abstain"
