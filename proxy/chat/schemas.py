"""The OpenAI chat-completions request, validated at the edge.

Like vLLM's protocol module: one pydantic class per OpenAI object, ``extra="allow"`` so
fields we do not model still reach the upstream, strict types so ``"n": "3"`` is a 400
naming ``n`` rather than a silent coercion.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

UPSTREAM_TOP_LOGPROBS = 20  # what we ask the upstream for when a detector reads logprobs


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        """The message's text; the text parts of multi-part content joined."""
        if isinstance(self.content, str):
            return self.content
        if not self.content:
            return ""
        return "\n".join(p.get("text", "") for p in self.content if p.get("type") == "text")


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    model: str = Field(min_length=1)
    messages: list[ChatMessage] = Field(min_length=1)
    n: int = Field(1, ge=1)  # the upper bound is a setting, checked by the service
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, ge=0.0, le=1.0)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(None, ge=0, le=20)
    presence_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None
    user: str | None = None
    _raw: dict = PrivateAttr(default_factory=dict)  # the request as the client sent it

    @classmethod
    def parse(cls, data: dict) -> ChatCompletionRequest:
        """Validate a decoded request; the dict itself is kept, so the upstream body and
        the gates' messages are taken from it rather than dumped from the model again."""
        request = cls.model_validate(data)
        request._raw = data
        return request

    def raw_messages(self) -> list[dict]:
        """The messages as the client sent them (validated, not re-serialised)."""
        return self._raw["messages"]

    def client_top_logprobs(self) -> int | None:
        """How many alternatives the client wants back per token; None = no logprobs."""
        if not self.logprobs:
            return None
        return self.top_logprobs or 0

    def upstream_body(self, max_tokens_field: str = "max_completion_tokens",
                      detector_logprobs: bool = True) -> dict:
        """What we send upstream: the client's fields, with top-20 logprobs on when a
        detector reads them (``detector_logprobs``); otherwise the client's own logprob
        fields go as they are, so a route with every detector off asks for nothing more."""
        body = {k: v for k, v in self._raw.items() if v is not None}
        if detector_logprobs:
            body["logprobs"] = True
            body["top_logprobs"] = UPSTREAM_TOP_LOGPROBS
        body.pop("stream", None)
        limit = body.pop("max_completion_tokens", None) or body.pop("max_tokens", None)
        body.pop("max_tokens", None)
        if limit is not None:
            body[max_tokens_field] = limit
        return body
