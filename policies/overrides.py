"""Per-request overrides: ``x-hallgate-<knob>`` headers, only for knobs the profile allows.

    x-hallgate-h-star: 0.1            -> h_star
    x-hallgate-action: annotate       -> action
    x-hallgate-edfl-m: 4              -> detectors.edfl.m
    x-hallgate-halt-threshold: 0.7    -> detectors.halt.threshold

The header name is the knob path with dots and underscores as dashes. A profile lists
what requests may change in ``allow_overrides`` (nothing by default). A header naming a
knob the profile does not allow, an unknown ``x-hallgate-*`` header, or a value of the
wrong type raises :class:`OverrideError` (the proxy answers 400). ``x-hallgate-route``
selects the route and is not an override.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import ValidationError

from detectors.registry import REGISTRY
from policies.schema import ROUTE_HEADER, Profile, overridable_knobs

HEADER_PREFIX = "x-hallgate-"
NOT_OVERRIDES = frozenset({ROUTE_HEADER})  # x-hallgate-* request headers that are no knobs


class OverrideError(ValueError):
    """A request header tried to change a knob it may not, or gave a bad value."""

    def __init__(self, message: str, *, header: str):
        super().__init__(message)
        self.message = message
        self.header = header  # the offending header, for the error's `param`


def knob_header(knob: str) -> str:
    """``edfl.isr_threshold`` -> ``x-hallgate-edfl-isr-threshold``."""
    return HEADER_PREFIX + knob.replace(".", "-").replace("_", "-").lower()


def header_knobs() -> dict[str, str]:
    """``{header: knob}`` for every overridable knob (detectors' from the registry)."""
    return {knob_header(k): k for k in overridable_knobs()}


def requested_overrides(headers: Mapping[str, str] | Iterable[tuple[str, str]],
                        ) -> dict[str, tuple[str, str]]:
    """``{knob: (header, value)}`` for the knob headers among ``headers``."""
    items = headers.items() if isinstance(headers, Mapping) else headers
    out: dict[str, tuple[str, str]] = {}
    known: dict[str, str] | None = None
    for name, value in items:
        header = name.lower()
        if not header.startswith(HEADER_PREFIX) or header in NOT_OVERRIDES:
            continue
        known = known if known is not None else header_knobs()
        knob = known.get(header)
        if knob is None:
            raise OverrideError(f"unknown header '{header}': hallgate knob headers are "
                                f"{', '.join(sorted(known))}", header=header)
        out[knob] = (header, value)
    return out


def apply_overrides(profile: Profile, headers: Mapping[str, str] | Iterable[tuple[str, str]],
                    *, available_detectors: Iterable[str] | None = None) -> Profile:
    """``profile`` with the allowed ``x-hallgate-*`` header values applied, type-checked."""
    requested = requested_overrides(headers)
    if not requested:
        return profile
    for knob, (header, _) in requested.items():
        if knob not in profile.allow_overrides:
            allowed = ", ".join(knob_header(k) for k in profile.allow_overrides) or "none"
            raise OverrideError(f"profile '{profile.name}' does not allow overriding "
                                f"'{knob}' per request ({header}); allowed: {allowed}",
                                header=header)
    data = profile.model_dump(exclude_unset=True)  # unset stays unset: a detector
    # reports a threshold it was not given as calibrated or default, not the profile's
    for knob, (_, value) in requested.items():
        _set(data, _data_path(knob), value.strip().lower())
    try:
        updated = Profile.model_validate(data)
    except ValidationError as exc:
        raise _override_error(exc, requested) from None
    _check_available(updated, requested, available_detectors)
    return updated


def _data_path(knob: str) -> tuple[str, ...]:
    head, _, tail = knob.partition(".")
    if tail and head in REGISTRY:
        return ("detectors", head, tail)
    return tuple(knob.split("."))


def _set(data: dict, path: tuple[str, ...], value: Any) -> None:
    for key in path[:-1]:
        data = data.setdefault(key, {})
    data[path[-1]] = None if value in ("null", "none", "") else value


def _override_error(exc: ValidationError, requested: dict[str, tuple[str, str]]) -> OverrideError:
    err = exc.errors()[0]
    loc = tuple(str(p) for p in err["loc"])
    header, value = next(iter(requested.values()))
    for knob, (h, v) in requested.items():
        if loc[: len(_data_path(knob))] == _data_path(knob):
            header, value = h, v
            break
    msg = err["msg"].removeprefix("Value error, ")
    return OverrideError(f"invalid value {value!r} for {header}: {msg}", header=header)


def _check_available(profile: Profile, requested: dict[str, tuple[str, str]],
                     available: Iterable[str] | None) -> None:
    if available is None:
        return
    available = set(available)
    for det in profile.detectors.enabled():
        if det not in available:
            header = requested.get(f"{det}.enabled", (knob_header(f"{det}.enabled"), ""))[0]
            raise OverrideError(f"detector '{det}' is not available in this gateway",
                                header=header)
