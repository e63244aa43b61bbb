"""Load a policy file: YAML -> resolve ``extends`` -> pydantic -> :class:`Policy`.

Every failure is a :class:`PolicyError` whose issues name the file, the line, the key and
the reason, e.g.::

    policy.yaml:14: profiles.mine.detectors.halt.thresh: unknown key 'thresh'
        (did you mean 'threshold'? allowed: enabled, threshold)

``extends`` merges mappings key by key (lists and scalars of the child replace the
parent's). A profile may extend another profile of the same file or a built-in one from
``policies/profiles/``; a profile that extends its own name (``strict-factual: {extends:
strict-factual, ...}``) customises the built-in of that name. Routes may name built-in
profiles directly; only the built-ins a file reaches are loaded into its Policy.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from pydantic import ValidationError

from detectors.registry import REGISTRY
from policies.schema import LocatedError, Policy
from policies.validation_errors import reason
from policies.yaml_source import (
    Loc,
    PolicyError,
    PolicyIssue,
    YamlSource,
    dotted,
    parse_yaml,
    read_yaml,
)

BUILTIN_DIR = Path(__file__).resolve().parent / "profiles"
EXAMPLES_DIR = Path(__file__).resolve().parent / "examples"


@dataclass(frozen=True)
class _RawProfile:
    """A profile mapping as written, and where it sits in which file."""

    name: str
    data: dict
    source: YamlSource
    prefix: Loc  # ("profiles", name) in a policy file, () in a built-in profile file


def builtin_profile_names() -> tuple[str, ...]:
    return tuple(sorted(p.stem for p in BUILTIN_DIR.glob("*.yaml")))


@functools.lru_cache(maxsize=1)
def _builtin_raw() -> dict[str, _RawProfile]:
    """The built-in profiles as written (package data: read once per process)."""
    out: dict[str, _RawProfile] = {}
    for path in sorted(BUILTIN_DIR.glob("*.yaml")):
        source = read_yaml(path)
        if not isinstance(source.data, dict):
            raise PolicyError([PolicyIssue(str(path), 1, "", "a profile must be a mapping")])
        out[path.stem] = _RawProfile(path.stem, source.data, source, ())
    return out


def load_policy(path: str | Path, *, available_detectors: Iterable[str] | None = None) -> Policy:
    """Read and validate a policy file.

    ``available_detectors``: the detectors this gateway can run (default: all known);
    a profile that enables another one is rejected. Combiner files (``combine.model``)
    are read here, relative to the policy file, once.
    """
    return policy_from_source(read_yaml(path), available_detectors=available_detectors)


def load_policy_text(text: str, file: str = "<string>", *,
                     available_detectors: Iterable[str] | None = None) -> Policy:
    return policy_from_source(parse_yaml(text, file), available_detectors=available_detectors)


def policy_from_source(source: YamlSource, *,
                       available_detectors: Iterable[str] | None = None) -> Policy:
    data = source.data
    if not isinstance(data, dict):
        raise PolicyError([PolicyIssue(source.file, source.line_of(())[0], "",
                                       "a policy file must be a mapping with routes and "
                                       "profiles")])
    resolver = _Resolver(source)
    profiles = resolver.resolve_reachable(data)
    available = set(REGISTRY.names() if available_detectors is None else available_detectors)
    try:
        context = {"available_detectors": available,
                   "profile_names": {*resolver.own, *builtin_profile_names()}}
        policy = Policy.model_validate({**data, "profiles": profiles}, context=context)
    except ValidationError as exc:
        raise PolicyError(resolver.issues_from(exc)) from None
    policy._combiners.update(_load_combiners(policy, resolver, Path(source.file).parent))
    return policy


def _load_combiners(policy: Policy, resolver: _Resolver, base: Path) -> dict:
    """Every combiner file a profile names, read once, relative to ``base``; a learned
    profile's combiner reads only detectors the profile enables."""
    from detectors.combiner import LearnedCombiner

    loaded: dict = {}
    issues: list[PolicyIssue] = []
    for name, profile in policy.profiles.items():
        ref = profile.combine.model
        if ref is None:
            continue
        (file, line, key), _ = resolver.locate(("profiles", name, "combine", "model"))
        path = base / ref
        if ref not in loaded:
            try:
                loaded[ref] = LearnedCombiner.load(path)
            except FileNotFoundError:
                issues.append(PolicyIssue(file, line, key, f"combiner file {path} does not "
                                          "exist"))
                loaded[ref] = None
            except (ValueError, TypeError, KeyError) as exc:
                issues.append(PolicyIssue(file, line, key, f"{path} is not a combiner: {exc}"))
                loaded[ref] = None
        combiner = loaded[ref]
        if combiner is None or profile.combine.mode != "learned":
            continue
        missing = sorted(combiner.detectors() - set(profile.detectors.enabled()))
        if missing:
            issues.append(PolicyIssue(file, line, key, f"the combiner reads "
                                      f"{', '.join(missing)}, which this profile does not "
                                      "enable"))
    if issues:
        raise PolicyError(list(dict.fromkeys(issues)))
    return loaded


class _Resolver:
    """Merges ``extends`` chains and maps error locations back to file lines."""

    def __init__(self, source: YamlSource):
        self.source = source
        self.own = self._own_profiles()
        self.chains: dict[str, list[_RawProfile]] = {}

    def _own_profiles(self) -> dict[str, _RawProfile]:
        profiles = self.source.data.get("profiles") or {}
        if not isinstance(profiles, dict):
            self._fail(("profiles",), "must be a mapping of profile name -> profile")
        out = {}
        for name, body in profiles.items():
            if not isinstance(body, dict):
                self._fail(("profiles", name), "a profile must be a mapping")
            out[str(name)] = _RawProfile(str(name), body, self.source, ("profiles", name))
        return out

    def _fail(self, loc: Loc, reason: str) -> NoReturn:
        raise PolicyError([PolicyIssue(self.source.file, self.source.line_of(loc)[0],
                                       dotted(loc), reason)])

    def _lookup(self, name: str, referrer: str | None) -> _RawProfile | None:
        """A profile of this file, else a built-in. A self-reference means the built-in."""
        if name in self.own and name != referrer:
            return self.own[name]
        return _builtin_raw().get(name)

    def chain(self, name: str) -> list[_RawProfile]:
        """``[profile, parent, grandparent, ...]``; raises on unknown names and cycles."""
        if name not in self.chains:
            first = self._lookup(name, None)
            chain = [first] if first else []
            while chain and (parent := chain[-1].data.get("extends")) is not None:
                raw = self._lookup(str(parent), chain[-1].name)
                where = (*chain[-1].prefix, "extends")
                if raw is None:
                    self._fail_at(chain[-1], where, f"unknown profile '{parent}' (known: "
                                  f"{', '.join(sorted({*self.own, *_builtin_raw()}))})")
                if any(r is raw for r in chain):
                    self._fail_at(chain[-1], where, "extends cycle: " + " -> ".join(
                        [r.name for r in chain] + [raw.name]))
                chain.append(raw)
            self.chains[name] = chain
        return self.chains[name]

    def _fail_at(self, raw: _RawProfile, loc: Loc, reason: str) -> NoReturn:
        raise PolicyError([PolicyIssue(raw.source.file, raw.source.line_of(loc)[0],
                                       dotted(loc), reason)])

    def merged(self, name: str) -> dict:
        chain = self.chain(name)
        data: dict = {}
        for raw in reversed(chain):
            data = _deep_merge(data, raw.data)
        data["extends"] = chain[1].name if len(chain) > 1 else None
        data.setdefault("name", name)
        return data

    def resolve_reachable(self, data: dict) -> dict[str, dict]:
        """Merged profiles: the file's own plus the built-ins its routes or rules name."""
        todo = list(self.own)
        routes = data.get("routes")
        if isinstance(routes, list):
            todo += [r["profile"] for r in routes
                     if isinstance(r, dict) and isinstance(r.get("profile"), str)]
        out: dict[str, dict] = {}
        while todo:
            name = todo.pop(0)
            if name in out or self._lookup(name, None) is None:
                continue  # unknown names are reported by the schema, with their line
            out[name] = self.merged(name)
            target = out[name].get("escalate_factual_to")
            if isinstance(target, str):
                todo.append(target)
        return out

    # ---------------------------------------------------------------- error mapping

    def issues_from(self, exc: ValidationError) -> list[PolicyIssue]:
        """One issue per place and reason; a problem that several profiles inherit from
        one written value is reported once, at that value, naming the heirs."""
        heirs: dict[tuple[str, int | None, str, str], list[str]] = {}
        for err in exc.errors():
            loc = tuple(err["loc"])
            located = (err.get("ctx") or {}).get("error")
            problems = (located.problems if isinstance(located, LocatedError)
                        else [((), reason(err, loc, Policy))])
            for sub, why in problems:
                (file, line, key), heir = self.locate(loc + tuple(sub))
                names = heirs.setdefault((file, line, key, why), [])
                if heir is not None and heir not in names:
                    names.append(heir)
        issues = [PolicyIssue(file, line, key, why + self._suffix(file, names))
                  for (file, line, key, why), names in heirs.items()]
        return sorted(issues, key=lambda i: (i.file != self.source.file, i.line or 0))

    def _suffix(self, file: str, heirs: list[str]) -> str:
        builtin = f"built-in profile '{Path(file).stem}'" if file != self.source.file else ""
        used = f"inherited by {', '.join(heirs)}" if heirs else ""
        return f" ({'; '.join(p for p in (builtin, used) if p)})" if builtin or used else ""

    def locate(self, loc: Loc) -> tuple[tuple[str, int | None, str], str | None]:
        """``(file, line, key)`` where ``loc`` was written, and the profile that inherits
        it from there (None when the value is the profile's own)."""
        if len(loc) >= 2 and loc[0] == "profiles" and str(loc[1]) in self.chains:
            name, rest = str(loc[1]), loc[2:]
            raw = self._writer(name, rest)
            where = (*raw.prefix, *rest)
            heir = name if raw is not self.chains[name][0] else None
            return (raw.source.file, raw.source.line_of(where)[0], dotted(where)), heir
        return (self.source.file, self.source.line_of(loc)[0], dotted(loc)), None

    def _writer(self, name: str, rest: Loc) -> _RawProfile:
        """The profile in ``name``'s chain that wrote the deepest part of ``rest``."""
        best: tuple[int, _RawProfile] | None = None
        for raw in self.chains[name]:
            _, n = raw.source.line_of((*raw.prefix, *rest))
            depth = n - len(raw.prefix)
            if depth >= 0 and (best is None or depth > best[0]):
                best = (depth, raw)
        return best[1] if best else self.chains[name][0]


def _deep_merge(base: dict, override: dict) -> dict:
    """Mappings merge key by key; anything else in ``override`` replaces ``base``."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out
