"""HALT inference speed: our scorer vs the straight port of the seed (bench/halt_reference.py).

Same inputs, same weights in both, one torch thread. Two workloads: batch 1 at T = 256 and
batch 64 with T uniform in [10, 150] (synthetic log-prob matrices from the reference's
generator; speed does not depend on the values). Each side runs its full inference path:
log-prob matrices -> features -> padded batch -> forward -> sigmoid.

Comparisons, each a throughput ratio measured in this run (one BLAS thread, as in the
gateway):
  1. same architecture, same weights (full and small): implementation speed-up, with the
     largest output difference (must be <= 1e-5);
  2. deployed: our default checkpoint (the small model) vs the seed's module with the full
     recipe architecture (5 x 256), the speed-up a gateway sees from choosing the small
     model; its AUROC is printed next to it from the checkpoint's metadata;
  3. one answer alone (T = 8, 48, 256): the compiled path the scorer takes for a lone answer
     on the event loop (detectors/halt/single.py) vs the same weights through PyTorch, the
     gateway's c=1 case.

    .venv/bin/python bench/halt_speed.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.halt_reference import HALT, HALTConfig, predict_batch  # noqa: E402
from detectors.halt.checkpoint import default_checkpoint_path, load_checkpoint  # noqa: E402
from detectors.halt.data import collate, synthetic_logprobs  # noqa: E402
from detectors.halt.features import halt_input  # noqa: E402
from detectors.halt.model import HaltConfig, HaltModel  # noqa: E402
from detectors.halt.scorer import HaltScorer  # noqa: E402


def workloads(seed: int = 0) -> dict[str, list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    batch64 = [synthetic_logprobs(int(rng.integers(10, 151)), bool(i % 2), rng)
               for i in range(64)]
    return {"b1_T256": [synthetic_logprobs(256, True, rng)], "b64_T10-150": batch64}


def reference_for(model: HaltModel) -> HALT:
    c = model.config
    ref = HALT(HALTConfig(input_dim=c.input_dim, proj_dim=c.proj_dim, hidden_dim=c.hidden_dim,
                          num_layers=c.num_layers, dropout=c.dropout, top_q=c.top_q))
    ref.load_state_dict(model.state_dict())
    return ref.eval()


def timed(fn, repeats: int) -> tuple[float, object]:
    """Best-of-``repeats`` seconds per call (the machine is shared) and the last output."""
    out = fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def measure(scorer: HaltScorer, ref: HALT, batch: list[np.ndarray], repeats: int) -> dict:
    ours_s, ours = timed(lambda: scorer.risks(batch), repeats)
    tensors = [torch.from_numpy(m.astype(np.float32)) for m in batch]
    ref_s, ref_out = timed(lambda: predict_batch(ref, tensors).double().numpy(), repeats)
    return {"ours_per_s": len(batch) / ours_s, "ref_per_s": len(batch) / ref_s,
            "ratio": ref_s / ours_s, "max_abs_diff": float(np.abs(ours - ref_out).max())}


def torch_risks(scorer: HaltScorer, batch: list[np.ndarray]) -> np.ndarray:
    """The PyTorch forward the scorer uses for batches, for any batch size."""
    x, lengths = collate([halt_input(m) for m in batch])
    with torch.inference_mode():
        return torch.sigmoid(scorer.model(x, lengths)).double().numpy()


def single_answer(scorer: HaltScorer, repeats: int, seed: int = 1) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    out: dict[str, float] = {}
    for length in (8, 48, 256):
        answer = [synthetic_logprobs(length, True, rng)]
        single_s, single_out = timed(lambda a=answer: scorer.single_risks(a), repeats * 20)
        torch_s, torch_out = timed(lambda a=answer: torch_risks(scorer, a), repeats * 20)
        out[f"single_T{length}_compiled_x"] = torch_s / single_s
        out[f"single_T{length}_compiled_ms"] = single_s * 1e3
        out[f"single_T{length}_torch_ms"] = torch_s * 1e3
        out[f"single_T{length}_maxdiff"] = float(np.abs(single_out - torch_out).max())
        print(f"single T={length:<4d} small: compiled {single_s * 1e3:.3f} ms  torch "
              f"{torch_s * 1e3:.3f} ms  x{torch_s / single_s:.2f}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    threadpool_limits(1, user_api="blas")
    torch.manual_seed(0)
    loads = workloads()
    ckpt = load_checkpoint(default_checkpoint_path())
    default = HaltScorer(ckpt.model, ckpt.threshold, ckpt.upstream_model)
    full = HaltScorer(HaltModel(HaltConfig.full()).eval(), 0.5, "random full weights")
    result: dict[str, float] = {}
    for name, batch in loads.items():
        for arch, scorer in (("small", default), ("full", full)):
            m = measure(scorer, reference_for(scorer.model), batch, args.repeats)
            print(f"{name:12s} {arch:5s} same weights: ours {m['ours_per_s']:8.1f}/s  "
                  f"ref {m['ref_per_s']:8.1f}/s  x{m['ratio']:.2f}  "
                  f"max|diff| {m['max_abs_diff']:.1e}")
            result[f"{name}_{arch}_impl_x"] = m["ratio"]
            result[f"{name}_{arch}_maxdiff"] = m["max_abs_diff"]
            result[f"{name}_{arch}_ours_per_s"] = m["ours_per_s"]
            result[f"{name}_{arch}_ref_per_s"] = m["ref_per_s"]
        deployed = result[f"{name}_small_ours_per_s"] / result[f"{name}_full_ref_per_s"]
        result[f"{name}_deployed_x"] = deployed
        print(f"{name:12s} deployed: our small default vs the seed's full module x{deployed:.2f}")
    result.update(single_answer(default, args.repeats))
    auroc = ckpt.meta.get("metrics", {}).get("test_auroc", float("nan"))
    print(f"default checkpoint ({ckpt.meta.get('arch')}, {ckpt.meta.get('parameters')} params) "
          f"test AUROC {auroc:.3f}")
    keys = ["b1_T256_deployed_x", "b64_T10-150_deployed_x", "b1_T256_small_impl_x",
            "b64_T10-150_small_impl_x", "b1_T256_full_impl_x", "b64_T10-150_full_impl_x",
            "single_T8_compiled_x", "single_T48_compiled_x", "single_T256_compiled_x"]
    max_diff = max(v for k, v in result.items() if k.endswith("maxdiff"))
    print("RESULT " + " ".join(f"{k}={result[k]:.2f}" for k in keys)
          + f" max_abs_diff={max_diff:.1e} small_test_auroc={auroc:.3f}")


if __name__ == "__main__":
    main()
