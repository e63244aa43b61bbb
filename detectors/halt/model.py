"""The HALT network (Shapiro et al., arXiv 2602.02888, Sec. 3.2 and Appendix B).

    x (B, T, 25) -> LayerNorm-Linear-GELU-Linear (B, T, 128) -> BiGRU (B, T, 2H)
      -> top-q salient pooling (B, 2H) -> Linear -> logit (B,)

Parameter names equal the reference module's (``projection.*``, ``gru.*``,
``classifier.*``), so one state dict loads into both. Unlike the reference, the pooling is
vectorised (one ``topk`` for the whole batch, no per-item Python loop, no ``.item()``),
sorting for ``pack_padded_sequence`` happens inside PyTorch (``enforce_sorted=False``) and
a batch whose items all have the same length skips packing altogether.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


@dataclass(frozen=True)
class HaltConfig:
    input_dim: int = 25  # 5 engineered statistics + 20 raw log-probs (Sec. 3.2)
    proj_dim: int = 128  # width of the input projection MLP (Appendix B)
    hidden_dim: int = 256  # GRU hidden size per direction (Appendix B)
    num_layers: int = 5  # stacked bidirectional GRU layers (Appendix B)
    dropout: float = 0.4  # between GRU layers, training only (Appendix B)
    top_q: float = 0.15  # share of the most salient steps averaged by the pooling (Sec. 3.2)

    @classmethod
    def full(cls) -> HaltConfig:
        """The paper's architecture: BiGRU 5 x 256, 5.34M parameters."""
        return cls()

    @classmethod
    def small(cls) -> HaltConfig:
        """BiGRU 2 x 128, 0.51M parameters (DESIGN.md: within noise of the full one)."""
        return cls(hidden_dim=128, num_layers=2)

    @classmethod
    def for_arch(cls, arch: str) -> HaltConfig:
        presets = {"full": cls.full, "small": cls.small}
        if arch not in presets:
            raise ValueError(f"unknown HALT architecture {arch!r}; choose from {list(presets)}")
        return presets[arch]()

    def to_dict(self) -> dict:
        return asdict(self)


class InputProjection(nn.Module):
    """LayerNorm -> Linear -> GELU -> Linear, (B, T, input_dim) -> (B, T, proj_dim)."""

    def __init__(self, input_dim: int, proj_dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(input_dim)
        self.fc1 = nn.Linear(input_dim, proj_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(proj_dim, proj_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(self.norm(x))))


def salient_counts(lengths: torch.Tensor, q: float) -> torch.Tensor:
    """k_b = max(1, ceil(q · len_b)), the number of steps the pooling averages. (B,)."""
    return (lengths.to(torch.float32) * q).ceil().long().clamp(min=1)


def salient_count(length: int, q: float) -> int:
    """k = max(1, ceil(q · length)) for one answer, in float32 like :func:`salient_counts`."""
    return max(1, math.ceil(np.float32(length) * np.float32(q)))


def top_q_pool(hidden: torch.Tensor, lengths: torch.Tensor, q: float) -> torch.Tensor:
    """Top-q salient pooling (Sec. 3.2): mean of the ceil(q·len) steps of largest L2 norm.

    hidden (B, T, D), lengths (B,) -> (B, D). One ``topk`` of the largest k over the batch,
    then a mask keeps each item's own first k_b picks: no loop over the batch.
    """
    B, T, D = hidden.shape
    lengths = lengths.to(hidden.device)
    valid = torch.arange(T, device=hidden.device).unsqueeze(0) < lengths.unsqueeze(1)  # (B, T)
    salience = hidden.norm(dim=2).masked_fill(~valid, float("-inf"))  # (B, T)
    k = salient_counts(lengths, q)  # (B,)
    k_max = min(T, int(salient_counts(torch.tensor([T]), q)))  # >= every k_b, no device sync
    top_idx = salience.topk(k_max, dim=1).indices  # (B, k_max), by salience descending
    keep = torch.arange(k_max, device=hidden.device).unsqueeze(0) < k.unsqueeze(1)  # (B, k_max)
    picked = hidden.gather(1, top_idx.unsqueeze(2).expand(B, k_max, D))  # (B, k_max, D)
    summed = (picked * keep.unsqueeze(2).to(hidden.dtype)).sum(dim=1)  # (B, D)
    return summed / k.unsqueeze(1).to(hidden.dtype)


class HaltModel(nn.Module):
    """x (B, T, input_dim) padded, lengths (B,) -> hallucination logits (B,)."""

    def __init__(self, config: HaltConfig):
        super().__init__()
        self.config = config
        self.projection = InputProjection(config.input_dim, config.proj_dim)
        self.gru = nn.GRU(
            input_size=config.proj_dim,
            hidden_size=config.hidden_dim,
            num_layers=config.num_layers,
            batch_first=True,
            bidirectional=True,
            dropout=config.dropout if config.num_layers > 1 else 0.0,
        )
        self.classifier = nn.Linear(2 * config.hidden_dim, 1)
        self._init_weights()

    def _init_weights(self) -> None:
        """Xavier for input-hidden, orthogonal for hidden-hidden, zero biases (Appendix B)."""
        for name, p in self.gru.named_parameters():
            if "weight_ih" in name:
                nn.init.xavier_uniform_(p)
            elif "weight_hh" in name:
                nn.init.orthogonal_(p)
            elif "bias" in name:
                nn.init.zeros_(p)
        nn.init.xavier_uniform_(self.classifier.weight)
        nn.init.zeros_(self.classifier.bias)

    def encode(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """GRU states of every step: (B, T, input_dim) -> (B, T, 2H); padding rows are 0."""
        B, T, _ = x.shape
        proj = self.projection(x)  # (B, T, proj_dim)
        lengths_cpu = lengths.to("cpu", torch.int64)
        if bool((lengths_cpu == T).all()):  # nothing padded: the plain (faster) path
            hidden, _ = self.gru(proj)
            return hidden  # (B, T, 2H)
        packed = pack_padded_sequence(proj, lengths_cpu, batch_first=True, enforce_sorted=False)
        out, _ = self.gru(packed)
        hidden, _ = pad_packed_sequence(out, batch_first=True, total_length=T)  # (B, T, 2H)
        return hidden

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        hidden = self.encode(x, lengths)  # (B, T, 2H)
        pooled = top_q_pool(hidden, lengths, self.config.top_q)  # (B, 2H)
        return self.classifier(pooled).squeeze(1)  # (B,)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
