"""pydantic errors as one-sentence reasons, with the allowed keys for unknown ones.

    reason(err, loc, root=Policy)  # "unknown key 'thresh' (did you mean 'threshold'? ...)"

``root`` is the model the error locations are relative to: the loader passes
:class:`policies.schema.Policy`, a detector's settings are checked against their own model.
"""

from __future__ import annotations

import difflib
from typing import Any, get_args, get_origin

from pydantic import BaseModel

Loc = tuple[str | int, ...]


def reason(err: dict, loc: Loc, root: type[BaseModel]) -> str:
    """A pydantic error as one sentence."""
    kind, msg = err["type"], err["msg"]
    if kind == "extra_forbidden":
        return unknown_key_reason(loc, root)
    if kind == "missing":
        return f"missing required key '{loc[-1]}'"
    msg = msg.removeprefix("Value error, ")
    value = err.get("input")
    if isinstance(value, str | int | float | bool) or value is None:
        msg += f" (got {value!r})"
    return msg


def unknown_key_reason(loc: Loc, root: type[BaseModel]) -> str:
    key = str(loc[-1])
    allowed = fields_at(loc[:-1], root)
    if not allowed:
        return f"unknown key '{key}'"
    hint = difflib.get_close_matches(key, allowed, n=1)
    guess = f"did you mean '{hint[0]}'? " if hint else ""
    return f"unknown key '{key}' ({guess}allowed: {', '.join(allowed)})"


def fields_at(loc: Loc, root: type[BaseModel]) -> list[str] | None:
    """The keys the model at ``loc`` (below ``root``) accepts, or None if not a model."""
    model: Any = root
    parts = list(loc)
    while parts:
        part = parts.pop(0)
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return None
        field = model.model_fields.get(str(part))
        if field is None:
            return None
        model = field.annotation
        while get_origin(model) in (tuple, list, dict) and parts:
            args = [a for a in get_args(model) if a is not Ellipsis]
            model = args[-1]
            parts.pop(0)  # the index or the mapping key
    if isinstance(model, type) and issubclass(model, BaseModel):
        hidden = getattr(model, "HIDDEN_KEYS", frozenset())  # keys the loader fills in
        return [name for name in model.model_fields if name not in hidden]
    return None
