"""YAML with line numbers: parse a file once, keep where every key sits.

PyYAML's ``compose`` gives a node tree with marks; we build the Python data from that same
tree and a map ``path -> line`` (1-based) for every mapping key and sequence item, so
that a validation error at ``("profiles", "p", "detectors", "halt", "thresh")`` can be
shown as ``policy.yaml:14``. Duplicate keys, which PyYAML silently collapses, are errors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class PolicyIssue:
    """One problem in a policy file: where it is and why it is wrong."""

    file: str
    line: int | None  # 1-based; None when the problem has no place in the file
    key: str  # dotted path such as ``profiles.p.detectors.halt.thresh`` ("" = whole file)
    reason: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        return f"{where}: {self.key}: {self.reason}" if self.key else f"{where}: {self.reason}"


class PolicyError(ValueError):
    """A policy file (or a built-in profile) could not be loaded; ``issues`` say why."""

    def __init__(self, issues: list[PolicyIssue]):
        self.issues = tuple(issues)
        super().__init__("\n".join(map(str, self.issues)))


@dataclass
class YamlSource:
    """Data of one YAML file plus the line of every key path in it."""

    file: str
    data: Any
    lines: dict[Loc, int] = field(default_factory=dict)

    def line_of(self, loc: Loc) -> tuple[int | None, int]:
        """The line of ``loc`` or of its longest prefix found, and that prefix's length."""
        for n in range(len(loc), -1, -1):
            if loc[:n] in self.lines:
                return self.lines[loc[:n]], n
        return None, 0


def dotted(loc: Loc) -> str:
    """``("routes", 2, "match")`` -> ``routes[2].match``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def read_yaml(path: str | Path) -> YamlSource:
    """Parse ``path``; raise :class:`PolicyError` with a line for syntax errors."""
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError([PolicyIssue(file, None, "", f"cannot read: {exc.strerror}")]) from exc
    return parse_yaml(text, file)


def parse_yaml(text: str, file: str = "<string>") -> YamlSource:
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        reason = " ".join(p for p in (exc.context, exc.problem) if p) or "invalid YAML"
        raise PolicyError([PolicyIssue(file, line, "", f"YAML syntax: {reason}")]) from exc
    except yaml.YAMLError as exc:
        raise PolicyError([PolicyIssue(file, None, "", f"YAML: {exc}")]) from exc
    finally:
        loader.dispose()
    source = YamlSource(file, data)
    if node is not None:
        source.lines[()] = node.start_mark.line + 1
        issues: list[PolicyIssue] = []
        _index(node, (), source.lines, issues, file)
        if issues:
            raise PolicyError(issues)
    return source


def _index(node: yaml.Node, loc: Loc, lines: dict[Loc, int], issues: list[PolicyIssue],
           file: str) -> None:
    """Record the line of every key and item below ``node``; flag duplicate keys."""
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node)
            here = (*loc, key)
            line = key_node.start_mark.line + 1
            if here in lines:
                issues.append(PolicyIssue(file, line, dotted(here),
                                          f"duplicate key (first at line {lines[here]})"))
                continue
            lines[here] = line
            _index(value_node, here, lines, issues, file)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines[(*loc, i)] = item.start_mark.line + 1
            _index(item, (*loc, i), lines, issues, file)
