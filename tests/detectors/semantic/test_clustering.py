import math
import random

import numpy as np
import pytest

from detectors.sampling import Sample, TokenLogprob
from detectors.semantic.clustering import (
    assign_to_clusters,
    cluster_all_pairs,
    cluster_answers,
    cluster_from_matrix,
    cluster_is_refusal,
    count_masses,
    is_refusal,
    medoid,
    probability_masses,
    semantic_entropy,
)
from detectors.semantic.entailment import EquivalenceJudge
from tests.detectors.semantic.fakes import MeaningBackend

QUESTION = "what is the capital of france"


async def test_greedy_clustering_groups_by_meaning_in_first_seen_order():
    texts = ["Paris", "It is Lyon.", "It is Paris.", "paris", "Marseille", "lyon"]
    judge = EquivalenceJudge(MeaningBackend(), QUESTION)
    assert await cluster_answers(texts, judge) == [[0, 2, 3], [1, 5], [4]]


async def test_duplicates_and_numeric_disagreements_never_reach_the_backend():
    backend = MeaningBackend(meaning=lambda t: "same")  # would merge everything
    judge = EquivalenceJudge(backend, "how many legs does a spider have")
    texts = ["8", "8.", "It has 8", "6", "It has 6 legs"]
    clusters = await cluster_answers(texts, judge)
    assert clusters == [[0, 1, 2], [3, 4]]  # the numeric guard overrides the backend
    asked = {frozenset(p) for p in backend.asked}
    assert frozenset(("8", "8.")) not in asked  # normalised duplicates grouped for free
    assert all("6" not in a or "8" not in b for a, b in backend.asked)
    assert judge.cost.short_circuited >= 2


async def test_directional_backend_needs_entailment_both_ways():
    # "dog" entails "animal" but not the reverse: strict bidirectional keeps them apart.
    backend = MeaningBackend(directional=True, one_way=[("dog", "animal")])
    judge = EquivalenceJudge(backend, "what is it")
    assert await cluster_answers(["a dog", "an animal", "the dog"], judge) == [[0, 2], [1]]
    assert ("an animal", "a dog") in backend.asked and ("a dog", "an animal") in backend.asked


@pytest.mark.parametrize("directional", [False, True])
async def test_greedy_with_short_circuit_matches_the_naive_all_pairs_reference(directional):
    rng = random.Random(7)
    words = ["Paris", "Lyon", "Nice", "Lille"]
    for _ in range(30):
        texts = [rng.choice(["", "It is ", "the "]) + rng.choice(words) for _ in range(10)]
        judge = EquivalenceJudge(MeaningBackend(directional=directional), QUESTION)
        fast = await cluster_answers(texts, judge)
        naive = await cluster_all_pairs(texts, MeaningBackend(directional=directional), QUESTION)
        assert fast == naive


async def test_short_circuit_saves_backend_pairs_against_all_pairs():
    texts = ["Paris"] * 6 + ["It is Paris."] * 2 + ["Lyon"] * 2
    backend = MeaningBackend()
    await cluster_answers(texts, EquivalenceJudge(backend, QUESTION))
    naive = MeaningBackend()
    await cluster_all_pairs(texts, naive, QUESTION)
    assert len(backend.asked) < len(naive.asked) / 10


def test_cluster_from_matrix_is_greedy_against_representatives():
    eq = np.array([[1, 1, 0], [1, 1, 1], [0, 1, 1]], dtype=bool)  # not transitive
    assert cluster_from_matrix(eq) == [[0, 1], [2]]


async def test_assign_to_clusters_sends_unmatched_answers_to_other():
    judge = EquivalenceJudge(MeaningBackend(), QUESTION)
    got = await assign_to_clusters(["It is Paris", "Rome", "lyon"], ["Paris", "Lyon"], judge)
    assert got == [0, None, 1]
    assert await assign_to_clusters(["x"], [], judge) == [None]


def test_count_masses_and_entropy():
    masses = count_masses([[0, 1, 2, 3], [4, 5], [6, 7], [8, 9]], 10)
    np.testing.assert_allclose(masses, [0.4, 0.2, 0.2, 0.2])
    expected = -(0.4 * math.log(0.4) + 3 * 0.2 * math.log(0.2))
    assert semantic_entropy(masses) == pytest.approx(expected)
    assert semantic_entropy(np.array([1.0, 0.0])) == 0.0
    distinct = count_masses([[i] for i in range(10)], 10)
    assert semantic_entropy(distinct) == pytest.approx(math.log(10))


def sample(text: str, logprobs: list[float]) -> Sample:
    return Sample(text, tuple(TokenLogprob(str(i), lp) for i, lp in enumerate(logprobs)))


def test_probability_masses_use_length_normalised_likelihood():
    samples = [sample("a", [-0.1, -0.3]), sample("b", [-2.0]), sample("a", [-0.2])]
    masses = probability_masses([[0, 2], [1]], samples)
    weights = np.exp([-0.2, -2.0, -0.2])
    expected = [(weights[0] + weights[2]) / weights.sum(), weights[1] / weights.sum()]
    np.testing.assert_allclose(masses, expected)
    assert probability_masses([[0]], [Sample("a", None)]) is None


@pytest.mark.parametrize(
    ("text", "refusal"),
    [("I don't know.", True), ("I'm not sure about that", True), ("I cannot answer", True),
     ("Sorry, no information is available", True), ("Paris", False),
     ("Canada", False)],
)
def test_refusal_detection(text, refusal):
    assert is_refusal(text) is refusal


def test_cluster_refusal_is_a_majority_vote_and_medoid_is_central():
    assert cluster_is_refusal(["I don't know", "I do not know", "Paris"])
    assert not cluster_is_refusal(["I don't know", "Paris"])
    members = ["Paris", "It is Paris", "Paris, France", "Paris"]
    assert members[medoid(members)] == "Paris"
