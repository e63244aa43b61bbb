"""The pure parts of progressive streaming: token counting and check points."""

from proxy.chat.progressive import chunk_tokens, next_check
from proxy.chat.shaping import refusal_chunks


def chunk(delta: dict, logprobs: list | None = None, index: int = 0) -> dict:
    lp = {"content": logprobs} if logprobs is not None else None
    return {"choices": [{"index": index, "delta": delta, "logprobs": lp}]}


def test_tokens_are_logprob_entries_and_text_without_them_counts_one_blind_token():
    assert chunk_tokens(chunk({"content": "a b"}, [{}, {}])) == (2, True)
    assert chunk_tokens(chunk({"content": "a"})) == (1, False)
    assert chunk_tokens(chunk({"role": "assistant", "content": ""})) == (0, True)
    assert chunk_tokens(chunk({"content": "x"}, [{}], index=1)) == (0, True)
    assert chunk_tokens({"choices": [], "usage": {"completion_tokens": 3}}) == (0, True)


def test_next_check_is_the_next_multiple_above_what_was_read():
    assert [next_check(r, 8) for r in (0, 7, 8, 9, 23, 24)] == [8, 8, 16, 16, 24, 32]
    assert next_check(5, 1) == 6


def test_refusal_chunks_end_the_choice_without_content():
    first, last = refusal_chunks({"id": "c", "created": 1, "model": "m"}, "No.",
                                 with_role=False)
    assert first["choices"][0]["delta"] == {"refusal": "No."}
    assert last["choices"][0]["finish_reason"] == "stop" and last["choices"][0]["delta"] == {}
    assert first["object"] == "chat.completion.chunk" and first["id"] == "c"
    opening, _ = refusal_chunks({}, "No.", with_role=True)
    assert opening["choices"][0]["delta"] == {"role": "assistant", "refusal": "No."}


class SlowJudge:
    """A GateSession whose whole-answer judgement waits until the test lets it answer."""

    response_id, streaming_mode, headers, reads_logprobs = "c", "progressive", {}, True

    def __init__(self):
        import asyncio

        self.judging, self.answer = asyncio.Event(), asyncio.Event()

    async def prompt_verdict(self):
        return None

    async def feed_prefix(self, tokens):
        return None

    async def judge(self, answers):
        from proxy.chat.gate_session import GateOutcome

        self.judging.set()
        await self.answer.wait()
        return GateOutcome(metadata={})

    async def aclose(self):
        return None


def content_of(events: list[bytes]) -> str:
    import json

    text = []
    for event in events:
        body = event.decode().removeprefix("data: ").strip()
        if body != "[DONE]":
            text += [(c.get("delta") or {}).get("content") or ""
                     for c in json.loads(body).get("choices") or ()]
    return "".join(text)


def released_before_the_judgement(holds_tail: bool) -> tuple[str, str]:
    """(content sent while the whole answer was being judged, all content)."""
    import asyncio

    import msgspec

    from proxy.chat.gate_session import ProgressivePlan
    from proxy.chat.progressive import ProgressiveStream
    from proxy.chat.schemas import ChatCompletionRequest

    words = [f" w{i}" for i in range(20)]
    chunks = [chunk({"content": w}, [{"token": w, "logprob": -0.1, "top_logprobs": []}])
              for w in words]
    req = msgspec.convert({"model": "m", "messages": [{"role": "user", "content": "q"}]},
                          ChatCompletionRequest)
    plan = ProgressivePlan(holdback_tokens=8, rescore_every=8, threshold=0.5, cut=False,
                           holds_tail=holds_tail)

    async def rest():
        for c in chunks[1:]:
            yield c

    async def tail(outcome, usage):
        yield b"data: [DONE]\n\n"

    async def run():
        session = SlowJudge()
        events: list[bytes] = []
        stream = ProgressiveStream(req, session, plan, chunks[0], rest(), tail)

        async def consume():
            async for data in stream.events():
                events.append(data)
        task = asyncio.ensure_future(consume())
        await session.judging.wait()
        await asyncio.sleep(0.01)  # anything released before the judgement is out by now
        during = content_of(events)
        session.answer.set()
        await task
        return during, content_of(events)
    return asyncio.run(run())


def test_a_judgement_that_can_withhold_the_answer_holds_its_last_w_tokens():
    during, whole = released_before_the_judgement(holds_tail=True)
    assert whole == "".join(f" w{i}" for i in range(20))
    assert during == "".join(f" w{i}" for i in range(12))  # W = 8 held for the judgement


def test_a_judgement_that_cannot_withhold_it_waits_behind_the_whole_answer():
    during, whole = released_before_the_judgement(holds_tail=False)
    assert during == whole == "".join(f" w{i}" for i in range(20))
