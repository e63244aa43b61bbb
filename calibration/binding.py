"""What one request's profile gets from its model's bundle, and what it lacks.

    use = CalibrationUse.of(bundle, enabled=("halt", "edfl"), per_model={"halt", ...},
                            behaviour=profile.uncalibrated)
    use.name            # the bundle's name, or "none"
    use.uncalibrated    # True: no bundle, or the bundle lacks an enabled per-model detector
    use.counting(enabled)  # the detectors that may decide under `model_agnostic`

A detector is *per-model* when what it applies was fitted to one generator (HALT's weights,
a logprob score's threshold); the others' verdicts follow from the profile's h* alone.
The profile's ``uncalibrated`` setting decides what an uncalibrated request gets:

    annotate        judged as configured, flagged (header, body, metric, log)
    model_agnostic  judged by the enabled detectors that need no per-model fit only;
                    abstain when the profile enables none of them
    abstain         the abstention, whatever the detectors say
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from calibration.bundle import Bundle

NONE = "none"  # the name of no bundle in headers, the body and metrics


@dataclass(frozen=True)
class CalibrationUse:
    bundle: Bundle | None
    missing: tuple[str, ...]  # enabled per-model detectors the bundle does not calibrate
    per_model: frozenset[str]  # every per-model detector the gateway offers
    behaviour: str  # the profile's `uncalibrated`

    @classmethod
    def of(cls, bundle: Bundle | None, enabled: Collection[str], per_model: Collection[str],
           behaviour: str) -> CalibrationUse:
        missing = tuple(n for n in enabled if n in per_model
                        and (bundle is None or not bundle.calibrates(n)))
        return cls(bundle, missing, frozenset(per_model), behaviour)

    @property
    def name(self) -> str:
        return self.bundle.name if self.bundle is not None else NONE

    @property
    def uncalibrated(self) -> bool:
        return self.bundle is None or bool(self.missing)

    def counting(self, enabled: Collection[str]) -> tuple[str, ...]:
        """Under `model_agnostic`, the enabled detectors that may decide: those calibrated
        by the bundle and those that need no per-model fit."""
        return tuple(n for n in enabled if n not in self.per_model or
                     (self.bundle is not None and n not in self.missing))

    def reason(self) -> str:
        what = ("no calibration bundle for this model" if self.bundle is None else
                f"bundle {self.bundle.name} does not calibrate {', '.join(self.missing)}")
        return f"uncalibrated ({self.behaviour}): {what}"

    def to_dict(self) -> dict:
        """The `calibration` entry of the response's `hallgate` object."""
        return {"bundle": self.name, "uncalibrated": self.uncalibrated,
                "missing": list(self.missing), "behaviour": self.behaviour}
