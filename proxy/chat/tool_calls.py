"""Answers that are not text claims: tool calls and structured outputs.

A tool call (``content: null``, ``tool_calls: [...]``, ``finish_reason: "tool_calls"``)
asks the client to run something; it states nothing about the world. The profile's
``tool_calls`` setting says what the gates do with one (policies/answer_kind.py); this
module keeps the response side honest whatever they decided:

    settle(outcome, answers, request)
        - the semantic gate's chosen-answer replacement never lands on an answer with
          tool calls (the calls would be lost, or text grafted beside them);
        - on a structured-output request (``response_format`` json_object / json_schema)
          a replacement that does not parse, or breaks the schema, is withheld;
        - an abstention on a structured-output request is a ``refusal`` with ``content``
          null, which is what the SDK's ``parse`` helpers expect, never invalid JSON.

    ToolCallAccumulator: rebuilds complete tool calls from streamed ``delta.tool_calls``
    pieces (the first piece of a call carries its id and name, later ones append to the
    arguments string, parallel calls are told apart by ``index``).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from proxy.chat.gate_session import Answer, GateOutcome

STRUCTURED_FORMATS = ("json_object", "json_schema")


class ToolCallAccumulator:
    """The tool calls of one choice, assembled from stream deltas."""

    def __init__(self) -> None:
        self._calls: dict[int, dict] = {}

    def add(self, pieces: list[dict]) -> None:
        for piece in pieces:
            call = self._calls.setdefault(piece.get("index", len(self._calls)), {
                "id": None, "type": "function", "function": {"name": "", "arguments": ""}})
            if piece.get("id"):
                call["id"] = piece["id"]
            if piece.get("type"):
                call["type"] = piece["type"]
            function = piece.get("function") or {}
            if function.get("name"):
                call["function"]["name"] += function["name"]
            if function.get("arguments"):
                call["function"]["arguments"] += function["arguments"]

    def calls(self) -> list[dict] | None:
        """The calls in index order; None when the choice made none."""
        return [self._calls[i] for i in sorted(self._calls)] or None


def structured_format(response_format: dict | None) -> str | None:
    """``json_object`` or ``json_schema`` when the request asks for a structured output."""
    kind = (response_format or {}).get("type")
    return kind if kind in STRUCTURED_FORMATS else None


def fits_format(text: str, response_format: dict | None) -> bool:
    """Whether ``text`` is a valid answer under ``response_format``: any text for plain
    output; a JSON object for json_object; JSON valid against the schema for json_schema."""
    kind = structured_format(response_format)
    if kind is None:
        return True
    try:
        value = json.loads(text)
    except ValueError:
        return False
    if kind == "json_object":
        return isinstance(value, dict)
    schema = ((response_format or {}).get("json_schema") or {}).get("schema")
    if not schema:
        return isinstance(value, dict)
    return _valid(value, schema)


def _valid(value: Any, schema: dict) -> bool:
    import jsonschema  # imported on first use: only structured replacements need it

    try:
        jsonschema.validate(value, schema)
    except jsonschema.ValidationError:
        return False
    except jsonschema.SchemaError:  # a schema the validator cannot read: do not trust it
        return False
    return True


def settle(outcome: GateOutcome, answers: list[Answer],
           response_format: dict | None) -> GateOutcome:
    """``outcome`` as it may be applied to these answers (see the module docstring)."""
    if outcome.abstain:
        if structured_format(response_format) and not outcome.refusal_only:
            return dataclasses.replace(outcome, refusal_only=True)
        return outcome
    if outcome.replacement is None:
        return outcome
    first = answers[0] if answers else None
    if first is not None and first.tool_calls:
        return _withheld(outcome, "the answer calls tools")
    if not fits_format(outcome.replacement, response_format):
        return _withheld(outcome, "the chosen answer does not fit the response_format")
    return outcome


def _withheld(outcome: GateOutcome, why: str) -> GateOutcome:
    """The outcome without its replacement; the `hallgate` object says why."""
    metadata = outcome.metadata
    if metadata is not None:
        metadata = {**metadata, "replacement": f"withheld: {why}"}
    return dataclasses.replace(outcome, replacement=None, metadata=metadata)
