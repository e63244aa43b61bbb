"""The ``nli`` backend: a local sequence-classification NLI model (DeBERTa-MNLI style)
through transformers. Nothing is ever downloaded: the model must be a local folder.

Point it at a real model by saving one once, on a machine with network access:

    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    name = "microsoft/deberta-large-mnli"      # the model of Farquhar et al. 2024
    AutoTokenizer.from_pretrained(name).save_pretrained("/models/deberta-large-mnli")
    AutoModelForSequenceClassification.from_pretrained(name).save_pretrained(
        "/models/deberta-large-mnli")

then ``NLIEntailment(model_path="/models/deberta-large-mnli")`` (profile knob
``entailment_model_path``). The entailment class is read from the config's ``id2label``
(any label starting with "entail", case-insensitive), so label order does not matter.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from detectors.semantic.backend import EntailmentBatch

_FORWARD_LOCK = threading.Lock()


@functools.lru_cache(maxsize=2)
def load_nli_model(path: str):
    """(tokenizer, model in eval mode) from a local folder, once per path per process."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    if not Path(path, "config.json").exists():
        raise FileNotFoundError(f"{path} is not a local transformers model folder")
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModelForSequenceClassification.from_pretrained(path, local_files_only=True)
    return tokenizer, model.eval()


def entailment_label_index(id2label: dict) -> int:
    """The class index whose label name starts with "entail" (ENTAILMENT, entailment, ...)."""
    for index, label in id2label.items():
        if str(label).lower().startswith("entail"):
            return int(index)
    raise ValueError(f"no entailment label in id2label={id2label!r}")


@dataclass
class NLIEntailment:
    """Directional: premise entails hypothesis when the argmax class is entailment."""

    model_path: str  # local folder with config.json, weights and tokenizer
    batch_size: int = 16  # pairs per forward pass
    max_length: int = 256  # tokens per (premise, hypothesis) pair, truncated beyond
    condition_on_question: bool = True  # prefix both sides with the question (Farquhar et al.)
    name: str = "nli"
    symmetric: bool = False

    async def prepare(self, question: str, texts: Sequence[str]) -> None:
        return None

    async def entails_batch(
        self, question: str, pairs: Sequence[tuple[str, str]]
    ) -> EntailmentBatch:
        return await asyncio.to_thread(self._predict, question, list(pairs))

    def _side(self, question: str, text: str) -> str:
        return f"{question} {text}" if self.condition_on_question else text

    def _predict(self, question: str, pairs: list[tuple[str, str]]) -> EntailmentBatch:
        _, model = load_nli_model(str(self.model_path))
        target = entailment_label_index(model.config.id2label)
        logits, calls = self.logits(question, pairs)  # (P, num_labels)
        return EntailmentBatch(tuple((logits.argmax(dim=-1) == target).tolist()), calls=calls)

    def logits(self, question: str, pairs: list[tuple[str, str]]):
        """Class logits per (premise, hypothesis) pair, (P, num_labels), in batches of
        ``batch_size``; also returns the forward passes made."""
        import torch

        tokenizer, model = load_nli_model(str(self.model_path))
        chunks = []
        for start in range(0, len(pairs), self.batch_size):
            chunk = pairs[start:start + self.batch_size]
            encoded = tokenizer(
                [self._side(question, a) for a, _ in chunk],
                [self._side(question, b) for _, b in chunk],
                padding=True, truncation=True, max_length=self.max_length, return_tensors="pt",
            )
            with _FORWARD_LOCK, torch.inference_mode():
                chunks.append(model(**encoded).logits.float())  # (B, num_labels)
        if not chunks:
            return torch.zeros((0, model.config.num_labels)), 0
        return torch.cat(chunks), len(chunks)
