"""The bounded view detectors read of a huge prompt (detectors/bounds.py)."""

from __future__ import annotations

import asyncio

from detectors.bounds import ELLIPSIS, PromptBounds, bound_messages, bound_text
from detectors.edfl.config import EdflConfig
from detectors.edfl.gate import EdflGate
from detectors.offload import CpuLimiter
from tests.scripted_sampler import ScriptedSampler, sample_from_text


def test_small_prompts_are_returned_unchanged():
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    view = bound_messages(messages)
    assert view.messages is messages and not view.clipped


def test_long_text_keeps_head_and_tail_within_the_budget():
    text = "A" * 50_000 + "Who won?"
    out = bound_text(text, 1_000)
    assert len(out) <= 1_000 and out.startswith("A") and out.endswith("Who won?")
    assert ELLIPSIS in out


def test_many_messages_keep_the_newest_and_the_system_prompt():
    messages = [{"role": "system", "content": "sys"}] + [
        {"role": "user", "content": f"m{i}"} for i in range(30_000)]
    view = bound_messages(messages, PromptBounds(max_messages=10, max_chars=10_000))
    assert view.clipped and len(view.messages) == 10
    assert view.messages[0]["content"] == "sys" and view.messages[-1]["content"] == "m29999"


def test_char_budget_counts_content_parts_and_drops_the_oldest():
    messages = [{"role": "user", "content": [{"type": "text", "text": "x" * 900}]},
                {"role": "user", "content": "y" * 900}]
    view = bound_messages(messages, PromptBounds(max_messages=10, max_chars=1_000))
    total = sum(len(m["content"]) if isinstance(m["content"], str)
                else len(m["content"][0]["text"]) for m in view.messages)
    assert total <= 1_000 and view.messages[-1]["content"] == "y" * 900


def test_cpu_limiter_runs_work_in_a_thread_and_bounds_concurrency():
    import threading
    import time

    cpu = CpuLimiter(limit=2)
    running, peak, main = [0], [0], threading.get_ident()
    lock = threading.Lock()

    def work() -> int:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.05)
        with lock:
            running[0] -= 1
        return threading.get_ident()

    async def main_coro() -> list[int]:
        return await asyncio.gather(*(cpu.run(work) for _ in range(6)))

    idents = asyncio.run(main_coro())
    assert main not in idents and peak[0] == 2


def test_edfl_gate_judges_the_bounded_view():
    gate = EdflGate(EdflConfig(m=2), bounds=PromptBounds(max_messages=4, max_chars=500))
    sampler = ScriptedSampler(lambda messages, kwargs, i: sample_from_text("answer"))
    messages = [{"role": "user", "content": "Paris 1900 " * 10_000}]
    result = asyncio.run(gate.run(messages, sampler, model="m"))
    sent = [sum(len(str(m.get("content"))) for m in msgs) for msgs, _ in sampler.calls]
    assert result.skeletons and sent and max(sent) < 2_000
    assert all(len(s) < 1_000 for s in result.skeletons)  # [MASK] is longer than a year
