"""The policy file, as pydantic models: routes choose a profile, a profile says how to judge.

    Policy
    ├── routes: [Route]            first match wins; exactly one `default: true`, last
    │   └── match: RouteMatch      path_prefix | header (x-hallgate-route) | model | key
    └── profiles: {name: Profile}  the file's own plus the built-ins it reaches
        ├── detectors: {name: settings}   every registered detector (detectors/registry.py)
        ├── combine: any | weighted               how detector results become one verdict
        ├── progressive: holdback_tokens | rescore_every | threshold   (streaming: progressive)
        └── action, streaming, fail_mode, abstention_text, allow_overrides, ...

Every model forbids unknown keys (``extra="forbid"``) and is frozen: a loaded policy is
shared by concurrent requests and never mutated; overrides build a new Profile.

Checks that span several fields raise :class:`LocatedError`, which carries the location
of each problem relative to the model, so the loader can point at the right YAML line.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    PrivateAttr,
    SerializationInfo,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import core_schema

from detectors.protocol import DetectorSettings, ProfileContext
from detectors.registry import REGISTRY
from policies.validation_errors import reason

# The six closed-book masking levels of DESIGN.md, cycled over the m skeletons.
DEFAULT_MASKING_LEVELS: tuple[float, ...] = (0.25, 0.35, 0.5, 0.65, 0.8, 0.9)

ROUTE_HEADER = "x-hallgate-route"
_SLASHES = re.compile(r"/{2,}")


class LocatedError(ValueError):
    """Problems found by a cross-field check, each with its location below the model.

    ``problems`` is a list of ``(loc, reason)``; ``loc`` is a tuple of keys/indices like
    pydantic's own error locations, relative to the model whose validator raised.
    """

    def __init__(self, problems: list[tuple[tuple[str | int, ...], str]]):
        self.problems = problems
        super().__init__("; ".join(f"{'.'.join(map(str, loc))}: {why}" for loc, why in problems))


def _as_tuple(value: Any) -> Any:
    """Let a YAML scalar stand for a one-item list (``path_prefix: /strict``)."""
    if isinstance(value, str | int | float):
        return (value,)
    return value


StrTuple = Annotated[tuple[str, ...], BeforeValidator(_as_tuple)]
Probability = Annotated[float, Field(gt=0.0, lt=1.0)]
UnitInterval = Annotated[float, Field(ge=0.0, le=1.0)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------- detectors


class SkeletonKnobs(_Strict):
    """The masker both gates use to build skeleton prompts (detectors/edfl/skeletons.py)."""

    masking: Literal["auto", "evidence", "closed_book"] = "auto"  # auto = erase evidence
    # fields when the prompt has them, otherwise closed-book masking
    levels: tuple[UnitInterval, ...] = Field(DEFAULT_MASKING_LEVELS, min_length=1)
    # masking probability of skeleton k, cycled over the skeletons
    skip_words: StrTuple | None = None  # task words never masked (case-insensitive);
    # None = the detectors' default list (python, regex, sql, ...); a list replaces it


class DetectorsConfig(Mapping[str, DetectorSettings]):
    """A profile's `detectors:`: detector name -> its settings, one entry per registered
    detector (detectors/registry.py), in registry order. Each entry is validated by the
    detector's own settings model; an unknown name is an unknown key. Frozen and hashable.

        profile.detectors["halt"].threshold     # or profile.detectors.halt.threshold
        profile.detectors.enabled()             # ("halt", "edfl")
    """

    __slots__ = ("_settings",)

    def __init__(self, settings: Mapping[str, DetectorSettings] | None = None):
        given = dict(settings or {})
        filled = {spec.name: given.get(spec.name) or spec.settings() for spec in REGISTRY}
        object.__setattr__(self, "_settings", filled)

    def __getitem__(self, name: str) -> DetectorSettings:
        return self._settings[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._settings)

    def __len__(self) -> int:
        return len(self._settings)

    def __getattr__(self, name: str) -> DetectorSettings:
        try:
            return self._settings[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise TypeError("DetectorsConfig is frozen")

    def __hash__(self) -> int:
        return hash(tuple(self._settings.items()))

    def __repr__(self) -> str:
        return f"DetectorsConfig({self._settings!r})"

    def enabled(self) -> tuple[str, ...]:
        """Names of the detectors this profile runs, in registry order."""
        return tuple(name for name, s in self._settings.items() if s.enabled)

    def replace(self, **settings: DetectorSettings) -> DetectorsConfig:
        return DetectorsConfig({**self._settings, **settings})

    def dump(self, exclude_unset: bool = False) -> dict[str, dict]:
        return {name: s.model_dump(exclude_unset=exclude_unset)
                for name, s in self._settings.items()}

    @classmethod
    def validate(cls, value: Any) -> DetectorsConfig:
        if isinstance(value, cls):
            return value
        if value is None:
            value = {}
        if not isinstance(value, Mapping):
            raise LocatedError([((), "must be a mapping of detector name -> settings "
                                 f"(known detectors: {', '.join(REGISTRY.names())})")])
        problems: list[tuple[tuple[str | int, ...], str]] = []
        out: dict[str, DetectorSettings] = {}
        for key, body in value.items():
            if key not in REGISTRY:
                problems.append(((str(key),), f"unknown detector '{key}' (known detectors: "
                                 f"{', '.join(REGISTRY.names())})"))
                continue
            model = REGISTRY.get(key).settings
            if isinstance(body, model):
                out[key] = body
                continue
            try:
                out[key] = model.model_validate({} if body is None else body)
            except ValidationError as exc:
                problems += [((key, *err["loc"]), reason(err, tuple(err["loc"]), model))
                             for err in exc.errors()]
        if problems:
            raise LocatedError(problems)
        return cls(out)

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler):
        def serialize(value: DetectorsConfig, info: SerializationInfo) -> dict:
            return value.dump(exclude_unset=info.exclude_unset)

        return core_schema.no_info_plain_validator_function(
            cls.validate, serialization=core_schema.plain_serializer_function_ser_schema(
                serialize, info_arg=True))


class CombineConfig(_Strict):
    """How detector results become one verdict.

    any:      ABSTAIN iff any counted detector says ABSTAIN.
    weighted: ABSTAIN iff Σ w_d·risk_d / Σ w_d >= threshold over the counted detectors.
    learned:  ABSTAIN iff the combiner's calibrated P(hallucinated) >= threshold; the
              combiner (``model``) reads the detectors' scores and the answer's logprobs.
    """

    mode: Literal["any", "weighted", "learned"] = "any"
    weights: dict[str, float] = {}  # weighted mode; detectors not listed weigh 1.0
    threshold: UnitInterval = 0.5  # weighted / learned: abstain when the risk >= this
    model: str | None = None  # learned mode: the combiner JSON (`hallgate calibrate
    # --fit-combiner`), relative to the policy file; the loader reads it (Policy.combiner)

    @field_validator("weights")
    @classmethod
    def _weights_name_detectors(cls, weights: dict[str, float]) -> dict[str, float]:
        problems = [((name,), f"unknown detector '{name}' (known detectors: "
                     f"{', '.join(REGISTRY.names())})") for name in weights
                    if name not in REGISTRY]
        problems += [((name,), f"weight must be >= 0, got {w}")
                     for name, w in weights.items() if w < 0]
        if problems:
            raise LocatedError(problems)
        return weights

    def weight(self, detector: str) -> float:
        return self.weights.get(detector, 1.0)


class ProgressiveKnobs(_Strict):
    """`streaming: progressive`: release the answer W tokens behind the upstream while a
    prefix-judging detector (the first enabled one, in registry order: HALT, the logprob
    scores) judges the growing prefix; cut the stream when the prefix risk crosses
    ``threshold``."""

    holdback_tokens: int = Field(8, ge=0, le=4096)  # W: tokens held back from the client;
    # a cut discards them, so at most (tokens read − W) of a cut answer were ever shown
    rescore_every: int = Field(8, ge=1, le=4096)  # k: the prefix is judged every k tokens
    # (a bidirectional model rescores the whole prefix: cost ~ T²/k token-steps per answer)
    threshold: UnitInterval | None = None  # prefix risk >= threshold -> cut; None = the
    # detector's calibrated prefix threshold (HALT: chosen on validation prefixes by
    # bench/halt_prefix.py), else its answer threshold
    detector: str | None = None  # the prefix judge, an enabled detector that judges
    # prefixes; None = the first enabled one in registry order. HALT re-reads the prefix
    # at every check (CPU ~ T²/k); the logprob scores and causal HALT carry their state
    # (CPU ~ T)
    cut_on: tuple[Literal["short_answer", "other"], ...] | None = None  # the answer kinds
    # (policies/answer_kind.py, read from the request) whose streams a prefix may cut;
    # another kind streams without cuts (checked and reported, never cut) and the whole
    # answer's judgement decides. None = every kind. The prefix thresholds were chosen on
    # short answers only: [short_answer] keeps cuts where they were validated


# --------------------------------------------------------------------------- profile

# Knobs a request may override with an ``x-hallgate-*`` header, when the profile lists
# them in ``allow_overrides``. Only scalars: a header carries one value. Detector knobs are
# ``<detector>.<field>`` for the fields its settings model lists in OVERRIDABLE (default:
# every field).
PROFILE_KNOBS: tuple[str, ...] = (
    "h_star", "action", "streaming", "fail_mode", "combine.mode", "combine.threshold",
    "skeletons.masking", "tool_calls",
    "progressive.holdback_tokens", "progressive.rescore_every", "progressive.threshold",
)


def overridable_knobs() -> tuple[str, ...]:
    """Every knob a profile may allow to be overridden, detectors' from the registry."""
    detector_knobs = tuple(
        f"{spec.name}.{field}" for spec in REGISTRY
        for field in (getattr(spec.settings, "OVERRIDABLE", None) or spec.settings.model_fields))
    return PROFILE_KNOBS + detector_knobs


DEFAULT_ABSTENTION_TEXT = (
    "I can't answer that reliably, so I won't guess. Please check a trusted source."
)


class Profile(_Strict):
    """How one route judges answers, and what it does with the judgement."""

    name: str  # the key under `profiles:` (filled in by the loader)
    description: str = ""
    extends: str | None = None  # the profile this one was built on (already merged in)
    h_star: Probability = 0.05  # target hallucination rate h*: gates aim at 1 − h* reliability
    skeletons: SkeletonKnobs = SkeletonKnobs()
    detectors: DetectorsConfig = DetectorsConfig()
    combine: CombineConfig = CombineConfig()
    action: Literal["abstain", "annotate", "shadow"] = "abstain"  # abstain = return the
    # abstention text; annotate = return the answer, the `hallgate` object says what the
    # decision would have been; shadow = return the answer, log the decision only
    streaming: Literal["buffer", "passthrough", "progressive"] = "buffer"  # buffer = hold
    # the stream until the decision; passthrough = stream at once, report the verdict in a
    # final chunk; progressive = release W tokens behind the upstream, cut when HALT's
    # prefix risk crosses the threshold (needs HALT; not with the semantic gate)
    progressive: ProgressiveKnobs = ProgressiveKnobs()  # knobs of `streaming: progressive`
    fail_mode: Literal["open", "closed"] = "closed"  # a detector error or missing logprobs:
    # open = ignore that detector, closed = count it as an abstention
    abstention_text: str = Field(DEFAULT_ABSTENTION_TEXT, min_length=1)
    allow_overrides: StrTuple = ()  # knobs a request may set with x-hallgate-* headers
    escalate_factual_to: str | None = None  # hard rule: prompts naming real entities with
    # dates or numbers are judged under this profile (code-creative -> strict-factual)
    output_constraint: Literal["none", "code_or_paragraph"] = "none"  # code_or_paragraph =
    # the gates' own samples are asked for one code block or one paragraph (fewer splits)
    tool_calls: Literal["pass", "judge", "abstain"] = "pass"  # an answer that calls tools:
    # pass = returned unjudged (a call states no claim; the answer written from its result
    # is judged); judge = the detectors judge what it has (a text part, logprobs);
    # abstain = refused like an abstention (routes that must not call tools). See
    # policies/answer_kind.py
    uncalibrated: Literal["abstain", "annotate", "model_agnostic"] = "annotate"  # a model
    # with no calibration bundle (or one lacking an enabled per-model detector):
    # annotate = judge as configured and flag it; model_agnostic = only detectors that need
    # no per-model fit decide (abstain when none is enabled); abstain = always abstain.
    # Flagged in every case (x-hallgate-calibration: none, the body, a metric, the log)
    target_risk: Probability | None = None  # α: each enabled detector whose threshold the
    # profile leaves unset takes the model bundle's Learn-then-Test threshold certified for
    # α at confidence 1 − target_delta; none certified for α: that detector abstains
    target_delta: Probability = 0.1  # δ of target_risk

    HIDDEN_KEYS: ClassVar[frozenset[str]] = frozenset({"name"})  # the loader fills it in

    @field_validator("allow_overrides")
    @classmethod
    def _overridable_only(cls, knobs: tuple[str, ...]) -> tuple[str, ...]:
        overridable = overridable_knobs()
        problems = [((i,), f"'{knob}' cannot be overridden per request (overridable: "
                     f"{', '.join(overridable)})")
                    for i, knob in enumerate(knobs) if knob not in overridable]
        if problems:
            raise LocatedError(problems)
        return knobs

    def context(self) -> ProfileContext:
        """The profile-wide knobs detectors read beside their own settings."""
        return ProfileContext(h_star=self.h_star, masking=self.skeletons.masking,
                              levels=tuple(self.skeletons.levels),
                              skip_words=self.skeletons.skip_words,
                              output_constraint=self.output_constraint)

    @model_validator(mode="after")
    def _learned_names_its_combiner(self) -> Profile:
        """learned mode names its combiner file (the loader reads and checks it)."""
        if self.combine.mode == "learned" and not self.combine.model:
            raise LocatedError([(("combine", "model"), "combine mode 'learned' needs `model`: "
                                 "the combiner JSON written by `hallgate calibrate "
                                 "--fit-combiner`")])
        return self

    @model_validator(mode="after")
    def _progressive_can_judge_prefixes(self) -> Profile:
        """progressive needs a detector that judges prefixes, and none that can judge only
        the whole answer."""
        if self.streaming != "progressive":
            return self
        problems = progressive_problems(self)
        if problems:
            raise LocatedError([(("streaming",), why) for why in problems])
        return self

    @model_validator(mode="after")
    def _runs_what_it_weighs(self) -> Profile:
        if self.combine.mode != "weighted":
            return self
        enabled = self.detectors.enabled()
        if enabled and sum(self.combine.weight(d) for d in enabled) <= 0:
            raise LocatedError([(("combine", "weights"),
                                 "the enabled detectors' weights sum to 0")])
        return self


def progressive_problems(profile: Profile) -> list[str]:
    """Why ``profile`` cannot stream progressively (empty when it can): it needs an enabled
    detector that judges prefixes, and every other enabled detector must judge either
    prefixes or the prompt alone (nothing could be released before a whole-answer judge)."""
    specs = [REGISTRY.get(name) for name in profile.detectors.enabled()]
    problems = []
    if not any(spec.judges_prefixes for spec in specs):
        judges = ", ".join(s.name for s in REGISTRY if s.judges_prefixes)
        problems.append(f"streaming 'progressive' judges prefixes; enable a detector that "
                        f"does ({judges}) or use 'buffer' / 'passthrough'")
    named = profile.progressive.detector
    if named is not None and named not in {s.name for s in specs if s.judges_prefixes}:
        problems.append(f"progressive.detector '{named}' must be an enabled detector that "
                        "judges prefixes")
    problems += [f"streaming 'progressive' cannot be combined with '{spec.name}': it judges "
                 f"only the whole answer, so nothing could be released early; use 'buffer' "
                 f"(or 'passthrough')" for spec in specs
                 if spec.needs.answer and not spec.judges_prefixes]
    return problems


# --------------------------------------------------------------------------- routes


class RouteMatch(_Strict):
    """Conditions of a route; the route matches when ANY of them holds."""

    path_prefix: StrTuple = ()  # request path starts with one of these, on a "/" boundary
    header: StrTuple = ()  # the x-hallgate-route header equals one of these (any case)
    model: StrTuple = ()  # the request's `model` matches one of these globs (gpt-4o*)
    key: StrTuple = ()  # the name of the gateway API key the request used

    @field_validator("path_prefix")
    @classmethod
    def _absolute(cls, prefixes: tuple[str, ...]) -> tuple[str, ...]:
        bad = [((i,), f"path prefix must start with '/', got '{p}'")
               for i, p in enumerate(prefixes) if not p.startswith("/")]
        if bad:
            raise LocatedError(bad)
        return tuple(p.rstrip("/") or "/" for p in prefixes)

    def is_empty(self) -> bool:
        return not (self.path_prefix or self.header or self.model or self.key)

    def matches(self, *, path: str | None, route_header: str | None, model: str | None,
                key_name: str | None) -> bool:
        if path is not None and any(_under(normalise_path(path), p.lower())
                                    for p in self.path_prefix):
            return True
        if route_header is not None and route_header.strip().lower() in (
                h.lower() for h in self.header):
            return True
        if model is not None and any(fnmatch.fnmatchcase(model, g) for g in self.model):
            return True
        return key_name is not None and key_name in self.key


def normalise_path(path: str) -> str:
    """Paths as routes compare them: duplicate slashes collapsed, lower case
    (``//STRICT/v1/...`` is ``/strict/v1/...``), no trailing slash."""
    return _SLASHES.sub("/", path).lower().rstrip("/") or "/"


def _under(path: str, prefix: str) -> bool:
    """``/strict`` covers ``/strict`` and ``/strict/v1/...`` but not ``/strictly``."""
    return prefix == "/" or path == prefix or path.startswith(prefix + "/")


class KeyPolicy(_Strict):
    """What one gateway API key may do (by the key's configured name)."""

    routes: StrTuple = ()  # routes the key may use; the first is its home route, used when
    # the request names none. Empty = any route
    allow_overrides: StrTuple | None = None  # knobs it may send with x-hallgate-* headers
    # (on top of the profile's own list); None = whatever the profile allows

    @field_validator("allow_overrides")
    @classmethod
    def _overridable_only(cls, knobs: tuple[str, ...] | None) -> tuple[str, ...] | None:
        overridable = overridable_knobs()
        problems = [((i,), f"'{knob}' cannot be overridden per request")
                    for i, knob in enumerate(knobs or ()) if knob not in overridable]
        if problems:
            raise LocatedError(problems)
        return knobs


class RouteStore(_Strict):
    """How much of a route's judged traffic the gateway keeps in its store of exchanges
    (the gateway's ``store`` settings say where and for how long)."""

    sample: UnitInterval = 0.0  # share of judged exchanges kept (1.0 = every one)


class Route(_Strict):
    name: str = Field(min_length=1)
    match: RouteMatch = RouteMatch()
    default: bool = False  # the fallback route: matches everything; exactly one, last
    profile: str  # a profile of this file or a built-in one
    store: RouteStore | None = None  # None: the gateway's own `store.sample`

    @model_validator(mode="after")
    def _default_xor_conditions(self) -> Route:
        if self.default and not self.match.is_empty():
            raise LocatedError([(("match",), "the default route matches every request; "
                                 "remove its match conditions")])
        if not self.default and self.match.is_empty():
            raise LocatedError([(("match",), "a route needs at least one condition "
                                 "(path_prefix, header, model, key) or default: true")])
        return self


# --------------------------------------------------------------------------- policy


class Policy(_Strict):
    """A whole policy file after ``extends`` has been resolved."""

    version: Literal[1] = 1
    routes: tuple[Route, ...]  # first match wins; the last one is the default
    profiles: dict[str, Profile] = {}  # the file's profiles plus the built-ins they reach
    keys: dict[str, KeyPolicy] = {}  # per gateway API key name: routes and overrides allowed
    source: str | None = None  # the file it came from (set by the loader)
    _combiners: dict[str, Any] = PrivateAttr(default_factory=dict)  # combine.model ->
    # the LearnedCombiner the loader read (relative to the policy file)

    def combiner(self, profile: Profile):
        """The loaded :class:`detectors.combiner.LearnedCombiner` a profile names, or None."""
        return self._combiners.get(profile.combine.model) if profile.combine.model else None

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> Policy:
        context = info.context or {}
        available = context.get("available_detectors")
        known = sorted({*self.profiles, *context.get("profile_names", ())})
        problems = _route_problems(self.routes, self.profiles, known)
        problems += _key_problems(self.keys, [r.name for r in self.routes])
        problems += _profile_problems(self.profiles, available)
        if problems:
            raise LocatedError(problems)
        return self

    def match(self, *, path: str | None = None, route_header: str | None = None,
              model: str | None = None, key_name: str | None = None) -> tuple[Route, Profile]:
        """The first route whose conditions hold (the default route otherwise)."""
        for route in self.routes:
            if route.default or route.match.matches(
                    path=path, route_header=route_header, model=model, key_name=key_name):
                return route, self.profiles[route.profile]
        raise AssertionError("validated policies end with a default route")

    def route(self, name: str) -> Route:
        return next(r for r in self.routes if r.name == name)


def _route_problems(routes: Iterable[Route], profiles: dict[str, Profile], known: list[str],
                    ) -> list[tuple[tuple[str | int, ...], str]]:
    routes = list(routes)
    problems: list[tuple[tuple[str | int, ...], str]] = []
    seen: set[str] = set()
    for i, route in enumerate(routes):
        if route.name in seen:
            problems.append((("routes", i, "name"), f"duplicate route name '{route.name}'"))
        seen.add(route.name)
        if route.profile not in profiles:
            problems.append((("routes", i, "profile"), f"unknown profile '{route.profile}' "
                             f"(known: {', '.join(known)})"))
    defaults = [i for i, r in enumerate(routes) if r.default]
    if not defaults:
        problems.append((("routes",), "a default route is required "
                         "(a last route with `default: true`)"))
    elif len(defaults) > 1:
        problems.append((("routes", defaults[1], "default"), "only one route may be default"))
    elif defaults[0] != len(routes) - 1:
        problems.append((("routes", defaults[0], "default"), "the default route must be last: "
                         "routes after it could never match"))
    return problems


def _key_problems(keys: dict[str, KeyPolicy], routes: list[str],
                  ) -> list[tuple[tuple[str | int, ...], str]]:
    return [(("keys", name, "routes", i), f"unknown route '{route}' (routes: "
             f"{', '.join(routes)})")
            for name, key in keys.items() for i, route in enumerate(key.routes)
            if route not in routes]


def _profile_problems(profiles: dict[str, Profile], available: Iterable[str] | None,
                      ) -> list[tuple[tuple[str | int, ...], str]]:
    problems: list[tuple[tuple[str | int, ...], str]] = []
    for key, profile in profiles.items():
        if profile.name != key:
            problems.append((("profiles", key, "name"),
                             f"a profile's name is its key '{key}', got '{profile.name}'"))
        target = profile.escalate_factual_to
        if target is not None and target not in profiles:
            problems.append((("profiles", key, "escalate_factual_to"),
                             f"unknown profile '{target}'"))
        elif target is not None and profiles[target].escalate_factual_to is not None:
            problems.append((("profiles", key, "escalate_factual_to"),
                             f"'{target}' escalates further; the target must judge itself"))
        elif target is not None and profile.streaming == "progressive":
            problems += [(("profiles", key, "escalate_factual_to"), f"'{target}' judges "
                          f"this route's progressive streams: {why}")
                         for why in progressive_problems(profiles[target])]
        if available is not None:
            for det in profile.detectors.enabled():
                if det not in available:
                    problems.append((("profiles", key, "detectors", det, "enabled"),
                                     f"detector '{det}' is enabled but this gateway does not "
                                     f"offer it (available: "
                                     f"{', '.join(sorted(available)) or 'none'})"))
    return problems
