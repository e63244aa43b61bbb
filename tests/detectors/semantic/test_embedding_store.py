"""The embeddings a replay keeps on disk between runs."""

from __future__ import annotations

import numpy as np

from detectors.semantic.embedding import EmbeddingEntailment, EmbeddingStore, use_store


def test_the_store_round_trips_and_saves_only_when_it_grew(tmp_path):
    path = tmp_path / "emb.npz"
    store = EmbeddingStore.open(path)  # absent file: empty
    assert store.vectors == {}
    store.save()
    assert not path.exists()
    store.vectors[EmbeddingStore.key("m", "Paris")] = np.ones(3, dtype=np.float32)
    store.save()
    again = EmbeddingStore.open(path)
    np.testing.assert_array_equal(again.vectors[EmbeddingStore.key("m", "Paris")], np.ones(3))


def test_stored_texts_are_not_embedded_again(tmp_path):
    store = EmbeddingStore.open(tmp_path / "emb.npz")
    vector = np.array([0.6, 0.8], dtype=np.float32)
    store.vectors[EmbeddingStore.key("/no/such/model", "Paris")] = vector
    backend = EmbeddingEntailment(model_path="/no/such/model")  # loading it would fail
    use_store(store)
    try:
        vectors, passes = backend._embed(["Paris", "Paris"])
    finally:
        use_store(None)
    assert passes == 0
    np.testing.assert_array_equal(vectors, np.stack([vector, vector]))
