"""Prefix HALT: how well the shipped checkpoint judges the first k tokens of an answer.

`streaming: progressive` (docs/POLICIES.md) scores the growing prefix of a streamed answer
every ``rescore_every`` tokens and cuts the stream when the risk crosses a threshold. The
committed checkpoint was trained on whole answers; this measures it, unchanged, on prefixes
of k = 8, 16, 32 tokens and on the full answer, next to −mean token logprob of the same
prefix, on the checkpoint's held-out test split. AUROC with percentile-bootstrap 95%
intervals, pooled, per source and the mean of the per-source AUROCs (DESIGN.md, "Judging a
detector honestly"). An answer shorter than k is scored whole.

The prefix threshold is chosen on the VALIDATION split only, on the statistic the gateway
acts on: the highest risk over the checks at rescore_every, 2·rescore_every, ... tokens
(an answer is cut when any check crosses the threshold). Rule: the lowest threshold whose
false-cut rate on the correct validation answers is no higher than the full-answer HALT's
false-abstain rate there at the checkpoint's own threshold (the issue's target). The test
split then reports the cut rates at that threshold (a simulation from the recorded
logprobs; bench/streaming_gate.py would measure it through the gateway).

    .venv/bin/python bench/halt_prefix.py [--rescore-every 8 --holdback 8] [--write-checkpoint]

``--write-checkpoint`` stores the chosen threshold in the checkpoint JSON under ``prefix``
(no weights change); the gateway's progressive streaming reads it from there.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import typer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from detectors.halt.adapter import logprob_matrix  # noqa: E402
from detectors.halt.causal import CAUSAL_NAME, CHECKPOINT_DIR, load_causal  # noqa: E402
from detectors.halt.checkpoint import default_checkpoint_path  # noqa: E402
from detectors.halt.data import read_records  # noqa: E402
from detectors.halt.metrics import auroc  # noqa: E402
from detectors.halt.scorer import HaltScorer  # noqa: E402
from detectors.logprob_stats.detector import PREFIX_FILE  # noqa: E402
from detectors.metrics import bootstrap_interval  # noqa: E402
from evaluation.data import DEFAULT_DATA_DIR, TRAINING_FILE  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
PREFIXES: tuple[int | None, ...] = (8, 16, 32, None)  # None = the whole answer


@dataclass(frozen=True)
class Answer:
    id: str
    source: str
    label: int  # 1 = hallucinated
    logprobs: np.ndarray  # (T, 20), the adapter's matrix


def load_answers(path: Path, ids: Sequence[str]) -> list[Answer]:
    """The answers with these ids, in the order of ``ids``."""
    wanted = set(ids)
    by_id = {}
    for record in read_records(path):
        if record["id"] in wanted and record.get("tokens"):
            by_id[record["id"]] = Answer(record["id"], record.get("source", "unknown"),
                                         int(bool(record["hallucinated"])),
                                         logprob_matrix(record["tokens"]).values)
    return [by_id[i] for i in ids if i in by_id]


def prefix_risks(scorer: HaltScorer, answers: Sequence[Answer], k: int | None,
                 batch: int = 64) -> np.ndarray:
    """HALT risk of each answer's first k tokens (all of it when k is None). (N,)."""
    mats = [a.logprobs if k is None else a.logprobs[:k] for a in answers]
    return np.concatenate([scorer.risks(mats[i:i + batch]) for i in range(0, len(mats), batch)])


def neg_mean_logprob(answers: Sequence[Answer], k: int | None) -> np.ndarray:
    """−mean selected-token logprob of each answer's first k tokens. (N,)."""
    return np.array([-(a.logprobs if k is None else a.logprobs[:k])[:, 0].mean()
                     for a in answers])


def meanlp_risks(mats: Sequence[np.ndarray]) -> np.ndarray:
    """The `mean_logprob` detector's risk of each (T, 20) matrix: s / (1 + s) with
    s = −(1/T) Σ_t min(log p_t, 0), the running score a prefix stream carries. (N,)."""
    s = np.array([-np.minimum(m[:, 0], 0.0).mean() for m in mats])
    return s / (1.0 + s)


def causal_risks_of(model):
    """Causal HALT's risk of each (T, 20) matrix (its whole-prefix judgement: what its
    stream carries after the matrix's last row). mats -> (N,)."""
    import torch

    from detectors.halt.data import collate
    from detectors.halt.features import halt_input

    @torch.no_grad()
    def risks(mats: Sequence[np.ndarray]) -> np.ndarray:
        x, lengths = collate([halt_input(m) for m in mats])
        logits = model.prefix_logits(x).gather(1, (lengths - 1).view(-1, 1)).squeeze(1)
        return torch.sigmoid(logits).double().numpy()
    return risks


def check_points(n_tokens: int, every: int) -> list[int]:
    """Prefix lengths the gateway scores while streaming: every, 2·every, ... ≤ n_tokens."""
    return list(range(every, n_tokens + 1, every))


def cut_statistics(scorer: HaltScorer, answers: Sequence[Answer], every: int,
                   risks_of=None) -> tuple[np.ndarray, list[list[tuple[int, float]]]]:
    """Per answer, the highest risk over its checks (0 when it is shorter than ``every``)
    and the (prefix length, risk) of every check; ``risks_of`` (mats -> risks) is the
    prefix judge, HALT when None."""
    risks_of = risks_of or scorer.risks
    jobs = [(i, j) for i, a in enumerate(answers) for j in check_points(len(a.logprobs), every)]
    mats = [answers[i].logprobs[:j] for i, j in jobs]
    risks = (np.concatenate([risks_of(mats[s:s + 64]) for s in range(0, len(mats), 64)])
             if mats else np.array([]))
    checks: list[list[tuple[int, float]]] = [[] for _ in answers]
    for (i, j), r in zip(jobs, risks, strict=True):
        checks[i].append((j, float(r)))
    peak = np.array([max((r for _, r in c), default=0.0) for c in checks])
    return peak, checks


def lowest_threshold_within(peak_correct: np.ndarray, max_rate: float) -> float:
    """The lowest t (a midpoint between observed peaks, or above them all) such that
    mean(peak_correct ≥ t) ≤ max_rate."""
    values = np.unique(peak_correct)
    candidates = np.concatenate([(values[1:] + values[:-1]) / 2, [values[-1] + 1e-6]])
    for t in candidates:
        if (peak_correct >= t).mean() <= max_rate:
            return float(t)
    return float(candidates[-1])


def _auroc_cell(scores: np.ndarray, labels: np.ndarray) -> str:
    value = auroc(scores, labels)
    if not np.isfinite(value):
        return "–"
    ci = bootstrap_interval(auroc, scores, labels)
    return f"{value:.3f} [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else f"{value:.3f} [–]"


def auroc_table(scorer: HaltScorer, test: Sequence[Answer], causal=None,
                ) -> tuple[list[str], dict]:
    """Markdown rows (pooled, mean per source, each source) × prefix, and headline numbers;
    ``causal`` (mats -> risks) adds causal HALT's column."""
    labels = np.array([a.label for a in test])
    sources = np.array([a.source for a in test])
    names = sorted(set(sources))
    columns = ["HALT", "−mean-logprob"] + (["causal HALT"] if causal else [])
    rows = ["| prefix | rows | " + " | ".join(f"{c} AUROC [95% CI]" for c in columns) + " |",
            "|---|---|" + "---|" * len(columns)]
    headline = {}
    for k in PREFIXES:
        scores = [prefix_risks(scorer, test, k), neg_mean_logprob(test, k)]
        if causal:
            scores.append(causal([a.logprobs if k is None else a.logprobs[:k] for a in test]))
        tag = "full" if k is None else str(k)
        longer = (f"{sum(len(a.logprobs) > k for a in test)} longer than k" if k
                  else "whole answers")
        rows.append(f"| {tag} | pooled, {len(test)} ({longer}) | "
                    + " | ".join(_auroc_cell(x, labels) for x in scores) + " |")
        means = []
        for x in scores:
            per = [auroc(x[sources == s], labels[sources == s]) for s in names]
            means.append(float(np.mean([p for p in per if np.isfinite(p)])))
        rows.append(f"| {tag} | mean of per-source | "
                    + " | ".join(f"{m:.3f}" for m in means) + " |")
        for s in names:
            m = sources == s
            rows.append(f"| {tag} | {s}, {int(m.sum())} ({int((labels[m] == 0).sum())} "
                        "correct) | " + " | ".join(_auroc_cell(x[m], labels[m])
                                                   for x in scores) + " |")
        for key, x, mean in zip(("halt", "meanlp", "causal"), scores, means, strict=False):
            headline[f"{key}_auroc_{tag}"] = auroc(x, labels)
            headline[f"{key}_source_auroc_{tag}"] = mean
    return rows, headline


def choose_threshold(scorer: HaltScorer, val: Sequence[Answer], every: int,
                     risks_of=None) -> dict:
    """The prefix threshold, from the validation split only (see the module docstring);
    ``risks_of`` as in :func:`cut_statistics` (the target rate is HALT's either way)."""
    labels = np.array([a.label for a in val])
    full = prefix_risks(scorer, val, None)
    false_abstain = float((full[labels == 0] >= scorer.threshold).mean())
    peak, _ = cut_statistics(scorer, val, every, risks_of)
    threshold = lowest_threshold_within(peak[labels == 0], false_abstain)
    return {"threshold": round(threshold, 4), "rescore_every": every,
            "chosen_on": "validation",
            "rule": "lowest threshold whose false-cut rate on correct validation answers "
                    "(highest risk over the checks every rescore_every tokens) is at most "
                    "the full-answer HALT's false-abstain rate at the checkpoint threshold",
            "val_full_false_abstain": round(false_abstain, 4),
            "val_false_cut": round(float((peak[labels == 0] >= threshold).mean()), 4),
            "val_cut_hallucinated": round(float((peak[labels == 1] >= threshold).mean()), 4),
            "command": "bench/halt_prefix.py --write-checkpoint"}


def simulate_cuts(scorer: HaltScorer, test: Sequence[Answer], every: int, holdback: int,
                  threshold: float, risks_of=None) -> dict:
    """Test-split cut rates at ``threshold`` (simulated from the recorded logprobs)."""
    labels = np.array([a.label for a in test])
    full = prefix_risks(scorer, test, None)
    _, checks = cut_statistics(scorer, test, every, risks_of)
    cut_at = [next((j for j, r in c if r >= threshold), None) for c in checks]
    cut = np.array([j is not None for j in cut_at])
    early = np.array([j is not None and j - holdback <= holdback for j in cut_at])
    saved = sum(len(a.logprobs) - j for a, j in zip(test, cut_at, strict=True) if j)
    return {"test_false_cut": float(cut[labels == 0].mean()),
            "test_full_false_abstain": float((full[labels == 0] >= scorer.threshold).mean()),
            "test_cut_hallucinated": float(cut[labels == 1].mean()),
            "test_cut_within_w_hallucinated": float(early[labels == 1].mean()),
            "test_tokens_saved_frac": saved / sum(len(a.logprobs) for a in test)}


def load_corpus(directory: Path) -> list[Answer]:
    """The recorded corpus' answers (results.jsonl: label, source, answer text) with their
    tokens from the recorded exchanges (the chat completion whose content is that text).
    An answer is kept only when its tokens' −mean logprob equals the one the evaluation
    recorded (1e-3 nats), so a text that several calls produced is matched right."""
    by_text: dict[str, list[list]] = {}
    for path in sorted(directory.glob("exchanges*.jsonl.gz")):
        for record in read_records(path):
            for choice in (record.get("response") or {}).get("choices") or ():
                content = ((choice.get("logprobs") or {}).get("content")) or None
                text = (choice.get("message") or {}).get("content")
                if content and text:
                    by_text.setdefault(text, []).append(content)
    out = []
    for row in read_records(directory / "results.jsonl"):
        recorded = (row.get("scores") or {}).get("neg_mean_logprob")
        if recorded is None or row.get("hallucinated") is None:
            continue
        for tokens in by_text.get(row["answer"], ()):
            mat = logprob_matrix(tokens).values
            if abs(-np.minimum(mat[:, 0], 0.0).mean() - recorded) < 1e-3:
                out.append(Answer(row["id"], row["source"], int(bool(row["hallucinated"])),
                                  mat))
                break
    return out


def main(rescore_every: int = typer.Option(8, help="tokens between two prefix checks"),
         holdback: int = typer.Option(8, help="hold-back window W, for the cut simulation"),
         data_dir: Path = typer.Option(DEFAULT_DATA_DIR, help="the shared data directory"),
         recording: Path = typer.Option(REPO / "recordings" / "smollm2-135m",
                                        help="the recorded corpus (its own table)"),
         write_checkpoint: bool = typer.Option(False, help="store the chosen thresholds: "
                                               "HALT's in the checkpoint JSON under "
                                               "`prefix`, −mean-logprob's in "
                                               "detectors/logprob_stats/prefix.json")) -> None:
    meta_path = default_checkpoint_path().with_suffix(".json")
    meta = json.loads(meta_path.read_text())
    scorer = HaltScorer.load_default()
    causal_ckpt = load_causal()
    causal = causal_risks_of(causal_ckpt.model)
    data = data_dir / TRAINING_FILE
    test = load_answers(data, meta["split"]["test_ids"])
    val = load_answers(data, meta["split"]["val_ids"])
    if causal_ckpt.meta["split"]["test_ids"] != meta["split"]["test_ids"]:
        raise SystemExit("the causal checkpoint was not tested on HALT's test split")
    rows, headline = auroc_table(scorer, test, causal)
    print("\n".join(rows))
    prefix = choose_threshold(scorer, val, rescore_every)
    print(json.dumps(prefix, indent=1))
    cuts = simulate_cuts(scorer, test, rescore_every, holdback, prefix["threshold"])
    # the running −mean-logprob prefix stream: its threshold by the same rule, on validation
    meanlp = choose_threshold(scorer, val, rescore_every, meanlp_risks)
    meanlp["command"] = "bench/halt_prefix.py --write-checkpoint"
    print("mean_logprob prefix stream:", json.dumps(meanlp, indent=1))
    meanlp_cuts = simulate_cuts(scorer, test, rescore_every, holdback, meanlp["threshold"],
                                meanlp_risks)
    causal_prefix = choose_threshold(scorer, val, rescore_every, causal)
    print("causal HALT prefix stream:", json.dumps(causal_prefix, indent=1))
    causal_cuts = simulate_cuts(scorer, test, rescore_every, holdback,
                                causal_prefix["threshold"], causal)
    corpus_fields = {}
    if (recording / "results.jsonl").exists():
        corpus = load_corpus(recording)
        rows, corpus_headline = auroc_table(scorer, corpus, causal)
        print(f"\nrecorded corpus ({recording.name}): {len(corpus)} answers, "
              f"{sum(a.label == 0 for a in corpus)} correct")
        print("\n".join(rows))
        at_halt = simulate_cuts(scorer, corpus, rescore_every, holdback, prefix["threshold"])
        at_meanlp = simulate_cuts(scorer, corpus, rescore_every, holdback,
                                  meanlp["threshold"], meanlp_risks)
        at_causal = simulate_cuts(scorer, corpus, rescore_every, holdback,
                                  causal_prefix["threshold"], causal)
        corpus_fields = {**{f"corpus_{k}": v for k, v in corpus_headline.items()},
                         **{f"corpus_halt_{k[5:]}": v for k, v in at_halt.items()
                            if k != "test_full_false_abstain"},
                         "corpus_full_false_abstain": at_halt["test_full_false_abstain"],
                         **{f"corpus_meanlp_{k[5:]}": v for k, v in at_meanlp.items()
                            if k != "test_full_false_abstain"},
                         **{f"corpus_causal_{k[5:]}": v for k, v in at_causal.items()
                            if k != "test_full_false_abstain"},
                         "n_corpus": len(corpus)}
    if write_checkpoint:
        meta["prefix"] = prefix
        meta_path.write_text(json.dumps(meta, indent=1, sort_keys=False) + "\n")
        PREFIX_FILE.write_text(json.dumps({"detectors": {"mean_logprob": meanlp}}, indent=1)
                               + "\n")
        causal_path = (CHECKPOINT_DIR / CAUSAL_NAME).with_suffix(".json")
        causal_meta = json.loads(causal_path.read_text())
        causal_meta["prefix"] = {**causal_prefix, "test": causal_cuts}
        causal_path.write_text(json.dumps(causal_meta, indent=1) + "\n")
    fields = {**headline, "prefix_threshold": prefix["threshold"],
              "rescore_every": rescore_every, "holdback": holdback, **cuts,
              "meanlp_prefix_threshold": meanlp["threshold"],
              **{f"meanlp_{k}": v for k, v in meanlp_cuts.items()
                 if k != "test_full_false_abstain"},
              "causal_prefix_threshold": causal_prefix["threshold"],
              **{f"causal_{k}": v for k, v in causal_cuts.items()
                 if k != "test_full_false_abstain"},
              "n_test": len(test), "n_val": len(val), **corpus_fields}
    print("RESULT " + " ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                               for k, v in fields.items()))


if __name__ == "__main__":
    typer.run(main)
