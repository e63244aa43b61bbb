"""``python -m proxy.llama_child ARGS``: llama_cpp.server with hallgate's chat formats.

The embedded models run as this child process. It registers the few-shot QA renderer
(proxy/fewshot.py) under ``FEWSHOT_CHAT_FORMAT``, so ``--chat_format hallgate-fewshot-qa``
serves a base model's chat completions, installs the faster top-logprobs of
proxy/llama_logprobs.py (same results), then hands its arguments to llama_cpp.server's
own command line unchanged.
"""

from __future__ import annotations

import sys
from typing import Any

from proxy.fewshot import FEWSHOT_CHAT_FORMAT, FEWSHOT_STOP, render_fewshot_qa
from proxy.llama_logprobs import install as install_fast_logprobs


def register_chat_formats() -> None:
    """Make ``FEWSHOT_CHAT_FORMAT`` a chat format llama_cpp's ``Llama`` accepts (in this
    process; idempotent)."""
    from llama_cpp.llama_chat_format import (
        ChatFormatterResponse,
        LlamaChatCompletionHandlerRegistry,
        chat_formatter_to_chat_completion_handler,
    )

    def fewshot_qa(messages: list[dict[str, Any]], **_kwargs: Any) -> ChatFormatterResponse:
        return ChatFormatterResponse(prompt=render_fewshot_qa(messages),
                                     stop=list(FEWSHOT_STOP))

    LlamaChatCompletionHandlerRegistry().register_chat_completion_handler(
        FEWSHOT_CHAT_FORMAT, chat_formatter_to_chat_completion_handler(fewshot_qa),
        overwrite=True)


def main(argv: list[str]) -> None:
    register_chat_formats()
    install_fast_logprobs()
    from llama_cpp.server.__main__ import main as serve

    sys.argv = ["llama_cpp.server", *argv]
    serve()


if __name__ == "__main__":
    main(sys.argv[1:])
