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
