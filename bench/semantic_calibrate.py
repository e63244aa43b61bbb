"""Calibrate the meaning-equivalence thresholds of the ``embedding`` and ``lexical`` backends.

Labelled answer pairs, all from data the semantic benchmark does not use (NQ-Open dev
items 0-699 and the 350 HaluEval items; bench/semantic_embedded.py uses NQ 700+):
  - positives: (model answer labelled correct, its gold answer) from
    halt_smollm2_dev.jsonl.gz (text items), and pairs of gold aliases of one NQ question;
  - negatives: (model answer labelled hallucinated, its gold answer), and HaluEval's
    (right answer, hallucinated answer).
Each pair is conditioned on its question. Questions are split 50/50 (seeded) into a
validation half, where the threshold that maximises balanced accuracy is chosen, and a
test half, where it is reported, against a fixed uncalibrated threshold as baseline.

    .venv/bin/python bench/semantic_calibrate.py
"""

from __future__ import annotations

import asyncio
import gzip
import json
import random

import numpy as np
import torch
import typer
from sklearn.metrics import roc_auc_score, roc_curve

from detectors.semantic.embedding import EmbeddingEntailment
from detectors.semantic.lexical import LexicalEntailment
from evaluation.data import DEFAULT_DATA_DIR

DATA = DEFAULT_DATA_DIR
Pair = tuple[str, str, str, int, str]  # (question, a, b, label, group id)


def question_of(row: dict) -> str:
    """The question inside a halt_smollm2_dev prompt (evidence and instructions dropped)."""
    prompt = row["prompt"]
    if "Question:" in prompt:
        prompt = prompt.split("Question:", 1)[1]
    return prompt.split("Answer with", 1)[0].strip()


def as_sentence(question: str, answer: str) -> str:
    """A gold answer phrased the way sampled answers are: restating the question."""
    return f"{question.rstrip(' ?')}: {answer}."


def labelled_pairs(templated: bool = True) -> list[Pair]:
    """Labelled pairs; with ``templated`` the gold side restates the question (see
    :func:`as_sentence`), so both sides look like sampled answers (clustering compares
    answers with answers, not with bare gold phrases)."""
    def gold_side(question: str, gold: str) -> str:
        return as_sentence(question, gold) if templated else gold

    pairs: list[Pair] = []
    with gzip.open(DATA / "halt_smollm2_dev.jsonl.gz", "rt") as handle:
        rows = [json.loads(line) for line in handle]
    for row in rows:
        if row["kind"] != "text" or not row["answer"].strip():
            continue
        question = question_of(row)
        pairs.append((question, row["answer"], gold_side(question, row["gold"][0]),
                      int(row["correct"]), row["id"]))
        golds = list(dict.fromkeys(row["gold"]))
        if row["source"] == "nq_open_dev" and len(golds) > 1:
            pairs.append((question, gold_side(question, golds[0]), gold_side(question, golds[1]),
                          1, row["id"]))
    with open(DATA / "halueval_qa_dev.jsonl") as handle:
        for i, line in enumerate(handle):
            item = json.loads(line)
            pairs.append((item["question"], gold_side(item["question"], item["right_answer"]),
                          item["hallucinated_answer"], 0, f"halueval-{i}"))
    return pairs


def split(pairs: list[Pair], seed: int) -> tuple[list[Pair], list[Pair]]:
    groups = sorted({p[4] for p in pairs})
    random.Random(seed).shuffle(groups)
    validation = set(groups[: len(groups) // 2])
    return [p for p in pairs if p[4] in validation], [p for p in pairs if p[4] not in validation]


def best_threshold(scores: np.ndarray, labels: np.ndarray) -> float:
    """The score threshold with the highest balanced accuracy (Youden's J) on these pairs."""
    fpr, tpr, thresholds = roc_curve(labels, scores)
    best = int(np.argmax(tpr - fpr))
    return float(min(thresholds[best], 1.0))


def balanced_accuracy(scores: np.ndarray, labels: np.ndarray, threshold: float) -> float:
    predicted = scores >= threshold
    return float(0.5 * (predicted[labels == 1].mean() + (~predicted[labels == 0]).mean()))


async def score_pairs(name: str, pairs: list[Pair]) -> np.ndarray:
    if name == "lexical":
        backend = LexicalEntailment()
        return np.array([backend.score(q, a, b) for q, a, b, _, _ in pairs])
    backend = EmbeddingEntailment(condition_on_question=name == "embedding_q")
    scores = []
    for question, a, b, _, _ in pairs:  # one question per call: conditioning differs
        scores.append(float((await backend.scores(question, [(a, b)]))[0]))
    return np.array(scores)


BASELINES = {"embedding": 0.5, "embedding_q": 0.5, "lexical": 0.5}  # uncalibrated guesses


def main(seed: int = typer.Option(0, help="seed of the validation/test split"),
         threads: int = typer.Option(1, help="torch CPU threads"),
         backends: str = typer.Option("lexical,embedding,embedding_q",
                                      help="comma-separated subset to calibrate"),
         templated: bool = typer.Option(True, help="gold side phrased as an answer sentence"),
         ) -> None:
    torch.set_num_threads(threads)
    pairs = labelled_pairs(templated)
    validation, test = split(pairs, seed)
    print(f"pairs: {len(pairs)} (positives {sum(p[3] for p in pairs)}); "
          f"validation {len(validation)}, test {len(test)}")
    results = {}
    for name in backends.split(","):
        val_scores = asyncio.run(score_pairs(name, validation))
        test_scores = asyncio.run(score_pairs(name, test))
        val_labels = np.array([p[3] for p in validation])
        test_labels = np.array([p[3] for p in test])
        threshold = best_threshold(val_scores, val_labels)
        calibrated = balanced_accuracy(test_scores, test_labels, threshold)
        baseline = balanced_accuracy(test_scores, test_labels, BASELINES[name])
        auroc = roc_auc_score(test_labels, test_scores)
        results[name] = (threshold, calibrated, baseline, auroc)
        print(f"{name:12s} threshold={threshold:.3f} test_bal_acc={calibrated:.3f} "
              f"(fixed {BASELINES[name]}: {baseline:.3f}) test_pair_auroc={auroc:.3f}")
    fields = " ".join(
        f"{n}_threshold={t:.3f} {n}_bal_acc={c:.3f} {n}_bal_acc_ratio={c / b:.3f} {n}_auroc={a:.3f}"
        for n, (t, c, b, a) in results.items()
    )
    print(f"RESULT {fields}")


if __name__ == "__main__":
    typer.run(main)
