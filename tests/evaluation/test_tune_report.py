"""What tune writes for a person: the policy snippet loads as a policy (a single detector
speaks in target_risk, the learned combiner gets its certified threshold), and the report
names the detectors that do not pay for themselves."""

from __future__ import annotations

import shutil

from calibration.bundle import load_bundle
from evaluation.tune_report import policy_snippet, report, unpaid
from policies.loader import load_policy
from tests.calibration.bundles import SHIPPED, write_bundle

RULE = "cheapest certified set"


def _selection(alpha, detectors, combine, threshold):
    return {"alpha": alpha, "delta": 0.1, "detectors": detectors, "combine": combine,
            "threshold": threshold, "coverage": 0.3, "upper_bound": alpha - 0.01,
            "upstream_calls": 0.0 if combine == "single" else 6.5,
            "completion_tokens": 0.0, "rule": RULE}


def test_the_snippet_loads_as_a_policy_with_each_chosen_set(tmp_path):
    path = write_bundle(tmp_path / "fake", selections=[
        {"alpha": 0.7, "delta": 0.1, "rule": RULE},  # nothing meets 0.7: no profile
        _selection(0.8, ["mean_logprob"], "single", 0.39),
        _selection(0.9, ["edfl", "halt", "semantic"], "learned", 0.94)])
    bundle = load_bundle(path, names={"fake"})
    snippet = policy_snippet(bundle)
    assert "risk-70" not in snippet
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text("version: 1\nroutes:\n  - {name: default, default: true, "
                           "profile: risk-80}\n" + snippet)
    shutil.copyfile(SHIPPED / "combiner.json", tmp_path / "combiner.json")
    policy = load_policy(policy_file)
    single, learned = policy.profiles["risk-80"], policy.profiles["risk-90"]
    assert single.target_risk == 0.8 and single.detectors.enabled() == ("mean_logprob",)
    assert learned.combine.mode == "learned" and learned.combine.threshold == 0.94
    assert set(learned.detectors.enabled()) == {"edfl", "halt", "semantic"}


def test_the_report_says_which_detectors_do_not_pay_for_themselves(tmp_path):
    bundle = load_bundle(write_bundle(tmp_path / "fake"), names={"fake"})
    names = unpaid(bundle)
    assert "semantic" in names  # 3 calls, within-source AUROC under −mean logprob's
    assert "mean_logprob" not in names and "halt" not in names  # free
    text = report(bundle, {"halt": "none"}, ("risk_coverage.png",))
    assert "**Detectors that do not pay for themselves on this model:**" in text
    assert "![risk_coverage.png](risk_coverage.png)" in text
