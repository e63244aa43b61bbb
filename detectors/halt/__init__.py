"""HALT: hallucination risk from the answer's own token logprobs (arXiv 2602.02888).

    from detectors.halt import HaltScorer, MissingLogprobs
    scorer = HaltScorer.load_default()
    result = await scorer.score(sample.tokens)     # HaltResult: verdict, risk, to_dict()

Modules: ``adapter`` (OpenAI logprobs -> (T, 20)), ``features`` (Eq. 4-13 -> (T, 25)),
``model`` (the network), ``scorer`` (gateway front), ``data``/``train``/``evaluate``/
``pipeline`` (training), ``collect`` (building training data through any upstream).
"""

from detectors.halt.adapter import PAD_LOGPROB, TOP_K, logprob_matrix
from detectors.halt.model import HaltConfig, HaltModel
from detectors.halt.scorer import HaltResult, HaltScorer, MissingLogprobs

__all__ = ["PAD_LOGPROB", "TOP_K", "HaltConfig", "HaltModel", "HaltResult", "HaltScorer",
           "MissingLogprobs", "logprob_matrix"]
