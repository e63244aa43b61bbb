"""Responses API on top of the chat service: translate, let chat gate, translate back.

    router -> ResponsesService.create(req, ctx)  -> (response object, headers)
           -> ResponsesService.stream(req, ctx)  -> StreamPlan(headers, Responses SSE)

No gating logic lives here: ``ChatService`` runs route -> profile -> detectors ->
decision exactly as for a chat request, and its abstention (a chat message with
``refusal``) becomes a ``refusal`` content part.
"""

from __future__ import annotations

from dataclasses import dataclass

from proxy.chat.gate_session import RequestContext
from proxy.chat.service import ChatService, StreamPlan
from proxy.responses import shaping
from proxy.responses.events import response_events
from proxy.responses.schemas import ResponsesRequest
from proxy.store.ids import responses_id


@dataclass
class ResponsesResult:
    body: dict
    headers: dict[str, str]


class ResponsesService:
    def __init__(self, chat: ChatService):
        self.chat = chat

    async def create(self, req: ResponsesRequest, ctx: RequestContext) -> ResponsesResult:
        result = await self.chat.complete(req.to_chat(), ctx)
        return ResponsesResult(shaping.response_object(req, result.body), result.headers)

    async def stream(self, req: ResponsesRequest, ctx: RequestContext) -> StreamPlan:
        """Errors before the first upstream chunk are still HTTP errors (as for chat)."""
        plan = await self.chat.open_stream(req.to_chat(), ctx)
        return StreamPlan(plan.headers, response_events(req, plan.body,
                                                        responses_id(plan.response_id)))
