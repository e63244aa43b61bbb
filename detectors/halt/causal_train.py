"""Training causal HALT (detectors/halt/causal.py) on every prefix of the HALT data.

One forward pass gives the logit of every prefix of every answer, so training on prefixes
costs no more than training on whole answers. The loss of an answer is the mean of two
BCE terms against its label: the mean over all its prefixes (the progressive checks read
them) and its whole answer (the final judgement reads that one). Classes are balanced with
``pos_weight = n_correct / n_hallucinated`` as in :mod:`detectors.halt.train`. The epoch
kept is the one with the best mean validation AUROC over prefixes of 8, 16, 32 tokens and
the whole answer; its whole-answer threshold maximises validation macro-F1. The split is
the bidirectional checkpoint's own (its JSON's ``split``), so both are tested on the same
answers.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn

from detectors.halt import metrics
from detectors.halt.causal import CausalConfig, CausalHalt
from detectors.halt.data import Example, collate
from detectors.halt.train import seed_everything

PREFIXES: tuple[int | None, ...] = (8, 16, 32, None)  # None: the whole answer


@dataclass(frozen=True)
class CausalTrainConfig:
    max_epochs: int = 30  # upper bound; early stopping usually ends sooner
    batch_size: int = 32
    lr: float = 2e-3  # Adam learning rate (a small network)
    weight_decay: float = 1e-5
    early_stop_patience: int = 8  # epochs without a better selection score
    max_grad_norm: float = 1.0
    seed: int = 42

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class CausalTrainResult:
    model: CausalHalt
    threshold: float
    best_epoch: int
    val: dict
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0


def prefix_index(lengths: torch.Tensor, k: int | None) -> torch.Tensor:
    """The step whose logit judges the first k tokens (the last one when shorter). (B,)."""
    last = lengths - 1
    return last if k is None else torch.minimum(last, torch.full_like(last, k - 1))


@torch.no_grad()
def prefix_risks(model: CausalHalt, examples: Sequence[Example], k: int | None,
                 batch_size: int = 256) -> np.ndarray:
    """P(hallucinated) of each example's first k tokens (whole when k is None). (N,)."""
    model.eval()
    out = []
    for start in range(0, len(examples), batch_size):
        x, lengths = collate([e.features for e in examples[start:start + batch_size]])
        logits = model.prefix_logits(x).gather(1, prefix_index(lengths, k).view(-1, 1))
        out.append(torch.sigmoid(logits.squeeze(1)).double().numpy())
    return np.concatenate(out) if out else np.zeros(0)


def prefix_loss(logits: torch.Tensor, lengths: torch.Tensor, labels: torch.Tensor,
                pos_weight: torch.Tensor) -> torch.Tensor:
    """mean_b ½(mean_{t<len_b} BCE(z_bt, y_b) + BCE(z_b,len_b−1, y_b)). logits (B, T)."""
    B, T = logits.shape
    valid = (torch.arange(T).view(1, -1) < lengths.view(-1, 1)).to(logits.dtype)  # (B, T)
    per_step = nn.functional.binary_cross_entropy_with_logits(
        logits, labels.view(-1, 1).expand(B, T), reduction="none", pos_weight=pos_weight)
    over_prefixes = (per_step * valid).sum(1) / valid.sum(1)  # (B,)
    whole = per_step.gather(1, (lengths - 1).view(-1, 1)).squeeze(1)  # (B,)
    return (0.5 * (over_prefixes + whole)).mean()


def validate(model: CausalHalt, val: Sequence[Example]) -> dict:
    labels = [e.label for e in val]
    out = {}
    for k in PREFIXES:
        out[f"auroc_{'full' if k is None else k}"] = metrics.auroc(
            prefix_risks(model, val, k), labels)
    full = prefix_risks(model, val, None)
    threshold, _ = metrics.best_threshold(full, labels)
    out["threshold"] = threshold
    out["macro_f1"] = metrics.macro_f1(full, labels, threshold)
    out["select"] = float(np.mean([out[f"auroc_{'full' if k is None else k}"]
                                   for k in PREFIXES]))
    return out


def train_causal(train: Sequence[Example], val: Sequence[Example], config: CausalConfig,
                 cfg: CausalTrainConfig, on_epoch: Callable[[dict], None] | None = None,
                 ) -> CausalTrainResult:
    seed_everything(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    model = CausalHalt(config)
    n_pos = sum(e.label for e in train)
    pos_weight = torch.tensor((len(train) - n_pos) / max(n_pos, 1))
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    best, best_state, stale, history = None, None, 0, []
    started = time.perf_counter()
    for epoch in range(1, cfg.max_epochs + 1):
        model.train()
        order = rng.permutation(len(train))
        total = 0.0
        for start in range(0, len(order), cfg.batch_size):
            batch = [train[i] for i in order[start:start + cfg.batch_size]]
            x, lengths = collate([e.features for e in batch])
            labels = torch.tensor([e.label for e in batch], dtype=torch.float32)
            optimizer.zero_grad()
            loss = prefix_loss(model.prefix_logits(x), lengths, labels, pos_weight)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
            optimizer.step()
            total += loss.item()
        row = {"epoch": epoch, "train_loss": total, "seconds": time.perf_counter() - started,
               **{f"val_{k}": v for k, v in validate(model, val).items()}}
        history.append(row)
        if on_epoch:
            on_epoch(row)
        if best is None or row["val_select"] > best["val_select"]:
            best, stale = row, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            stale += 1
            if stale >= cfg.early_stop_patience:
                break
    model.load_state_dict(best_state)
    model.eval()
    return CausalTrainResult(model, best["val_threshold"], best["epoch"],
                             {k[4:]: v for k, v in best.items() if k.startswith("val_")},
                             history, time.perf_counter() - started)
