"""HALT in the gateway: load once, score answers in batches, never block the event loop.

    scorer = HaltScorer.load_default()               # the embedded model's checkpoint
    scorer.score_batch([tokens_a, tokens_b])         # synchronous, one forward pass
    result = await scorer.score(tokens)              # concurrent callers share a forward,
                                                     # which runs in a worker thread

``tokens`` is a sequence of :class:`detectors.sampling.TokenLogprob` or OpenAI
``logprobs.content[]`` dicts. An answer without logprobs (``None`` or no tokens) cannot be
scored: :class:`detectors.protocol.MissingLogprobs` is raised so that the route's fail mode decides.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy.special import expit

from detectors.batching import MicroBatcher
from detectors.halt.adapter import LogprobMatrix, logprob_matrix
from detectors.halt.checkpoint import default_checkpoint_path, load_checkpoint
from detectors.halt.data import collate
from detectors.halt.features import halt_input
from detectors.halt.model import HaltModel
from detectors.halt.single import SingleAnswerHalt, single_input
from detectors.protocol import MissingLogprobs
from detectors.verdict import Verdict

INLINE_MAX_TOKENS = 64  # answers up to this long may be scored on the event loop when idle


@dataclass(frozen=True)
class HaltResult:
    verdict: Verdict  # ABSTAIN when risk >= threshold
    risk: float  # P(hallucinated) from the model, [0, 1]
    threshold: float  # the checkpoint's validation-tuned threshold
    n_tokens: int
    top_k_min: int  # fewest alternatives the upstream reported for a token
    top_k_mean: float  # mean alternatives per token (20 = full information)
    model: str  # the upstream model the checkpoint was trained for

    def to_dict(self) -> dict:
        return {"detector": "halt", "verdict": self.verdict.value, "risk": self.risk,
                "score": self.risk, "threshold": self.threshold, "n_tokens": self.n_tokens,
                "top_k_available": {"min": self.top_k_min, "mean": round(self.top_k_mean, 3)},
                "model": self.model}


class HaltScorer:
    def __init__(self, model: HaltModel, threshold: float, model_name: str,
                 max_batch: int = 64, prefix_threshold: float | None = None):
        self.model = model.eval()
        self.threshold = float(threshold)
        # the threshold for prefixes of a streamed answer (chosen on validation prefixes by
        # bench/halt_prefix.py, stored under `prefix` in the checkpoint JSON); the
        # full-answer threshold when the checkpoint has none
        self.prefix_threshold = float(threshold if prefix_threshold is None
                                      else prefix_threshold)
        self.model_name = model_name
        self._single = SingleAnswerHalt(self.model)
        self.max_batch = max_batch  # the most answers one forward pass takes
        # a short answer alone scores inline (about 0.6 ms on one core); longer ones and
        # any under load go to the worker thread
        self._batcher = MicroBatcher(self.score_batch, max_batch,
                                     small=lambda tokens: len(tokens) <= INLINE_MAX_TOKENS,
                                     run_inline=self.score_one)

    @classmethod
    def load(cls, path: str | Path, **kwargs) -> HaltScorer:
        ckpt = load_checkpoint(path)
        kwargs.setdefault("prefix_threshold", (ckpt.meta.get("prefix") or {}).get("threshold"))
        return cls(ckpt.model, ckpt.threshold, ckpt.upstream_model, **kwargs)

    @classmethod
    def load_default(cls, **kwargs) -> HaltScorer:
        """The checkpoint trained on the embedded model's answers (shipped in the package)."""
        return cls.load(default_checkpoint_path(), **kwargs)

    def _result(self, risk: float, matrix: LogprobMatrix) -> HaltResult:
        seen = matrix.alternatives_seen
        return HaltResult(
            verdict=Verdict.ABSTAIN if risk >= self.threshold else Verdict.ANSWER,
            risk=risk, threshold=self.threshold, n_tokens=matrix.n_tokens,
            top_k_min=int(seen.min()), top_k_mean=float(seen.mean()), model=self.model_name)

    def score_batch(self, answers: Sequence[Sequence | None]) -> list[HaltResult]:
        """One forward pass over all answers. Raises MissingLogprobs (with the offending
        ``indices``) when any answer has no tokens; validate single answers with
        :meth:`score` to keep one bad answer from failing the others."""
        return self._score(answers, self.risks)

    def score_one(self, answers: Sequence[Sequence | None]) -> list[HaltResult]:
        """:meth:`score_batch` for a batch of one, through the compiled single-answer
        path (detectors/halt/single.py; its speed against PyTorch's: bench/halt_speed.py).
        It holds the GIL, so the scorer runs it only inline on the event loop; the worker
        thread keeps PyTorch, which releases the GIL."""
        return self._score(answers, self.single_risks)

    def _score(self, answers, risks_of) -> list[HaltResult]:
        matrices = [logprob_matrix(a) if a else None for a in answers]
        missing = [i for i, m in enumerate(matrices) if m is None or m.n_tokens == 0]
        if missing:
            raise MissingLogprobs(f"answers {missing} have no token logprobs", missing)
        if not matrices:
            return []
        risks = risks_of([m.values for m in matrices])
        return [self._result(float(r), m) for r, m in zip(risks, matrices, strict=True)]

    @torch.inference_mode()
    def risks(self, logprob_matrices: Sequence[np.ndarray]) -> np.ndarray:
        """P(hallucinated) of (T_i, 20) log-prob matrices in one forward pass. (N,)."""
        x, lengths = collate([halt_input(m) for m in logprob_matrices])  # (N, T, 25), (N,)
        return torch.sigmoid(self.model(x, lengths)).double().numpy()

    def single_risks(self, logprob_matrices: Sequence[np.ndarray]) -> np.ndarray:
        """:meth:`risks` answer by answer through the compiled forward pass. (N,)."""
        return np.array([expit(self._single.logit(single_input(m)))
                         for m in logprob_matrices])

    async def score(self, tokens: Sequence | None) -> HaltResult:
        """Score one answer; concurrent calls are grouped into one forward pass."""
        if not tokens:
            raise MissingLogprobs()
        return await self._batcher.submit(tokens)
