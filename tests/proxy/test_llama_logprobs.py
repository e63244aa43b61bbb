"""proxy/llama_logprobs.py gives llama_cpp's top-logprobs exactly, only faster."""

from __future__ import annotations

import builtins

import numpy as np
import pytest

from proxy.llama_logprobs import (
    LazyLogprobRows,
    eval_last_logits,
    fast_sorted,
    install,
    sort_logprob_pairs,
)

llama_module = pytest.importorskip("llama_cpp.llama")
log_softmax = llama_module.Llama.__dict__["logits_to_logprobs"].__func__
shipped_eval = llama_module.Llama.eval


def logprob_row(n: int = 5000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    row = rng.normal(size=n).astype(np.float32)
    row[[3, 17, 40]] = row[11]  # ties: the reference breaks them by descending index
    row[[5, 6]] = -np.inf
    return row


@pytest.mark.parametrize("as_list", [False, True], ids=["array_row", "list_row"])
def test_the_pair_sort_equals_the_builtin_one(as_list: bool) -> None:
    row = logprob_row()
    seq = row.tolist() if as_list else row
    expected = builtins.sorted(zip(seq, range(len(seq)), strict=False), reverse=True)
    got = fast_sorted(zip(seq, range(len(seq)), strict=False), reverse=True)
    assert got == expected
    assert [type(v) for v, _ in got[:20]] == [type(v) for v, _ in expected[:20]]
    assert sort_logprob_pairs(seq) == expected


def test_other_sorts_are_left_to_the_builtin() -> None:
    row = logprob_row(50)
    ascending = builtins.sorted(zip(row, range(50), strict=False))
    assert fast_sorted(zip(row, range(50), strict=False)) == ascending
    assert fast_sorted({"b": 1, "a": 2}.items(), key=lambda kv: kv[1], reverse=True) == \
        [("a", 2), ("b", 1)]
    started = zip(row, range(50), strict=False)
    next(started)  # a zip already advanced is not the pattern any more
    assert fast_sorted(started, reverse=True) == \
        builtins.sorted(zip(row[1:], range(1, 50), strict=False), reverse=True)
    shifted = zip(row, range(1, 51), strict=False)  # indices that are not the row's own
    assert fast_sorted(shifted, reverse=True) == \
        builtins.sorted(zip(row, range(1, 51), strict=False), reverse=True)


def test_lazy_rows_equal_the_whole_buffer_log_softmax() -> None:
    scores = np.stack([logprob_row(300, seed) for seed in range(6)])  # (6, 300)
    scores[:, [5, 6]] = 0.0
    expected = log_softmax(scores)
    lazy = LazyLogprobRows(scores, log_softmax)[2:]
    assert len(lazy) == 4
    rows = list(lazy)
    assert all(np.array_equal(a, b) for a, b in zip(rows, expected[2:], strict=True))
    np.testing.assert_array_equal(lazy[-1:], expected[-1:])  # other indexing: computed whole


def unpatched(monkeypatch) -> None:
    """llama_cpp as shipped, restored after the test whatever install() changes."""
    monkeypatch.setattr(llama_module.Llama, "logits_to_logprobs", staticmethod(log_softmax))
    monkeypatch.setattr(llama_module.Llama, "eval", shipped_eval)
    monkeypatch.setattr(llama_module, "sorted", builtins.sorted, raising=False)


def test_install_patches_llama_cpp_and_keeps_one_dimensional_calls(monkeypatch) -> None:
    unpatched(monkeypatch)
    install()
    install()  # idempotent
    row = logprob_row(300)
    row[[5, 6]] = 0.0
    np.testing.assert_array_equal(llama_module.Llama.logits_to_logprobs(row), log_softmax(row))
    assert isinstance(llama_module.Llama.logits_to_logprobs(row[None, :]), LazyLogprobRows)
    assert llama_module.sorted is fast_sorted
    assert llama_module.Llama.eval is eval_last_logits


@pytest.mark.model
def test_a_real_answer_has_the_same_logprobs_patched_and_not(monkeypatch) -> None:
    from llama_cpp import Llama

    from proxy.embedded import find_gguf

    llm = Llama(model_path=str(find_gguf()), logits_all=True, n_ctx=512, n_threads=1,
                n_threads_batch=1, verbose=False, seed=3)

    def answers() -> list[dict]:
        """A greedy answer from a fresh prompt, then a sampled one reusing its cache."""
        llm.reset()  # evaluate the whole prompt again, as a fresh process would
        ask = {"messages": [{"role": "user", "content": "Name three colours."}],
               "max_tokens": 12, "logprobs": True, "top_logprobs": 20}
        return [llm.create_chat_completion(**ask, temperature=0)["choices"][0],
                llm.create_chat_completion(**ask, temperature=0.8, seed=5)["choices"][0]]

    unpatched(monkeypatch)
    before = answers()
    install()
    after = answers()
    assert len(before[0]["logprobs"]["content"]) == 12
    assert after == before
