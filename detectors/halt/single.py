"""HALT's forward pass for one answer, in numpy: the gateway's common case.

At c=1 the gateway scores one short answer at a time, and PyTorch's per-operator dispatch
costs more than the arithmetic (bench/halt_speed.py: about 2x the time of this path for
answers of 1 to 128 tokens, one thread). This is the same network as
:class:`detectors.halt.model.HaltModel`, with its weights, in float32; batches still go
through PyTorch. ``tests/detectors/halt/test_single.py`` checks the two agree.

    single = SingleAnswerHalt(model)     # copies the weights once
    logit = single.logit(x)              # x: (T, 25) float32 -> float
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import erf, expit

from detectors.halt.model import HaltModel, salient_count


def layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    """(x − mean) / sqrt(var + eps) · weight + bias over the last axis (biased variance)."""
    mean = x.mean(axis=-1, keepdims=True)
    var = x.var(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * weight + bias


def gelu(x: np.ndarray) -> np.ndarray:
    """GELU(x) = x · Φ(x) = ½ x (1 + erf(x / √2)), the exact form nn.GELU computes."""
    return 0.5 * x * (1.0 + erf(x * np.float32(1.0 / math.sqrt(2.0))))


def bigru_layer(x: np.ndarray, w_ih: np.ndarray, w_hh: np.ndarray, b_ih: np.ndarray,
                b_hh: np.ndarray) -> np.ndarray:
    """One bidirectional GRU layer (PyTorch's gate order r, z, n), both directions at once:

        r_t = σ(W_ir x_t + b_ir + W_hr h_{t−1} + b_hr)
        z_t = σ(W_iz x_t + b_iz + W_hz h_{t−1} + b_hz)
        n_t = tanh(W_in x_t + b_in + r_t ⊙ (W_hn h_{t−1} + b_hn))
        h_t = (1 − z_t) ⊙ n_t + z_t ⊙ h_{t−1}

    x (T, D); w_ih (2, D, 3H), w_hh (2, H, 3H), b_* (2, 3H), direction 0 forward and 1
    backward (it reads the sequence reversed) -> (T, 2H), forward states then backward.
    """
    T, hidden = x.shape[0], w_hh.shape[1]
    gi = np.matmul(x[None], w_ih) + b_ih[:, None]  # (2, T, 3H)
    gi[1] = gi[1, ::-1]
    h = np.zeros((2, 1, hidden), dtype=np.float32)  # (2, 1, H)
    out = np.empty((T, 2, hidden), dtype=np.float32)
    for t in range(T):
        gh = np.matmul(h, w_hh)[:, 0] + b_hh  # (2, 3H)
        g = gi[:, t]  # (2, 3H)
        rz = expit(g[:, : 2 * hidden] + gh[:, : 2 * hidden])  # (2, 2H)
        n = np.tanh(g[:, 2 * hidden:] + rz[:, :hidden] * gh[:, 2 * hidden:])  # (2, H)
        h_t = n + rz[:, hidden:] * (h[:, 0] - n)  # (1 − z) n + z h
        out[t] = h_t
        h = h_t[:, None]
    out[:, 1] = out[::-1, 1].copy()  # the backward states back in time order
    return out.reshape(T, 2 * hidden)


def top_q_pool_one(hidden: np.ndarray, q: float) -> np.ndarray:
    """Mean of the ceil(q·T) states of largest L2 norm (Sec. 3.2). (T, D) -> (D,)."""
    k = salient_count(hidden.shape[0], q)
    salience = np.linalg.norm(hidden, axis=1)  # (T,)
    picked = np.argpartition(-salience, k - 1)[:k] if k < hidden.shape[0] else slice(None)
    return hidden[picked].mean(axis=0)


class SingleAnswerHalt:
    """The weights of a :class:`HaltModel`, laid out for :func:`bigru_layer`."""

    def __init__(self, model: HaltModel):
        sd = {k: v.detach().cpu().numpy().astype(np.float32)
              for k, v in model.state_dict().items()}
        self.top_q = model.config.top_q
        self.eps = float(model.projection.norm.eps)
        self.norm = sd["projection.norm.weight"], sd["projection.norm.bias"]
        self.fc1 = np.ascontiguousarray(sd["projection.fc1.weight"].T), sd["projection.fc1.bias"]
        self.fc2 = np.ascontiguousarray(sd["projection.fc2.weight"].T), sd["projection.fc2.bias"]
        self.layers = []
        for layer in range(model.config.num_layers):
            names = (f"l{layer}", f"l{layer}_reverse")
            self.layers.append((
                np.ascontiguousarray(np.stack([sd[f"gru.weight_ih_{n}"].T for n in names])),
                np.ascontiguousarray(np.stack([sd[f"gru.weight_hh_{n}"].T for n in names])),
                np.stack([sd[f"gru.bias_ih_{n}"] for n in names]),
                np.stack([sd[f"gru.bias_hh_{n}"] for n in names])))
        self.head = sd["classifier.weight"][0], float(sd["classifier.bias"][0])

    def logit(self, x: np.ndarray) -> float:
        """The hallucination logit of one answer's (T, 25) input, T >= 1."""
        y = layer_norm(np.asarray(x, dtype=np.float32), *self.norm, self.eps)
        y = gelu(y @ self.fc1[0] + self.fc1[1]) @ self.fc2[0] + self.fc2[1]  # (T, proj)
        for weights in self.layers:
            y = bigru_layer(y, *weights)  # (T, 2H)
        pooled = top_q_pool_one(y, self.top_q)  # (2H,)
        return float(pooled @ self.head[0]) + self.head[1]
