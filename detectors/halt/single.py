"""HALT's forward pass for one answer, compiled with numba: the gateway's common case.

At c=1 the gateway scores one short answer at a time. There the cost is not arithmetic
but dispatch: PyTorch's per-operator overhead (bench/halt_speed.py: about 2x a numpy
copy of the network), and then numpy's own (a GRU step is about 15 numpy calls, 3-5 µs
each on this VM, so a 6-token answer took 0.9 ms). Compiled loops remove both. This is
the same network as :class:`detectors.halt.model.HaltModel`, with its weights, in float32
(the gate non-linearities in float64); batches still go through PyTorch.
``tests/detectors/halt/test_single.py`` checks the two agree.

    single = SingleAnswerHalt(model)     # copies the weights once, compiles (or loads the cache)
    x = single_input(matrix)             # (T, 20) log-probs -> (T, 25) float32, as halt_input
    logit = single.logit(x)              # x: (T, 25) float32 -> float

The kernels are cached on disk (numba ``cache=True``), so only the first process on a
machine pays their compile time (about 18 s on the 2-core VM; 0.5 s to load after).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from detectors.halt.features import EPS
from detectors.halt.model import HaltModel, salient_count


@njit(cache=True)
def softplus(x: float) -> float:
    """log(1 + e^x) without overflow (numpy's ``logaddexp(0, x)``)."""
    return max(x, 0.0) + math.log1p(math.exp(-abs(x)))


@njit(cache=True)
def single_input(lp: np.ndarray) -> np.ndarray:
    """:func:`detectors.halt.features.halt_input` for one answer, as compiled loops (its
    ~20 numpy calls on a (T, 20) matrix cost more than their arithmetic). The same
    equations, row by row:

        p̃_k = e^(l_k − max l) / (Σ e^(l_j − max l) + eps)                      Eq. 4
        avg_logp = mean_k l_k                                                  Eq. 5
        rank_proxy = 1 + #{k ≥ 1 : l_k > l_0}                                  Eq. 6
        H_overall = −Σ_k p̃_k log(p̃_k + eps)                                   Eq. 7
        H_alts = −Σ_{k≥1} q_k log(q_k + eps),  q_k = p̃_k / (Σ_{j≥1} p̃_j + eps)  Eq. 8-9
        d = l_0 − max_{k≥1} l_k,  pc = σ(d),
        H_dec = pc·softplus(−d) + (1 − pc)·softplus(d),  ΔH_t = H_t − H_{t−1}  Eq. 10-13

    lp (T, K) float64 -> (T, 5 + K) float32: the five statistics, then the K log-probs."""
    T, K = lp.shape
    out = np.empty((T, 5 + K), dtype=np.float32)
    p = np.empty(K)
    previous = 0.0
    for t in range(T):
        row = lp[t]
        top = row.max()
        total = 0.0
        for k in range(K):
            p[k] = math.exp(row[k] - top)
            total += p[k]
        mean, rank, h_overall, alt_mass, best_alt = 0.0, 1.0, 0.0, 0.0, -np.inf
        for k in range(K):
            p[k] /= total + EPS
            mean += row[k]
            h_overall -= p[k] * math.log(p[k] + EPS)
            if k > 0:
                alt_mass += p[k]
                rank += 1.0 if row[k] > row[0] else 0.0
                best_alt = max(best_alt, row[k])
        h_alts = 0.0
        for k in range(1, K):
            q = p[k] / (alt_mass + EPS)
            h_alts -= q * math.log(q + EPS)
        d = row[0] - best_alt
        pc = 0.5 * (1.0 + math.tanh(0.5 * d))
        h_dec = pc * softplus(-d) + (1.0 - pc) * softplus(d)
        out[t, 0] = mean / K
        out[t, 1] = rank
        out[t, 2] = h_overall
        out[t, 3] = h_alts
        out[t, 4] = h_dec - previous if t > 0 else h_dec
        previous = h_dec
        for k in range(K):
            out[t, 5 + k] = row[k]
    return out


@njit(cache=True)
def project(x: np.ndarray, norm_w: np.ndarray, norm_b: np.ndarray, eps: float,
            w1: np.ndarray, b1: np.ndarray, w2: np.ndarray, b2: np.ndarray) -> np.ndarray:
    """The input projection, token by token: LayerNorm -> Linear -> GELU -> Linear,

        LN(x) = (x − mean) / sqrt(var + eps) · w + b       (biased variance)
        GELU(u) = ½ u (1 + erf(u / √2))                    (nn.GELU's exact form)

    x (T, D) -> (T, P)."""
    T, D = x.shape
    normed = np.empty((T, D), dtype=np.float32)
    for t in range(T):
        mean = x[t].mean()
        var = ((x[t] - mean) ** 2).mean()
        normed[t] = (x[t] - mean) / np.sqrt(var + eps) * norm_w + norm_b
    u = affine(normed, w1, b1)
    inv_sqrt2 = 1.0 / math.sqrt(2.0)
    for t in range(u.shape[0]):
        for j in range(u.shape[1]):
            u[t, j] = 0.5 * u[t, j] * (1.0 + math.erf(u[t, j] * inv_sqrt2))
    return affine(u, w2, b2)


@njit(cache=True, fastmath=True)
def affine(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """x W + b for x (T, D), W (D, K), b (K,), as plain loops: at these sizes (one answer,
    K ≤ 768) a BLAS call per row costs more than the arithmetic."""
    T, D = x.shape
    K = w.shape[1]
    out = np.empty((T, K), dtype=np.float32)
    for t in range(T):
        row = out[t]
        row[:] = b
        for i in range(D):
            xi = x[t, i]
            for k in range(K):
                row[k] += xi * w[i, k]
    return out


@njit(cache=True, fastmath=True)
def bigru_layer(x: np.ndarray, w_ih: np.ndarray, w_hh: np.ndarray, b_ih: np.ndarray,
                b_hh: np.ndarray) -> np.ndarray:
    """One bidirectional GRU layer (PyTorch's gate order r, z, n):

        r_t = σ(W_ir x_t + b_ir + W_hr h_{t−1} + b_hr)
        z_t = σ(W_iz x_t + b_iz + W_hz h_{t−1} + b_hz)
        n_t = tanh(W_in x_t + b_in + r_t ⊙ (W_hn h_{t−1} + b_hn))
        h_t = (1 − z_t) ⊙ n_t + z_t ⊙ h_{t−1}

    x (T, D); w_ih (2, D, 3H), w_hh (2, H, 3H), b_* (2, 3H), direction 0 forward and 1
    backward (it reads the sequence reversed) -> (T, 2H), forward states then backward.
    """
    T, hidden = x.shape[0], w_hh.shape[1]
    out = np.empty((T, 2 * hidden), dtype=np.float32)
    h = np.empty(hidden, dtype=np.float32)
    gh = np.empty(3 * hidden, dtype=np.float32)
    for d in range(2):
        gi = affine(x, w_ih[d], b_ih[d])  # (T, 3H): the input side of every step at once
        w, b = w_hh[d], b_hh[d]
        h[:] = 0.0
        for step in range(T):
            t = step if d == 0 else T - 1 - step
            gh[:] = b  # gh = h W_hh + b_hh
            for i in range(hidden):
                hi = h[i]
                for k in range(3 * hidden):
                    gh[k] += hi * w[i, k]
            for j in range(hidden):
                r = 1.0 / (1.0 + math.exp(-(gi[t, j] + gh[j])))
                z = 1.0 / (1.0 + math.exp(-(gi[t, hidden + j] + gh[hidden + j])))
                n = math.tanh(gi[t, 2 * hidden + j] + r * gh[2 * hidden + j])
                h[j] = n + z * (h[j] - n)  # (1 − z) n + z h; h[j] is read only here
            out[t, d * hidden:(d + 1) * hidden] = h
    return out


@njit(cache=True)
def pooled_logit(states: np.ndarray, k: int, head_w: np.ndarray, head_b: float) -> float:
    """Top-q pooling (Sec. 3.2: the mean of the k states of largest L2 norm) and the
    linear head: w · mean_{t ∈ top-k} h_t + b. states (T, 2H) -> logit."""
    T = states.shape[0]
    norms = np.empty(T)
    for t in range(T):
        norms[t] = np.sqrt(np.sum(states[t].astype(np.float64) ** 2))
    picked = np.argsort(-norms)[:k]
    pooled = np.zeros(states.shape[1])
    for t in picked:
        pooled += states[t]
    return float(np.dot(pooled / k, head_w.astype(np.float64))) + head_b


class SingleAnswerHalt:
    """The weights of a :class:`HaltModel`, laid out for the kernels above."""

    def __init__(self, model: HaltModel):
        sd = {k: v.detach().cpu().numpy().astype(np.float32)
              for k, v in model.state_dict().items()}
        self.top_q = model.config.top_q
        self.projection = (
            sd["projection.norm.weight"], sd["projection.norm.bias"],
            float(model.projection.norm.eps),
            np.ascontiguousarray(sd["projection.fc1.weight"].T), sd["projection.fc1.bias"],
            np.ascontiguousarray(sd["projection.fc2.weight"].T), sd["projection.fc2.bias"])
        self.layers = []
        for layer in range(model.config.num_layers):
            names = (f"l{layer}", f"l{layer}_reverse")
            self.layers.append((
                np.ascontiguousarray(np.stack([sd[f"gru.weight_ih_{n}"].T for n in names])),
                np.ascontiguousarray(np.stack([sd[f"gru.weight_hh_{n}"].T for n in names])),
                np.stack([sd[f"gru.bias_ih_{n}"] for n in names]),
                np.stack([sd[f"gru.bias_hh_{n}"] for n in names])))
        self.head = np.ascontiguousarray(sd["classifier.weight"][0]), \
            float(sd["classifier.bias"][0])
        in_features = self.projection[0].shape[0]
        self.logit(np.zeros((2, in_features), dtype=np.float32))  # compile now, not mid-request
        single_input(np.full((2, in_features - 5), -1.0))

    def logit(self, x: np.ndarray) -> float:
        """The hallucination logit of one answer's (T, 25) input, T >= 1."""
        y = project(np.ascontiguousarray(x, dtype=np.float32), *self.projection)
        for weights in self.layers:
            y = bigru_layer(y, *weights)
        return pooled_logit(y, salient_count(y.shape[0], self.top_q), *self.head)
