"""The OpenAI Responses API (``POST /v1/responses``), served by translating to the chat
service: the same route -> profile -> detectors -> decision as chat completions."""
