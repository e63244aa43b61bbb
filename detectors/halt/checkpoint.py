"""A HALT checkpoint is two files side by side: ``NAME.pt`` (the state dict, loaded with
``weights_only=True``) and ``NAME.json`` (config, threshold, metrics, provenance).

JSON fields: ``model_config`` (:class:`HaltConfig`), ``threshold``, ``upstream_model`` (the
generator whose logprobs it was trained on: checkpoints are per upstream model),
``features`` (top_k, pad_logprob), ``metrics``, ``train_config``, ``split``, ``command``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from detectors.halt.adapter import PAD_LOGPROB, TOP_K
from detectors.halt.model import HaltConfig, HaltModel

CHECKPOINT_DIR = Path(__file__).parent / "checkpoints"
DEFAULT_NAME = "smollm2-135m-instruct"  # the embedded upstream model


@dataclass
class Checkpoint:
    model: HaltModel
    threshold: float
    meta: dict

    @property
    def upstream_model(self) -> str:
        return str(self.meta.get("upstream_model", "unknown"))


def save_checkpoint(directory: str | Path, name: str, model: HaltModel, threshold: float,
                    meta: dict) -> Path:
    """Write ``directory/name.pt`` and ``directory/name.json``; returns the ``.pt`` path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    weights = directory / f"{name}.pt"
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    torch.save(state, weights)
    info = {"model_config": model.config.to_dict(), "threshold": float(threshold),
            "features": {"top_k": TOP_K, "pad_logprob": PAD_LOGPROB}, **meta}
    (directory / f"{name}.json").write_text(json.dumps(info, indent=1, sort_keys=False) + "\n")
    return weights


def load_checkpoint(path: str | Path) -> Checkpoint:
    """``path`` is the ``.pt`` or ``.json`` file, or the stem without suffix."""
    path = Path(path)
    stem = path.with_suffix("") if path.suffix in (".pt", ".json") else path
    meta = json.loads(stem.with_suffix(".json").read_text())
    features = meta.get("features", {})
    if features.get("top_k", TOP_K) != TOP_K or features.get("pad_logprob") != PAD_LOGPROB:
        raise ValueError(f"{stem}: trained with features {features}, this code builds "
                         f"top_k={TOP_K}, pad_logprob={PAD_LOGPROB}")
    model = HaltModel(HaltConfig(**meta["model_config"]))
    model.load_state_dict(torch.load(stem.with_suffix(".pt"), map_location="cpu",
                                     weights_only=True))
    model.eval()
    return Checkpoint(model, float(meta["threshold"]), meta)


def default_checkpoint_path() -> Path:
    return CHECKPOINT_DIR / f"{DEFAULT_NAME}.pt"
