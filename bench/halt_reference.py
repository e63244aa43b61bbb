"""A straight port of the HALT seed module (shared/seeds/halt_reference_notebook.txt).

Kept as the speed and parity baseline for ``bench/halt_speed.py``: the feature code, the
projection, the per-item pooling loop and the CPU sort before packing are the seed's, only
the device handling is reduced to CPU. Do not optimise this file.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

EPS = 1e-9


@dataclass
class HALTConfig:
    top_k: int = 20
    n_stat_features: int = 5
    input_dim: int = 25
    proj_dim: int = 128
    hidden_dim: int = 256
    num_layers: int = 5
    dropout: float = 0.4
    top_q: float = 0.15


def compute_engineered_features(logprobs_k: torch.Tensor) -> torch.Tensor:
    T, K = logprobs_k.shape
    mt = logprobs_k.max(dim=1, keepdim=True).values
    exp_s = torch.exp(logprobs_k - mt)
    p_tilde = exp_s / (exp_s.sum(dim=1, keepdim=True) + EPS)
    avg_logp = logprobs_k.mean(dim=1)
    sel = logprobs_k[:, :1]
    rank_proxy = 1.0 + (logprobs_k[:, 1:] > sel).float().sum(dim=1)
    h_overall = -(p_tilde * torch.log(p_tilde + EPS)).sum(dim=1)
    p_alts = p_tilde[:, 1:]
    p_alts_n = p_alts / (p_alts.sum(dim=1, keepdim=True) + EPS)
    h_alts = -(p_alts_n * torch.log(p_alts_n + EPS)).sum(dim=1)
    best_alt = logprobs_k[:, 1:].max(dim=1).values
    sel_lp = logprobs_k[:, 0]
    pc_num = torch.exp(sel_lp)
    pc_den = torch.exp(sel_lp) + torch.exp(best_alt)
    pc = pc_num / (pc_den + EPS)
    pc = pc.clamp(EPS, 1.0 - EPS)
    h_dec = -(pc * torch.log(pc) + (1 - pc) * torch.log(1 - pc))
    delta_h_dec = h_dec.clone()
    delta_h_dec[1:] = h_dec[1:] - h_dec[:-1]
    return torch.stack([avg_logp, rank_proxy, h_overall, h_alts, delta_h_dec], dim=1)


def build_halt_input(logprobs_k: torch.Tensor) -> torch.Tensor:
    stats = compute_engineered_features(logprobs_k)
    return torch.cat([stats, logprobs_k], dim=1)


class InputProjection(nn.Module):
    def __init__(self, input_dim: int, proj_dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(input_dim)
        self.fc1 = nn.Linear(input_dim, proj_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(proj_dim, proj_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(self.norm(x))))


class TopQPooling(nn.Module):
    def __init__(self, q: float = 0.15):
        super().__init__()
        self.q = q

    def forward(self, H: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        B, T, D = H.shape
        mask = torch.arange(T, device=H.device).unsqueeze(0) < lengths.unsqueeze(1)
        scores = H.norm(dim=2).masked_fill(~mask, -1e9)
        k_vals = (lengths.float() * self.q).ceil().long().clamp(min=1)
        pooled = torch.zeros(B, D, device=H.device)
        for b in range(B):
            top_idx = scores[b].topk(k_vals[b].item()).indices
            pooled[b] = H[b, top_idx].mean(dim=0)
        return pooled


class HALT(nn.Module):
    def __init__(self, config: HALTConfig):
        super().__init__()
        self.cfg = config
        self.projection = InputProjection(config.input_dim, config.proj_dim)
        self.gru = nn.GRU(
            input_size=config.proj_dim,
            hidden_size=config.hidden_dim,
            num_layers=config.num_layers,
            batch_first=True,
            bidirectional=True,
            dropout=config.dropout if config.num_layers > 1 else 0.0,
        )
        self.pooler = TopQPooling(q=config.top_q)
        self.classifier = nn.Linear(config.hidden_dim * 2, 1)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape
        proj = self.projection(x)
        lengths_cpu = lengths.cpu()
        idx_sorted = torch.sort(lengths_cpu, descending=True).indices
        lengths_sorted = lengths_cpu[idx_sorted]
        proj_sorted = proj[idx_sorted]
        packed = pack_padded_sequence(proj_sorted, lengths_sorted,
                                      batch_first=True, enforce_sorted=True)
        out_pk, _ = self.gru(packed)
        H, _ = pad_packed_sequence(out_pk, batch_first=True, total_length=T)
        inv_idx = idx_sorted.argsort()
        H_orig = H[inv_idx]
        pooled = self.pooler(H_orig, lengths)
        return self.classifier(pooled).squeeze(1)


def predict_batch(model: HALT, matrices: list[torch.Tensor]) -> torch.Tensor:
    """The seed's inference path for a batch: features per item (float32), pad, forward."""
    from torch.nn.utils.rnn import pad_sequence

    xs = [build_halt_input(m.float()) for m in matrices]
    lengths = torch.tensor([x.shape[0] for x in xs], dtype=torch.long)
    with torch.no_grad():
        return torch.sigmoid(model(pad_sequence(xs, batch_first=True), lengths))


if __name__ == "__main__":
    # Smoke run of the baseline alone (the comparison is bench/halt_speed.py): the seed's
    # full model on 8 random sorted top-20 logprob matrices of 64 tokens, one thread.
    import time

    torch.manual_seed(0)
    torch.set_num_threads(1)
    reference = HALT(HALTConfig()).eval()
    batch = [torch.sort(torch.log_softmax(torch.randn(64, 20), -1), -1, descending=True)[0]
             for _ in range(8)]
    start = time.perf_counter()
    risks = predict_batch(reference, batch)
    elapsed_ms = (time.perf_counter() - start) * 1000
    params = sum(p.numel() for p in reference.parameters())
    print(f"RESULT reference_params={params} batch8_T64_ms={elapsed_ms:.1f} "
          f"outputs={len(risks)}")
