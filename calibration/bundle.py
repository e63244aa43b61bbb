"""A calibration bundle: one directory holding everything fitted to one upstream model.

    calibration/bundles/local/smollm2-135m-instruct/
        bundle.json     the manifest below (format version, model identity, thresholds,
                        operating points, quality, cost, histograms, data manifest)
        halt.pt         HALT's weights for this model (absent when `halt` is null)
        halt.json       ... and their checkpoint metadata (detectors/halt/checkpoint.py)
        combiner.json   the learned combiner (detectors/combiner.py), when fitted

    bundle = load_bundle(path, names={"local/smollm2-135m-instruct"})
    bundle.name                      # "smollm2-135m-instruct@3f2a9c1d" (header, body)
    bundle.answer_threshold("halt")  # the model's own threshold, or None
    bundle.halt                      # a HaltScorer on the bundle's weights, or None

A bundle is refused at load (:class:`BundleError`, saying which file and what) when it is
missing, partial (a file it names is absent or differs from its SHA-256), made for another
model, or of a format version this code does not read.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

FORMAT_VERSION = 1  # bumped on any change a reader of the previous version would misread
MANIFEST = "bundle.json"


class BundleError(ValueError):
    """A bundle that cannot be used, with the file and the reason."""

    def __init__(self, path: str | Path, problem: str):
        super().__init__(f"{path}: {problem}")
        self.path, self.problem = str(path), problem


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelIdentity(_Strict):
    name: str = Field(min_length=1)  # the model name clients send (`model`)
    aliases: tuple[str, ...] = ()  # other names of the same weights (the upstream's own)
    description: str = ""  # quantisation, serving stack


class FileRef(_Strict):
    file: str = Field(min_length=1)  # relative to the bundle directory
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class HaltWeights(_Strict):
    weights: FileRef  # the state dict (NAME.pt)
    meta: FileRef  # the checkpoint JSON beside it (NAME.json)


class Quality(_Strict):
    """How well a score ranks this model's answers, on held-out items."""

    items: int = Field(ge=0)
    hallucinated: int = Field(ge=0)
    pooled_auroc: float | None = None
    pooled_ci: tuple[float, float] | None = None  # 95% percentile bootstrap
    per_source: dict[str, float] = {}  # AUROC within each source with both classes
    mean_of_sources: float | None = None  # mean of per_source (DESIGN.md, judging honestly)
    mean_of_sources_ci: tuple[float, float] | None = None  # bootstrap within source
    prr: float | None = None  # prediction-rejection ratio


class Cost(_Strict):
    """Mean cost of the detector per judged request, as recorded."""

    upstream_calls: float | None = None
    completion_tokens: float | None = None
    ms: float | None = None


class Histogram(_Strict):
    """The calibration split's score distribution (the reference for drift)."""

    edges: tuple[float, ...]  # increasing, len(counts) + 1
    counts: tuple[int, ...]

    @model_validator(mode="after")
    def _shape(self) -> Histogram:
        if len(self.edges) != len(self.counts) + 1:
            raise ValueError("edges must have one more entry than counts")
        if any(b <= a for a, b in zip(self.edges, self.edges[1:], strict=False)):
            raise ValueError("edges must increase")
        return self


class DetectorCalibration(_Strict):
    answer_threshold: float | None = Field(None, ge=0.0, le=1.0)  # risk >= t abstains
    prefix_threshold: float | None = Field(None, ge=0.0, le=1.0)  # progressive prefixes
    threshold_rule: str = ""  # how the thresholds were chosen
    quality: Quality | None = None
    cost: Cost | None = None
    histogram: Histogram | None = None


class OperatingPoint(_Strict):
    """A Learn-then-Test certified threshold of one detector for a target risk α at
    confidence 1 − δ (policies/calibration.py), chosen on the calibration split."""

    alpha: float = Field(gt=0.0, lt=1.0)
    delta: float = Field(gt=0.0, lt=1.0)
    detector: str
    threshold: float | None  # None: no threshold meets α at 1 − δ on this data
    coverage: float = Field(ge=0.0, le=1.0)  # fraction of calibration items answered
    answered: int = Field(ge=0)
    errors: int = Field(ge=0)
    upper_bound: float | None = None  # Clopper-Pearson bound of the answered error rate


class CombinerSet(_Strict):
    """The learned combiner judged as one detector set: the detectors it reads, their
    summed cost, its held-out quality and its certified operating points (detector
    ``learned_combiner``, on out-of-fold risks of the calibration half)."""

    detectors: tuple[str, ...]
    cost: Cost | None = None  # Σ of its detectors' costs; None: one was not recorded
    quality: Quality | None = None
    operating_points: tuple[OperatingPoint, ...] = ()


class Selection(_Strict):
    """The cheapest detector set whose certified bound meets α at 1 − δ
    (calibration/selection.py states the rule)."""

    alpha: float = Field(gt=0.0, lt=1.0)
    delta: float = Field(gt=0.0, lt=1.0)
    detectors: tuple[str, ...] = ()  # empty: no set meets α on this data
    combine: Literal["single", "learned"] = "single"
    threshold: float | None = None
    coverage: float = Field(0.0, ge=0.0, le=1.0)
    upper_bound: float | None = None
    upstream_calls: float | None = None  # per request, summed over the set
    completion_tokens: float | None = None
    rule: str = ""


class DataManifest(_Strict):
    results: str  # the recording's results file, relative to the repository
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    items: int = Field(ge=0)  # items used (after exclusions)
    hallucinated: int = Field(ge=0)
    sources: dict[str, int]
    excluded: str = ""  # what was left out and why (HALT's own training items)
    calibration_items: int = Field(ge=0)  # thresholds, combiner, operating points
    held_out_items: int = Field(ge=0)  # quality
    seed: int = 0


class BundleManifest(_Strict):
    format_version: int
    model: ModelIdentity
    command: str  # the command that built it
    halt: HaltWeights | None  # None: HALT is not calibrated for this model
    detectors: dict[str, DetectorCalibration]
    combiner: FileRef | None = None
    operating_points: tuple[OperatingPoint, ...] = ()
    combiner_set: CombinerSet | None = None  # absent in bundles built without it
    selections: tuple[Selection, ...] = ()  # the cheapest certified set per (α, δ)
    data: DataManifest

    def files(self) -> list[FileRef]:
        refs = [self.halt.weights, self.halt.meta] if self.halt else []
        return refs + ([self.combiner] if self.combiner else [])


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _validation_problem(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        lines.append(f"key '{key}': {err['msg']}")
    return "; ".join(lines)


@dataclass(frozen=True)
class Bundle:
    path: Path
    manifest: BundleManifest
    digest: str  # SHA-256 of bundle.json (which pins every other file by its SHA-256)

    @cached_property
    def name(self) -> str:
        """What responses, logs and metrics call it: directory name @ digest prefix. A
        binding through a symbolic link (``current -> smollm2-v2``) names the directory
        it points to, so each version keeps its own name."""
        return f"{self.path.resolve().name}@{self.digest[:8]}"

    @property
    def model(self) -> str:
        return self.manifest.model.name

    def answer_threshold(self, detector: str) -> float | None:
        found = self.manifest.detectors.get(detector)
        return found.answer_threshold if found else None

    def prefix_threshold(self, detector: str) -> float | None:
        found = self.manifest.detectors.get(detector)
        if found is None:
            return None
        return found.prefix_threshold if found.prefix_threshold is not None \
            else found.answer_threshold

    def calibrates(self, detector: str) -> bool:
        """The bundle holds this model's fit of ``detector`` (HALT: its weights too)."""
        if detector == "halt" and self.manifest.halt is None:
            return False
        return self.answer_threshold(detector) is not None

    def operating_point(self, detector: str, alpha: float, delta: float,
                        ) -> OperatingPoint | None:
        for point in self.manifest.operating_points:
            if (point.detector == detector and abs(point.alpha - alpha) < 1e-9
                    and abs(point.delta - delta) < 1e-9):
                return point
        return None

    def selection(self, alpha: float, delta: float) -> Selection | None:
        for chosen in self.manifest.selections:
            if abs(chosen.alpha - alpha) < 1e-9 and abs(chosen.delta - delta) < 1e-9:
                return chosen
        return None

    @cached_property
    def halt(self) -> Any:
        """A HaltScorer on the bundle's weights (loaded on first use), or None."""
        if self.manifest.halt is None:
            return None
        from detectors.halt.scorer import HaltScorer

        stem = self.path / Path(self.manifest.halt.weights.file).with_suffix("")
        return HaltScorer.load(stem, prefix_threshold=self.prefix_threshold("halt"))

    @cached_property
    def plugins(self) -> dict[str, Any]:
        """The detector plug-ins the bundle brings (detector name -> DetectorPlugin)."""
        if self.halt is None:
            return {}
        from detectors.halt.detector import HaltPlugin

        return {"halt": HaltPlugin(self.halt)}

    @cached_property
    def combiner(self) -> Any:
        if self.manifest.combiner is None:
            return None
        from detectors.combiner import LearnedCombiner

        return LearnedCombiner.load(self.path / self.manifest.combiner.file)


def _read_manifest(path: Path) -> tuple[BundleManifest, bytes]:
    """The directory's bundle.json, parsed, version-checked and validated."""
    manifest_path = path / MANIFEST
    if not path.is_dir():
        raise BundleError(path, "no such bundle directory")
    if not manifest_path.is_file():
        raise BundleError(path, f"no {MANIFEST} in the bundle directory")
    raw = manifest_path.read_bytes()
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise BundleError(manifest_path, f"not JSON (line {exc.lineno}: {exc.msg})") from None
    if not isinstance(data, dict):
        raise BundleError(manifest_path, "the top level must be an object")
    version = data.get("format_version")
    if version != FORMAT_VERSION:
        raise BundleError(manifest_path, f"format_version {version!r}: this hallgate reads "
                          f"bundle format {FORMAT_VERSION} (rebuild it with this version)")
    try:
        return BundleManifest.model_validate(data), raw
    except ValidationError as exc:
        raise BundleError(manifest_path, _validation_problem(exc)) from None


def load_bundle(path: str | Path, names: Iterable[str] | None = None,
                load_weights: bool = True) -> Bundle:
    """The bundle in directory ``path``, checked: the format version, the schema, that
    ``names`` (the names the gateway serves the model under) include the bundle's model or
    one of its aliases, and that every file it names is there with its SHA-256. With
    ``load_weights``, HALT's weights and the combiner are loaded too, so that a bundle
    whose files do not load is refused here rather than on a request."""
    path = Path(path)
    manifest, raw = _read_manifest(path)
    identity = {manifest.model.name, *manifest.model.aliases}
    if names is not None and not identity & set(names):
        raise BundleError(path / MANIFEST, f"made for model '{manifest.model.name}', "
                          f"bound to {sorted(set(names))}")
    for ref in manifest.files():
        file = path / ref.file
        if not file.is_file():
            raise BundleError(path, f"partial: {ref.file} is missing")
        if sha256_file(file) != ref.sha256:
            raise BundleError(path, f"partial: {ref.file} differs from its SHA-256 in "
                              f"{MANIFEST}")
    bundle = Bundle(path, manifest, hashlib.sha256(raw).hexdigest())
    if load_weights:
        try:
            _ = bundle.halt, bundle.combiner
        except (OSError, ValueError, KeyError, RuntimeError, TypeError) as exc:
            raise BundleError(path, f"its weights do not load: {exc}") from None
    return bundle
