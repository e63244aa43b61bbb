"""Choosing a risk threshold with a finite-sample guarantee, and writing it into a policy.

    result = ltt_threshold(scores, hallucinated, CalibrationConfig(target_risk=0.05, delta=0.1))
    result.threshold      # answer iff score < threshold; None when no threshold is safe
    text = set_profile_knob(policy_text, "strict-factual", "halt.threshold", result.threshold)

Learn-then-Test (Angelopoulos et al. 2021) with fixed-sequence testing. For a threshold t
an item is answered when its score s < t (and every other detector of the profile lets
it through). The selective risk R(t) = P(hallucinated | answered at t). For each
candidate t, from the strictest to the loosest, test H_t: R(t) > α by the one-sided
Clopper-Pearson bound of the answered items' error rate at level δ; reject H_t (call t
safe) when the bound is <= α; stop at the first t that is not safe. Fixed-sequence
testing controls the family-wise error at δ, so with probability >= 1 − δ over the
calibration sample every threshold called safe has R(t) <= α. The chosen threshold is the
loosest safe one (the most answers).

The promise is about the population risk R(t). A rate measured on a finite sample of
later traffic scatters around R(t); ``CalibrationConfig.sample_size = n'`` makes the
promise cover the answered-hallucination rate measured on n' further items instead: each
candidate is tested against the α'_t of :func:`sample_safe_risk` for the answers it would
give on those items (about answered_t · n' / N), at level δ/2, so that
P(measured rate > α) <= P(R(t̂) > α'_t̂) + P(measured > α | R(t̂) <= α'_t̂) <= δ/2 + δ/2.
It costs coverage: the price of promising a measured number rather than a rate.

The candidate grid is fixed in advance (it does not look at the data). Candidates at the
strict end that answer fewer than max(n_min, min_coverage·N) calibration items are
skipped, n_min = ⌈log δ / log(1 − α)⌉: with fewer than n_min items even zero errors
cannot bring the bound under α, and a handful of answers makes the test fragile (one
early error would end the sequence before it reaches useful thresholds). Whether a
candidate is skipped depends on the scores only, never on the labels.

Nothing here reads files: the command (evaluation/evaluate.py) does the I/O.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from detectors.metrics import clopper_pearson_upper
from detectors.registry import REGISTRY

KNOBS: tuple[str, ...] = ("halt.threshold", "combine.threshold")  # knobs we can calibrate


def _default_grid() -> tuple[float, ...]:
    return tuple(round(float(t), 4) for t in np.linspace(0.0, 1.0, 201))


@dataclass(frozen=True)
class CalibrationConfig:
    target_risk: float = 0.05  # α: the answered-hallucination rate to stay under
    delta: float = 0.1  # δ: the guarantee holds with probability >= 1 − δ
    grid: tuple[float, ...] = field(default_factory=_default_grid)  # candidate thresholds;
    # 0 .. 1 step 0.005 (risks live in [0, 1]); tested from the strictest (lowest) up
    min_coverage: float = 0.1  # candidates answering fewer than this fraction of the
    # calibration items are not tested: one early error among a handful of answers would
    # end the sequence (fixed before the labels are seen, so the guarantee is unchanged)
    sample_size: int | None = None  # promise the rate measured on this many further items
    # (see the module docstring); None: the population risk

    def __post_init__(self) -> None:
        if not 0.0 < self.target_risk < 1.0:
            raise ValueError(f"target_risk must be in (0, 1), got {self.target_risk}")
        if not 0.0 < self.delta < 1.0:
            raise ValueError(f"delta must be in (0, 1), got {self.delta}")

    @property
    def min_answered(self) -> int:
        """n_min = ⌈log δ / log(1 − α)⌉: the fewest answers whose Clopper-Pearson bound with
        zero errors, 1 − δ^(1/n), can be <= α."""
        return math.ceil(math.log(self.delta) / math.log(1.0 - self.target_risk))


@dataclass(frozen=True)
class ThresholdTest:
    threshold: float
    answered: int  # calibration items answered at this threshold
    errors: int  # of those, hallucinated
    upper_bound: float  # Clopper-Pearson upper bound of errors / answered at 1 − δ
    safe: bool  # upper_bound <= target_risk


@dataclass(frozen=True)
class CalibrationResult:
    threshold: float | None  # the loosest safe threshold; None: none meets the target
    coverage: float  # fraction of calibration items answered at it (0 when None)
    answered: int
    errors: int
    upper_bound: float | None
    n: int  # calibration items
    tests: tuple[ThresholdTest, ...]  # the sequence as tested, stopping at the first failure
    reason: str  # one sentence on why this threshold (or none)


def sample_safe_risk(alpha: float, answers: int, delta: float) -> float:
    """α' = the largest risk r with P(Bin(m, r) > ⌊α·m⌋) <= δ, m = ``answers``: a threshold
    whose population risk is at most α' shows a rate above α on m fresh answers with
    probability at most δ. By the binomial–beta identity P(Bin(m, r) >= k + 1) =
    I_r(k + 1, m − k), so α' is the δ quantile of Beta(k + 1, m − k), k = ⌊α·m⌋; 1 when
    k = m (no count of errors exceeds α·m) and α when m = 0 (nothing to measure)."""
    if answers <= 0:
        return alpha
    k = math.floor(alpha * answers)
    if k >= answers:
        return 1.0
    return float(stats.beta.ppf(delta, k + 1, answers - k))


def answered_mask(scores, threshold: float, others_answer=None) -> np.ndarray:
    """answered_i = s_i < t and every other detector of the profile answered item i."""
    s = np.asarray(scores, dtype=np.float64)  # (N,) risks; +inf = never answered
    mask = s < threshold
    if others_answer is not None:
        mask &= np.asarray(others_answer, dtype=bool)
    return mask


def ltt_threshold(scores, hallucinated, config: CalibrationConfig,
                  others_answer=None) -> CalibrationResult:
    """Learn-then-Test fixed-sequence choice of the loosest threshold with R(t) <= α at 1 − δ
    (see the module docstring; with ``config.sample_size`` each candidate's α is its
    :func:`sample_safe_risk` and the level δ/2)."""
    y = np.asarray(hallucinated, dtype=bool)  # (N,)
    n = len(y)
    level = config.delta if config.sample_size is None else config.delta / 2
    tests: list[ThresholdTest] = []
    chosen: ThresholdTest | None = None
    for t in sorted(config.grid):
        mask = answered_mask(scores, t, others_answer)
        answered = int(mask.sum())
        if answered < max(config.min_answered, config.min_coverage * n):
            continue  # untestable at this size whatever the labels: skipped (see above)
        errors = int(y[mask].sum())
        bound = clopper_pearson_upper(errors, answered, level)
        target = config.target_risk if config.sample_size is None else sample_safe_risk(
            config.target_risk, round(answered * config.sample_size / n), config.delta / 2)
        test = ThresholdTest(t, answered, errors, bound, bound <= target)
        tests.append(test)
        if not test.safe:
            break
        chosen = test
    if chosen is None:
        return CalibrationResult(None, 0.0, 0, 0, None, n, tuple(tests),
                                 _refusal_reason(tests, config, n))
    reason = (f"threshold {chosen.threshold:g}: {chosen.errors} hallucinated of "
              f"{chosen.answered} answered, Clopper-Pearson upper bound "
              f"{chosen.upper_bound:.4f} <= {config.target_risk} at confidence "
              f"{1 - config.delta:g}")
    return CalibrationResult(chosen.threshold, chosen.answered / n if n else 0.0,
                             chosen.answered, chosen.errors, chosen.upper_bound, n,
                             tuple(tests), reason)


def _refusal_reason(tests: list[ThresholdTest], config: CalibrationConfig, n: int) -> str:
    if not tests:
        return (f"no threshold answers the {config.min_answered} calibration items needed "
                f"to show a rate <= {config.target_risk} at confidence {1 - config.delta:g} "
                f"(n = {n})")
    first = tests[0]
    return (f"the strictest testable threshold ({first.threshold:g}) "
            f"has {first.errors} hallucinated of {first.answered} answered, upper bound "
            f"{first.upper_bound:.4f} > {config.target_risk}")


def split_indices(n: int, calibration_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded random split of range(n): (calibration, held_out) index arrays."""
    order = np.random.default_rng(seed).permutation(n)
    cut = int(round(calibration_fraction * n))
    return np.sort(order[:cut]), np.sort(order[cut:])


@dataclass(frozen=True)
class GuaranteeCheck:
    """How often Learn-then-Test's promise failed on data it was not calibrated on."""

    splits: int
    exceeded: int  # splits whose measured answered-hallucination rate was above α
    no_threshold: int  # splits where no threshold was safe (nothing answered: no risk)
    mean_coverage: float  # mean fraction answered where it was measured, over all splits

    @property
    def exceeded_fraction(self) -> float:
        return self.exceeded / self.splits if self.splits else 0.0


def guarantee_check(scores, hallucinated, config: CalibrationConfig, splits: int = 200,
                    calibration_fraction: float = 0.5, seed: int = 0,
                    population: bool = False) -> GuaranteeCheck:
    """The LTT guarantee P(R(t̂) > α) <= δ checked empirically, where
    R(t) = #(hallucinated ∧ answered at t) / #answered at t.

    ``population=False`` (resplits): calibrate on a seeded random part of the items and
    measure R on the rest. The rest is a finite sample too, so its R̂ scatters around the
    true R(t̂): a threshold whose true risk sits just under α exceeds it on about half the
    held-out draws, and the fraction of exceedances can pass δ with the promise kept.
    ``population=True``: the items are the population. Each calibration set is drawn from
    them with replacement (i.i.d., as LTT assumes) and R(t̂) is measured exactly on all of
    them, so the fraction of exceedances estimates P(R(t̂) > α) itself."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(hallucinated, dtype=bool)
    n = len(y)
    exceeded = no_threshold = 0
    coverage = 0.0
    for k in range(splits):
        if population:
            cal = np.random.default_rng(seed + k).integers(0, n, round(calibration_fraction * n))
            measured = np.arange(n)
        else:
            cal, measured = split_indices(n, calibration_fraction, seed + k)
        result = ltt_threshold(s[cal], y[cal], config)
        if result.threshold is None:
            no_threshold += 1
            continue
        answered = answered_mask(s[measured], result.threshold)
        coverage += answered.mean() if len(measured) else 0.0
        if answered.any() and y[measured][answered].mean() > config.target_risk:
            exceeded += 1
    return GuaranteeCheck(splits, exceeded, no_threshold, coverage / splits if splits else 0.0)


# --------------------------------------------------------------------------- policy text


class KnobEditError(ValueError):
    """The YAML text could not be edited in place (flow style, odd layout)."""


def knob_path(profile: str, knob: str) -> list[str]:
    """``halt.threshold`` -> profiles.<p>.detectors.halt.threshold; ``combine.threshold`` ->
    profiles.<p>.combine.threshold."""
    if knob not in KNOBS:
        raise ValueError(f"cannot calibrate '{knob}' (calibratable: {', '.join(KNOBS)})")
    head = ["detectors"] if knob.partition(".")[0] in REGISTRY else []
    return ["profiles", profile, *head, *knob.split(".")]


def set_profile_knob(text: str, profile: str, knob: str, value: float, note: str = "") -> str:
    """Set ``knob`` of ``profile`` in a policy file's text, keeping every other line (and
    comments) as written. A profile the file does not define gets a block that customises
    the built-in of that name (``extends: <name>``). Raises :class:`KnobEditError` when the
    text is not plain block-style YAML along the knob's path."""
    path = knob_path(profile, knob)
    comment = f"  # {note}" if note else ""
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    start, end, indent = 0, len(lines), -1
    for depth, key in enumerate(path):
        found = _find_key(lines, start, end, indent, key)
        if found is None:
            child_indent = _child_indent(lines, start, end, indent)
            block = _yaml_block(path[depth:], f"{value:g}", child_indent, comment,
                                profile_at=1 - depth, profile=profile)
            at = _block_insert_point(lines, start, end)
            return "".join(lines[:at] + block + lines[at:])
        line_indent = len(lines[found]) - len(lines[found].lstrip(" "))
        if depth == len(path) - 1:
            lines[found] = _replace_scalar(lines[found], key, f"{value:g}", comment)
            return "".join(lines)
        if _inline_value(lines[found], key):
            raise KnobEditError(f"'{key}' at line {found + 1} is written inline (flow style)")
        start, end, indent = found + 1, _block_end(lines, found, line_indent), line_indent
    raise AssertionError("unreachable")


def _content(line: str) -> str | None:
    """The line without indentation, or None for blank and comment-only lines."""
    stripped = line.strip()
    return None if not stripped or stripped.startswith("#") else line.lstrip(" ")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _find_key(lines: list[str], start: int, end: int, parent_indent: int, key: str) -> int | None:
    child = _child_indent(lines, start, end, parent_indent)
    pattern = re.compile(rf"^['\"]?{re.escape(key)}['\"]?\s*:(\s|$)")
    for i in range(start, end):
        content = _content(lines[i])
        if content is not None and _indent(lines[i]) == child and pattern.match(content):
            return i
    return None


def _child_indent(lines: list[str], start: int, end: int, parent_indent: int) -> int:
    for i in range(start, end):
        if _content(lines[i]) is not None and _indent(lines[i]) > parent_indent:
            return _indent(lines[i])
    return parent_indent + 2 if parent_indent >= 0 else 0


def _block_end(lines: list[str], key_line: int, key_indent: int) -> int:
    """The index after the last line belonging to the block under ``key_line``."""
    for i in range(key_line + 1, len(lines)):
        if _content(lines[i]) is not None and _indent(lines[i]) <= key_indent:
            return i
    return len(lines)


def _block_insert_point(lines: list[str], start: int, end: int) -> int:
    """After the block's last content line (trailing blanks and comments stay after)."""
    last = start
    for i in range(start, end):
        if _content(lines[i]) is not None:
            last = i + 1
    return last


def _inline_value(line: str, key: str) -> bool:
    after = line.split(":", 1)[1].split("#", 1)[0].strip()
    return bool(after)


def _replace_scalar(line: str, key: str, value: str, comment: str) -> str:
    match = re.match(r"^(\s*['\"]?[^:]+['\"]?\s*:\s*)([^#\n]*?)(\s*#[^\n]*)?(\n?)$", line)
    if match is None or match.group(2).strip() in ("", "|", ">") or \
            match.group(2).strip().startswith(("{", "[")):
        raise KnobEditError(f"'{key}' does not hold a plain scalar: {line.strip()!r}")
    old_comment = match.group(3) or ""
    return f"{match.group(1)}{value}{old_comment or comment}{match.group(4)}"


def _yaml_block(keys: list[str], value: str, indent: int, comment: str,
                profile_at: int, profile: str) -> list[str]:
    """Nested block lines for ``keys`` (the last one holds ``value``); the profile's own
    key (at index ``profile_at``, when a new profile is created) gets ``extends``."""
    out = []
    for j, key in enumerate(keys):
        pad = " " * (indent + 2 * j)
        out.append(f"{pad}{key}: {value}{comment}\n" if j == len(keys) - 1 else f"{pad}{key}:\n")
        if j == profile_at:
            out.append(f"{pad}  extends: {profile}  # customises the built-in profile\n")
    return out
