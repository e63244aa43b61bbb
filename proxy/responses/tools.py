"""Function tools and structured outputs of the Responses API, translated onto chat.

    request  tools: [{type: function, name, parameters, strict}]  -> chat tools
             tool_choice: auto | none | required | {type: function, name}
             text.format: json_schema | json_object              -> chat response_format
             input items: function_call (the model's earlier call)  -> assistant tool_calls
                          function_call_output (the client's result) -> role: tool
    response chat tool_calls -> function_call output items (call_id = the chat call's id)

Hosted tools (file search, web search, computer use, code interpreter, ...) run on
OpenAI's side; a chat upstream has nothing to run them with, so they are a 400 naming the
type rather than a silently different answer.
"""

from __future__ import annotations

from typing import Any

from proxy.errors import InvalidRequest

TEXT_FORMATS = ("text", "json_object", "json_schema")


def chat_tools(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Responses function tools as chat tools; any other tool type is a 400 naming it."""
    out = []
    for i, tool in enumerate(tools):
        kind = tool.get("type")
        if kind != "function":
            raise InvalidRequest(f"Tool type {kind!r} is not supported by this gateway: only "
                                 "function tools are (hosted tools run on OpenAI's side).",
                                 param=f"tools[{i}].type", code="unsupported_parameter")
        if not isinstance(tool.get("name"), str) or not tool["name"]:
            raise InvalidRequest("A function tool needs a 'name'.", param=f"tools[{i}].name")
        function = {k: tool[k] for k in ("name", "description", "parameters", "strict")
                    if tool.get(k) is not None}
        out.append({"type": "function", "function": function})
    return out


def chat_tool_choice(choice: str | dict[str, Any]) -> str | dict[str, Any]:
    """``auto``/``none``/``required`` as they are; ``{type: function, name}`` in chat form."""
    if isinstance(choice, str):
        if choice not in ("auto", "none", "required"):
            raise InvalidRequest(f"tool_choice {choice!r} is not one of auto, none, required.",
                                 param="tool_choice")
        return choice
    if choice.get("type") != "function" or not choice.get("name"):
        raise InvalidRequest("Only a function tool_choice ({'type': 'function', 'name': ...}) "
                             "is supported.", param="tool_choice",
                             code="unsupported_parameter")
    return {"type": "function", "function": {"name": choice["name"]}}


def chat_response_format(text: dict[str, Any] | None) -> dict[str, Any] | None:
    """``text.format`` as a chat ``response_format``; None for plain text."""
    fmt = (text or {}).get("format") or {"type": "text"}
    kind = fmt.get("type")
    if kind not in TEXT_FORMATS:
        raise InvalidRequest(f"text.format type {kind!r} is not supported (one of "
                             f"{', '.join(TEXT_FORMATS)}).", param="text.format",
                             code="unsupported_parameter")
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "json_object"}
    schema = {k: fmt[k] for k in ("name", "description", "schema", "strict")
              if fmt.get(k) is not None}
    return {"type": "json_schema", "json_schema": schema}


def output_text(output: Any) -> str:
    """A ``function_call_output``'s output: a string, or text parts joined."""
    if isinstance(output, str):
        return output
    if isinstance(output, list):
        return "\n".join(p.get("text") or "" for p in output if isinstance(p, dict))
    raise InvalidRequest("'output' must be a string or a list of content parts.")


def function_call_messages(items: list[tuple[int, dict]]) -> dict:
    """Consecutive ``function_call`` input items as one assistant message with tool calls."""
    calls = []
    for i, item in items:
        for key in ("call_id", "name", "arguments"):
            if not isinstance(item.get(key), str):
                raise InvalidRequest(f"A function_call item needs '{key}' (a string).",
                                     param=f"input[{i}].{key}")
        calls.append({"id": item["call_id"], "type": "function",
                      "function": {"name": item["name"], "arguments": item["arguments"]}})
    return {"role": "assistant", "content": None, "tool_calls": calls}


def tool_result_message(i: int, item: dict) -> dict:
    """A ``function_call_output`` input item as a chat ``tool`` message."""
    if not isinstance(item.get("call_id"), str):
        raise InvalidRequest("A function_call_output item needs 'call_id' (a string).",
                             param=f"input[{i}].call_id")
    try:
        content = output_text(item.get("output"))
    except InvalidRequest as exc:
        raise InvalidRequest(exc.message, param=f"input[{i}].output") from None
    return {"role": "tool", "tool_call_id": item["call_id"], "content": content}


def function_call_item(item_id: str, call: dict, status: str = "completed") -> dict:
    """One chat tool call as a Responses ``function_call`` output item."""
    function = call.get("function") or {}
    return {"type": "function_call", "id": item_id, "call_id": call.get("id") or item_id,
            "name": function.get("name") or "", "arguments": function.get("arguments") or "",
            "status": status}
