"""Response ids the gateway mints: unique per response, whatever the upstream sent.

    chatcmpl-0193a4c2b1f0 5e1d9c0a7b3f24e86d11
             └ ms since the epoch (48 bits) └ 80 random bits

An upstream's own id cannot key the store: a fake, a cache or another proxy repeats one.
The time in front lets the feedback endpoint say whether an id it cannot find has expired
or was never stored, and keeps ids of one period together in an index. The Responses API
shows the same id as ``resp_<hex>``.
"""

from __future__ import annotations

import random
import re
import time

CHAT_PREFIX = "chatcmpl-"
RESPONSES_PREFIX = "resp_"
FIND_WAIT_S = 5.0  # a label waits this long from the answer for its exchange to be written
_ID = re.compile(r"^(?:chatcmpl-|resp_)([0-9a-f]{32})$")


def new_response_id(now: float | None = None) -> str:
    """A fresh ``chatcmpl-`` id (no system call for randomness: unique, not secret)."""
    ms = int((time.time() if now is None else now) * 1000) & (2**48 - 1)
    return f"{CHAT_PREFIX}{ms:012x}{random.getrandbits(80):020x}"


def canonical_response_id(value: str) -> str | None:
    """The stored form (``chatcmpl-<hex>``) of a chat or Responses id this gateway minted;
    None for anything else."""
    match = _ID.match(value)
    return f"{CHAT_PREFIX}{match.group(1)}" if match else None


def responses_id(chat_id: str | None) -> str | None:
    """The Responses API's form of a minted chat id; None when it is not one of ours."""
    canonical = canonical_response_id(chat_id or "")
    return f"{RESPONSES_PREFIX}{canonical[len(CHAT_PREFIX):]}" if canonical else None


def minted_at(response_id: str) -> float | None:
    """When a minted id was made (seconds since the epoch); None when not one of ours."""
    match = _ID.match(response_id)
    return int(match.group(1)[:12], 16) / 1000 if match else None
