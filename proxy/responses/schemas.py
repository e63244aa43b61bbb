"""The Responses API request, validated at the edge, and its translation to chat.

Like the chat schemas: pydantic, strict types, fields in OpenAI-docs order. Unlike chat,
fields outside the supported scope are not forwarded: the translation to Chat Completions
has no place for them (hosted tools, background mode, stored conversations), so a
request that sets one gets a 400 naming the field instead of a silently different answer.
Function tools, ``function_call`` / ``function_call_output`` input items and JSON text
formats are translated (proxy/responses/tools.py).

    ResponsesRequest  --to_chat()-->  ChatCompletionRequest  (logprobs, usage on)
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from proxy.chat.schemas import ChatCompletionRequest
from proxy.errors import InvalidRequest, validation_error
from proxy.responses import tools as fn

LOGPROBS_INCLUDE = "message.output_text.logprobs"
# Accepted and ignored: they change nothing about one stateless text answer.
IGNORED_FIELDS = frozenset({"store", "truncation", "service_tier",
                            "prompt_cache_key", "prompt_cache_retention", "stream_options"})
TEXT_PART_TYPES = frozenset({"input_text", "output_text", "text"})
ROLE_TO_CHAT = {"system": "system", "developer": "system", "user": "user",
                "assistant": "assistant"}


def _unset(value: Any) -> bool:
    """A value that asks for nothing: clients and SDKs often send these as defaults."""
    return value is None or value is False or value == [] or value == {} or value == "none"


class InputMessage(BaseModel):
    """One message item of ``input`` (``type`` is ``message`` or left out)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    type: Literal["message"] = "message"
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[dict[str, Any]]
    id: str | None = None  # sent back by clients replaying an earlier output item
    status: str | None = None

    def text(self, where: str) -> str:
        if isinstance(self.content, str):
            return self.content
        parts = []
        for j, part in enumerate(self.content):
            kind = part.get("type")
            if kind == "refusal":  # an earlier refusal, replayed by the client
                parts.append(part.get("refusal") or "")
                continue
            if kind not in TEXT_PART_TYPES:
                raise InvalidRequest(f"Content part type {kind!r} is not supported by this "
                                     "gateway; only text input is.",
                                     param=f"{where}.content[{j}].type",
                                     code="unsupported_parameter")
            parts.append(part.get("text") or "")
        return "\n".join(parts)


class ResponsesRequest(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    model: str = Field(min_length=1)
    input: str | list[dict[str, Any]]
    include: list[str] | None = None
    instructions: str | None = None
    max_output_tokens: int | None = Field(None, ge=1)
    metadata: dict[str, str] | None = None
    stream: bool = False
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    text: dict[str, Any] | None = None
    top_logprobs: int | None = Field(None, ge=0, le=20)
    top_p: float | None = Field(None, ge=0.0, le=1.0)
    user: str | None = None
    safety_identifier: str | None = None
    tools: list[dict[str, Any]] | None = None  # function tools only (tools.py)
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None

    @model_validator(mode="after")
    def _reject_unsupported(self) -> ResponsesRequest:
        for name, value in (self.model_extra or {}).items():
            if name not in IGNORED_FIELDS and not _unset(value):
                raise InvalidRequest(f"'{name}' is not supported by this gateway's Responses "
                                     "API (text in, text out, no stored state).", param=name,
                                     code="unsupported_parameter")
        for value in self.include or ():
            if value != LOGPROBS_INCLUDE:
                raise InvalidRequest(f"include value {value!r} is not supported; only "
                                     f"{LOGPROBS_INCLUDE!r} is.", param="include",
                                     code="unsupported_parameter")
        fn.chat_response_format(self.text)  # an unsupported format is a 400 here
        if self.tools:
            fn.chat_tools(self.tools)  # so is a hosted tool
        return self

    def wants_logprobs(self) -> bool:
        return LOGPROBS_INCLUDE in (self.include or ()) or self.top_logprobs is not None

    def messages(self) -> list[dict[str, Any]]:
        """``instructions`` and ``input`` as chat messages (developer becomes system);
        ``function_call`` items become an assistant turn with tool calls (consecutive ones
        one turn), ``function_call_output`` items ``tool`` messages."""
        out: list[dict[str, Any]] = ([{"role": "system", "content": self.instructions}]
                                     if self.instructions else [])
        if isinstance(self.input, str):
            return [*out, {"role": "user", "content": self.input}]
        calls: list[tuple[int, dict]] = []
        for i, raw in enumerate(self.input):
            kind = raw.get("type", "message")
            if kind == "function_call":
                calls.append((i, raw))
                continue
            if calls:
                out.append(fn.function_call_messages(calls))
                calls = []
            if kind == "function_call_output":
                out.append(fn.tool_result_message(i, raw))
            elif kind == "message":
                item = _parse_item(raw, i)
                out.append({"role": ROLE_TO_CHAT[item.role],
                            "content": item.text(f"input[{i}]")})
            else:
                raise InvalidRequest(f"Input item type {kind!r} is not supported; message, "
                                     "function_call and function_call_output items are.",
                                     param=f"input[{i}].type", code="unsupported_parameter")
        if calls:
            out.append(fn.function_call_messages(calls))
        if not out:
            raise InvalidRequest("'input' must hold at least one message.", param="input")
        return out

    def to_chat(self) -> ChatCompletionRequest:
        """The chat request the gateway serves this with (the gates see the same thing)."""
        body: dict[str, Any] = {"model": self.model, "messages": self.messages()}
        optional = {"temperature": self.temperature, "top_p": self.top_p,
                    "max_completion_tokens": self.max_output_tokens,
                    "user": self.user or self.safety_identifier}
        body.update({k: v for k, v in optional.items() if v is not None})
        if self.tools:
            body["tools"] = fn.chat_tools(self.tools)
            if self.tool_choice is not None:
                body["tool_choice"] = fn.chat_tool_choice(self.tool_choice)
            if self.parallel_tool_calls is not None:
                body["parallel_tool_calls"] = self.parallel_tool_calls
        response_format = fn.chat_response_format(self.text)
        if response_format is not None:
            body["response_format"] = response_format
        if self.wants_logprobs():
            body.update(logprobs=True, top_logprobs=self.top_logprobs or 0)
        if self.stream:
            body.update(stream=True, stream_options={"include_usage": True})
        return ChatCompletionRequest.parse(body)


def _parse_item(raw: dict[str, Any], i: int) -> InputMessage:
    """One input item; a bad field is a 400 naming it as ``input[i].field``."""
    try:
        return InputMessage.model_validate(raw)
    except ValidationError as exc:
        errors = [{**e, "loc": ("input", i, *e["loc"])} for e in exc.errors()]
        raise validation_error(errors) from None
