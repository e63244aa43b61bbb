"""Faster top-logprobs for llama-cpp-python's completions, with identical results.

For every answer token, llama_cpp's ``Llama`` builds its top-logprobs line as

    logprobs = log_softmax(scores)                  # Llama.logits_to_logprobs
    top = sorted(zip(logprobs[t], range(n_vocab)), reverse=True)[:k]

and, for a whole (non-streamed) answer, applies ``log_softmax`` to its entire score buffer
``(n_ctx, n_vocab)`` first, though it reads only the answer's rows. With ``logits_all``
(which it requires for logprobs) every prompt token's logits are computed and copied into
that buffer too, though an answer's logprobs start at the last prompt token. With a
262,144-token vocabulary (Gemma 3) that is the output layer run on every prompt token, two
(n_ctx, n_vocab) float32 temporaries per request, and a Python sort of 262,144 pairs per
answer token. :func:`install` (run in the llama.cpp child process, proxy/llama_child.py)
replaces, in the ``llama_cpp.llama`` module:

- ``Llama.eval``: logits for the last token of each batch only (a generated token is a
  batch of one), stored in the row llama_cpp reads them from; the other prompt rows are
  left unwritten. So ``echo=True`` completions (prompt-token logprobs, a
  ``/v1/completions`` option the gateway never uses) are not supported in this process;
- ``Llama.logits_to_logprobs`` of a 2-D buffer returns :class:`LazyLogprobRows`, whose rows
  are the same per-row ``log_softmax``, computed when read;
- ``sorted`` in that module sorts the ``zip(logprobs, range(n))`` pattern with
  ``numpy.lexsort`` (descending by value, then by index, exactly as tuple order reversed)
  and leaves every other call to ``builtins.sorted``.

tests/proxy/test_llama_logprobs.py checks each against the original, and that real
answers come out identical, logprobs included; bench/llama_logprobs.py times them.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterator
from typing import Any

import numpy as np


class LazyLogprobRows:
    """``log_softmax(scores, axis=-1)[start:]``, each row computed when iterated."""

    def __init__(self, scores: np.ndarray, log_softmax: Any, start: int = 0):
        self.scores = scores  # (n_ctx, n_vocab)
        self.log_softmax = log_softmax  # the 1-D function: llama_cpp's own
        self.start = start

    def __len__(self) -> int:
        return max(0, len(self.scores) - self.start)

    def __iter__(self) -> Iterator[np.ndarray]:
        for row in self.scores[self.start:]:
            yield self.log_softmax(row)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice) and index.step in (None, 1) and index.stop is None \
                and (index.start or 0) >= 0:
            return LazyLogprobRows(self.scores, self.log_softmax, self.start + (index.start or 0))
        return np.asarray(self.log_softmax(self.scores[self.start:]))[index]


def zipped_logprobs(iterable: Any) -> np.ndarray | list | None:
    """The logprobs of ``zip(logprobs, range(len(logprobs)))``, not yet iterated; else None."""
    if type(iterable) is not zip:
        return None
    sources = iterable.__reduce__()[1]
    if len(sources) != 2:
        return None
    values, ids = (source.__reduce__() for source in sources)
    if len(values) != 3 or len(ids) != 3 or values[2] != 0 or ids[2] != 0:
        return None  # not iterators, or already advanced
    (seq,), (span,) = values[1], ids[1]
    if not isinstance(seq, np.ndarray | list) or not isinstance(span, range) \
            or span != range(len(seq)):
        return None
    return seq


def sort_logprob_pairs(seq: np.ndarray | list) -> list[tuple[Any, int]]:
    """``sorted(zip(seq, range(len(seq))), reverse=True)``: descending by value, ties by
    descending index, with elements of the same types (a list's floats, an array's
    scalars) and values."""
    values = np.asarray(seq)  # (n,); a list of floats becomes float64, exactly
    order = np.lexsort((np.arange(len(values)), values))[::-1]  # (n,)
    ranked = values[order]
    return list(zip(ranked if isinstance(seq, np.ndarray) else ranked.tolist(), order.tolist(),
                    strict=True))


def fast_sorted(iterable: Any, /, *, key: Any = None, reverse: bool = False) -> list:
    """``builtins.sorted``, with the top-logprobs pattern done by :func:`sort_logprob_pairs`."""
    if key is None and reverse:
        seq = zipped_logprobs(iterable)
        if seq is not None and np.asarray(seq).ndim == 1 \
                and np.issubdtype(np.asarray(seq).dtype, np.floating):
            return sort_logprob_pairs(seq)
    return builtins.sorted(iterable, key=key, reverse=reverse)


def eval_last_logits(self: Any, tokens: Any) -> None:
    """``Llama.eval`` of a ``logits_all`` model, computing and storing only each batch's
    last logits row (the one sampling and an answer's logprobs read)."""
    self._ctx.kv_cache_seq_rm(-1, self.n_tokens, -1)
    for i in range(0, len(tokens), self.n_batch):
        batch = tokens[i:min(len(tokens), i + self.n_batch)]
        n_past, n_tokens = self.n_tokens, len(batch)
        self._batch.set_batch(batch=batch, n_past=n_past, logits_all=False)
        self._ctx.decode(self._batch)
        self.input_ids[n_past:n_past + n_tokens] = batch
        if self._logits_all:
            last = np.ctypeslib.as_array(self._ctx.get_logits(), shape=(self._n_vocab,))
            self.scores[n_past + n_tokens - 1, :] = last
        self.n_tokens += n_tokens
        self._requires_eval = False


def install() -> None:
    """Patch ``llama_cpp.llama`` in this process (idempotent)."""
    import llama_cpp.llama as module

    module.Llama.eval = eval_last_logits

    original = module.Llama.__dict__["logits_to_logprobs"]
    if getattr(original, "__func__", None) is not None and \
            getattr(original.__func__, "hallgate_lazy", False):
        return
    log_softmax = original.__func__

    def logits_to_logprobs(logits: Any, axis: int = -1) -> Any:
        if isinstance(logits, np.ndarray) and logits.ndim == 2 and axis in (-1, 1):
            return LazyLogprobRows(logits, log_softmax)
        return log_softmax(logits, axis=axis)

    logits_to_logprobs.hallgate_lazy = True  # type: ignore[attr-defined]
    module.Llama.logits_to_logprobs = staticmethod(logits_to_logprobs)
    module.sorted = fast_sorted  # type: ignore[attr-defined]
