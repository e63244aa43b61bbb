"""Causal HALT: a forward-only GRU over the same features, judged at every prefix.

    x (B, T, 25) -> LayerNorm-Linear-GELU-Linear (B, T, P) -> GRU, one direction (B, T, H)
      -> [h_t || mean_{s<=t} h_s] (B, T, 2H) -> Linear -> logit of every prefix (B, T)

Nothing at step t reads a token after t, so the logit at t is the judgement of the prefix
of t + 1 tokens, and a stream carries three things from check to check: the GRU's hidden
state, the running sum of its outputs and the last binary decision entropy (the input
feature ΔH_dec is a difference of consecutive tokens, Eq. 13). :class:`CausalStream`
reads each token once: a check costs what its new tokens cost, and the judgement of the
whole answer is the state after its last token (no second pass). A check runs compiled
loops (numba, the kernels of detectors/halt/single.py plus :func:`gru_forward`): at 8
tokens a check, PyTorch's per-operator dispatch would cost more than the arithmetic.

    model = CausalHalt(CausalConfig())
    logits = model.prefix_logits(x)          # (B, T): every prefix, in one pass (training)
    stream = CausalStream(CompiledCausal(model))   # the weights copied once, compiled
    risk = stream.feed(logprob_matrix_rows)  # (n, 20) new rows -> P(hallucinated) so far

Trained on prefixes by :mod:`detectors.halt.causal_train` (the loss reads every step).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from numba import njit
from torch import nn

from detectors.halt.adapter import PAD_LOGPROB, TOP_K
from detectors.halt.features import binary_decision_entropy
from detectors.halt.model import InputProjection
from detectors.halt.single import affine, project, single_input

CAUSAL_NAME = "smollm2-135m-instruct-causal"  # the embedded model's causal checkpoint
CHECKPOINT_DIR = Path(__file__).parent / "checkpoints"


@dataclass(frozen=True)
class CausalConfig:
    input_dim: int = 25  # 5 engineered statistics + 20 raw log-probs, as HALT
    proj_dim: int = 64  # width of the input projection MLP
    hidden_dim: int = 64  # GRU hidden size (one direction)
    num_layers: int = 1  # stacked GRU layers
    dropout: float = 0.2  # on the pooled vector, training only

    def to_dict(self) -> dict:
        return asdict(self)


def running_mean(hidden: torch.Tensor) -> torch.Tensor:
    """m_t = (1/(t+1)) Σ_{s<=t} h_s along dim 1. (B, T, H) -> (B, T, H)."""
    steps = torch.arange(1, hidden.shape[1] + 1, dtype=hidden.dtype, device=hidden.device)
    return hidden.cumsum(dim=1) / steps.view(1, -1, 1)


class CausalHalt(nn.Module):
    """x (B, T, input_dim), right-padded -> the logit of every prefix (B, T)."""

    def __init__(self, config: CausalConfig):
        super().__init__()
        self.config = config
        self.projection = InputProjection(config.input_dim, config.proj_dim)
        self.gru = nn.GRU(config.proj_dim, config.hidden_dim, config.num_layers,
                          batch_first=True)
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(2 * config.hidden_dim, 1)

    def prefix_logits(self, x: torch.Tensor) -> torch.Tensor:
        hidden, _ = self.gru(self.projection(x))  # (B, T, H); padding only follows
        pooled = torch.cat([hidden, running_mean(hidden)], dim=2)  # (B, T, 2H)
        return self.classifier(self.dropout(pooled)).squeeze(2)  # (B, T)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The logit of each whole answer (its last real step). (B,)."""
        logits = self.prefix_logits(x)  # (B, T)
        return logits.gather(1, (lengths - 1).clamp(min=0).view(-1, 1)).squeeze(1)


@njit(cache=True, fastmath=True)
def gru_forward(x: np.ndarray, w_ih: np.ndarray, w_hh: np.ndarray, b_ih: np.ndarray,
                b_hh: np.ndarray, h: np.ndarray, total: np.ndarray) -> None:
    """One forward GRU layer over x (n, D) from the state ``h`` (H,), in place: ``h``
    becomes h_n and ``total`` (H,) gains Σ_t h_t. PyTorch's gate order (r, z, n):

        r_t = σ(W_ir x_t + b_ir + W_hr h_{t−1} + b_hr)
        z_t = σ(W_iz x_t + b_iz + W_hz h_{t−1} + b_hz)
        n_t = tanh(W_in x_t + b_in + r_t ⊙ (W_hn h_{t−1} + b_hn))
        h_t = (1 − z_t) ⊙ n_t + z_t ⊙ h_{t−1}

    w_ih (D, 3H), w_hh (H, 3H), b_* (3H,)."""
    hidden = h.shape[0]
    gi = affine(x, w_ih, b_ih)  # (n, 3H): the input side of every step at once
    gh = np.empty(3 * hidden, dtype=np.float32)
    for t in range(x.shape[0]):
        gh[:] = b_hh
        for i in range(hidden):
            hi = h[i]
            for k in range(3 * hidden):
                gh[k] += hi * w_hh[i, k]
        for j in range(hidden):
            r = 1.0 / (1.0 + math.exp(-(gi[t, j] + gh[j])))
            z = 1.0 / (1.0 + math.exp(-(gi[t, hidden + j] + gh[hidden + j])))
            n = math.tanh(gi[t, 2 * hidden + j] + r * gh[2 * hidden + j])
            h[j] = n + z * (h[j] - n)
            total[j] += h[j]


class CompiledCausal:
    """The weights of a one-layer :class:`CausalHalt`, laid out for the compiled loops."""

    def __init__(self, model: CausalHalt):
        if model.config.num_layers != 1:
            raise ValueError("the compiled causal path runs one GRU layer")
        sd = {k: v.detach().cpu().numpy().astype(np.float32)
              for k, v in model.state_dict().items()}
        self.hidden_dim = model.config.hidden_dim
        self.projection = (
            sd["projection.norm.weight"], sd["projection.norm.bias"],
            float(model.projection.norm.eps),
            np.ascontiguousarray(sd["projection.fc1.weight"].T), sd["projection.fc1.bias"],
            np.ascontiguousarray(sd["projection.fc2.weight"].T), sd["projection.fc2.bias"])
        self.gru = (np.ascontiguousarray(sd["gru.weight_ih_l0"].T),
                    np.ascontiguousarray(sd["gru.weight_hh_l0"].T),
                    sd["gru.bias_ih_l0"], sd["gru.bias_hh_l0"])
        self.head = sd["classifier.weight"][0].astype(np.float64), float(sd["classifier.bias"][0])
        CausalStream(self).feed(np.full((2, TOP_K), -1.0))  # compile now, not mid-request


class CausalStream:
    """One growing answer: the carried state of :class:`CausalHalt` (GRU hidden state,
    running sum of its outputs, steps read, the last decision entropy)."""

    def __init__(self, compiled: CompiledCausal):
        self.compiled = compiled
        self.hidden = np.zeros(compiled.hidden_dim, dtype=np.float32)  # h_t
        self.total = np.zeros(compiled.hidden_dim, dtype=np.float32)  # Σ_s h_s
        self.steps = 0
        self.last_h_dec: float | None = None  # H_dec of the last token read (Eq. 12)
        self.risk: float | None = None  # P(hallucinated) of the prefix read so far

    def features(self, rows: np.ndarray) -> np.ndarray:
        """:func:`detectors.halt.features.halt_input` of the new rows, ΔH_dec continued
        from the last row read (Eq. 13: ΔH_t = H_t − H_{t−1}). (n, 20) -> (n, 25)."""
        rows = np.ascontiguousarray(rows, dtype=np.float64)
        x = single_input(rows)
        first, last = binary_decision_entropy(rows[[0, -1]])  # H_dec of both ends
        if self.last_h_dec is not None:
            x[0, 4] = np.float32(first - self.last_h_dec)
        self.last_h_dec = float(last)
        return x

    def feed(self, rows: np.ndarray) -> float | None:
        """Read the new (n, 20) log-prob rows; P(hallucinated) of the whole prefix so far
        (None while nothing has been read)."""
        if len(rows) == 0:
            return self.risk
        y = project(self.features(rows), *self.compiled.projection)  # (n, P)
        gru_forward(y, *self.compiled.gru, self.hidden, self.total)
        self.steps += len(rows)
        w, b = self.compiled.head
        pooled = np.concatenate([self.hidden, self.total / self.steps]).astype(np.float64)
        self.risk = 1.0 / (1.0 + math.exp(-(float(pooled @ w) + b)))
        return self.risk


@dataclass
class CausalCheckpoint:
    model: CausalHalt
    threshold: float  # whole-answer threshold (macro-F1 on validation)
    prefix_threshold: float | None  # chosen on validation prefixes (bench/halt_prefix.py)
    meta: dict


def save_causal(directory: Path, name: str, model: CausalHalt, threshold: float,
                meta: dict) -> Path:
    """``name.pt`` (state dict) and ``name.json`` (config, thresholds, metrics)."""
    directory.mkdir(parents=True, exist_ok=True)
    weights = directory / f"{name}.pt"
    torch.save({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
               weights)
    info = {"kind": "causal", "model_config": model.config.to_dict(),
            "threshold": float(threshold),
            "features": {"top_k": TOP_K, "pad_logprob": PAD_LOGPROB}, **meta}
    (directory / f"{name}.json").write_text(json.dumps(info, indent=1) + "\n")
    return weights


def load_causal(path: Path | None = None) -> CausalCheckpoint:
    """The causal checkpoint at ``path`` (stem, .pt or .json; default: the embedded
    model's). Raises FileNotFoundError when it is not there."""
    path = Path(path) if path is not None else CHECKPOINT_DIR / CAUSAL_NAME
    stem = path.with_suffix("") if path.suffix in (".pt", ".json") else path
    meta = json.loads(stem.with_suffix(".json").read_text())
    features = meta.get("features", {})
    if features.get("top_k") != TOP_K or features.get("pad_logprob") != PAD_LOGPROB:
        raise ValueError(f"{stem}: trained with features {features}")
    model = CausalHalt(CausalConfig(**meta["model_config"]))
    model.load_state_dict(torch.load(stem.with_suffix(".pt"), map_location="cpu",
                                     weights_only=True))
    model.eval()
    prefix = (meta.get("prefix") or {}).get("threshold")
    return CausalCheckpoint(model, float(meta["threshold"]),
                            None if prefix is None else float(prefix), meta)
