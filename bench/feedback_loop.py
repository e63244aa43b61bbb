"""Learning from live traffic, as a deployment lives it, in one run.

    nice .venv/bin/python bench/feedback_loop.py [--recording recordings/smollm2-135m] \\
        [--limit N] [--concurrency 8] [--halt-epochs 20]

1. A fake upstream (tests/fake_upstream.py) answers each of the recording's prompts with
   the answer the model gave when it was recorded, with its top-20 logprobs.
2. A gateway serves it as ``local/smollm2-135m-instruct``, bound to the shipped bundle
   (the "before"), with the store on (SQLite in a temporary directory) and every
   exchange sampled; one route per source of the corpus (the header
   ``x-hallgate-route``), one profile (HALT and −mean logprob, annotate).
3. The openai SDK sends every prompt; an application then posts each answer's label
   (the recording's: correct / incorrect) to ``/v1/feedback`` with httpx, by the id the
   gateway returned.
4. ``hallgate tune --from-store`` refits the model's bundle from the store (a new version
   in the temporary directory).
5. The old and the new bundle judge the items neither was fitted on: the new bundle's
   held-out half, without the items whose question the old bundle's calibration half
   holds (evaluation/refit_compare.py), within source (= route), with bootstrap CIs.

The last line: ``RESULT items=... held_out=... old_halt=... new_halt=... diff_halt=...``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
MODEL = "local/smollm2-135m-instruct"
POLICY_HEAD = """
version: 1
routes:
"""
PROFILE = """
profiles:
  live:
    extends: strict-factual
    action: annotate
    detectors: {halt: {enabled: true}, mean_logprob: {enabled: true}}
"""


def corpus(recording: Path, limit: int | None) -> list[dict]:
    """The recording's items with their recorded answer and logprobs (OpenAI shape); of
    items asking the same prompt (a few generated sums repeat), the first."""
    from evaluation.recording_data import halt_records

    out, seen = [], set()
    for record in halt_records(recording):
        if record["prompt"] in seen:  # the fake answers a prompt one way: keep the first
            continue
        seen.add(record["prompt"])
        tokens = [{"token": t["token"], "logprob": t["logprob"],
                   "top_logprobs": [{"token": a, "logprob": lp} for a, lp in t["top"]]}
                  for t in record["tokens"]]
        out.append({"id": record["id"], "source": record["source"],
                    "prompt": record["prompt"], "answer": record["answer"],
                    "hallucinated": record["hallucinated"], "tokens": tokens})
    return out[:limit]


def policy(sources: list[str]) -> str:
    routes = "".join(f"  - {{name: {s}, match: {{header: {s}}}, profile: live, "
                     f"store: {{sample: 1.0}}}}\n" for s in sources)
    return (POLICY_HEAD + routes + "  - {name: default, default: true, profile: live}\n"
            + PROFILE)


def metric(url: str, name: str) -> float:
    import re

    import httpx

    found = re.search(rf"^{re.escape(name)} (\S+)$", httpx.get(f"{url}/metrics").text, re.M)
    return float(found.group(1)) if found else 0.0


def recorded_label(item: dict) -> str | None:
    """What the application posts for an answer (None: nothing)."""
    return "incorrect" if item["hallucinated"] else "correct"


def serve_and_label(items: list[dict], work: Path, baseline: Path, concurrency: int,
                    label_of=recorded_label, store: dict | None = None) -> dict:
    """Steps 1-3: the store at ``store`` (settings; default SQLite
    ``work/exchanges.sqlite3``); response id -> item id, and the counts of what
    happened."""
    import httpx
    import openai

    from proxy.app import create_app
    from proxy.config import Settings, UpstreamModel
    from tests.conftest import RunningServer
    from tests.fake_upstream import FakeUpstream, Script

    replies = {i["prompt"]: {"content": i["answer"], "tokens": i["tokens"]} for i in items}
    fake = FakeUpstream(Script(replies=replies)).serve_in_thread()
    sources = sorted({i["source"] for i in items})
    (work / "policy.yaml").write_text(policy(sources))
    settings = Settings(
        models=[UpstreamModel(name=MODEL, provider="openai", model="smollm2",
                              api_base=fake.api_base, timeout_s=30.0,
                              calibration=str(baseline))],
        policy_file=str(work / "policy.yaml"),
        store={"queue_size": 100_000,
               **(store or {"path": str(work / "exchanges.sqlite3")})})
    server = RunningServer(create_app(settings)).start()
    url = server.url
    try:
        def ask(item: dict) -> tuple[str, str, str]:
            client = openai.OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=2,
                                   default_headers={"x-hallgate-route": item["source"]})
            raw = client.chat.completions.with_raw_response.create(
                model=MODEL, messages=[{"role": "user", "content": item["prompt"]}],
                max_tokens=48, temperature=0.7)
            return raw.parse().id, raw.headers["x-hallgate-calibration"], \
                raw.parse().choices[0].message.content or ""

        start = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            answered = list(pool.map(ask, items))
        serve_s = time.perf_counter() - start
        mismatched = sum(a[2] != i["answer"] for a, i in zip(answered, items, strict=True))
        deadline = time.monotonic() + 120
        while metric(url, "hallgate_store_written_total") < len(items):
            if time.monotonic() > deadline:
                raise RuntimeError("the store did not write every exchange")
            time.sleep(0.1)

        def label(pair: tuple[tuple[str, str, str], dict]) -> int | None:
            (response_id, _, _), item = pair
            given = label_of(item)
            if given is None:
                return None
            return httpx.post(f"{url}/v1/feedback", json={"id": response_id, "label": given},
                              timeout=30).status_code

        with ThreadPoolExecutor(concurrency) as pool:
            statuses = list(pool.map(label, zip(answered, items, strict=True)))
    finally:
        server.stop()
        fake.stop()
    return {"ids": {a[0]: i["id"] for a, i in zip(answered, items, strict=True)},
            "bundles": sorted({a[1] for a in answered}), "serve_s": serve_s,
            "answer_mismatch": mismatched,
            "labelled": sum(s == 200 for s in statuses), "label_failed":
            sum(s not in (200, None) for s in statuses)}


def refit(work: Path, baseline: Path, halt_epochs: int) -> tuple[Path, float]:
    """Step 4, as an operator runs it: the CLI in a subprocess."""
    out = work / "bundles" / "smollm2-135m-instruct-refit"
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "hallgate_cli", "tune", "--from-store",
                    f"sqlite:///{work / 'exchanges.sqlite3'}", "--model", MODEL,
                    "--out", str(out), "--baseline", str(baseline),
                    "--halt-epochs", str(halt_epochs)], cwd=REPO, check=True,
                   stdout=subprocess.DEVNULL)
    return out, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--recording", type=Path, default=REPO / "recordings" / "smollm2-135m")
    parser.add_argument("--baseline", type=Path,
                        default=REPO / "calibration" / "bundles" / MODEL)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--halt-epochs", type=int, default=20)
    args = parser.parse_args()

    from calibration.bundle import load_bundle
    from evaluation.refit import store_recording
    from evaluation.refit_compare import before_after, fitted_ids

    items = corpus(args.recording, args.limit)
    with tempfile.TemporaryDirectory(prefix="feedback-loop-") as tmp:
        work = Path(tmp)
        served = serve_and_label(items, work, args.baseline, args.concurrency)
        print(f"served {len(items)} prompts in {served['serve_s']:.1f} s under "
              f"{served['bundles']} ({served['answer_mismatch']} answers differ from the "
              f"recording); labels: {served['labelled']} stored, "
              f"{served['label_failed']} refused")
        out, refit_s = refit(work, args.baseline, args.halt_epochs)
        old, new = load_bundle(args.baseline, names={MODEL}), load_bundle(out, names={MODEL})
        old_fit = fitted_ids(old)  # item ids: the old bundle's calibration half
        exclude = {rid for rid, item in served["ids"].items() if item in old_fit}
        table, figures = before_after(store_recording(out), new, old,
                                      only=set(served["ids"]), exclude=exclude)
    print(f"refit in {refit_s:.1f} s: {old.name} -> {new.name}\n")
    print(table)
    keys = ("old_halt", "new_halt", "diff_halt", "old_combiner", "new_combiner",
            "diff_combiner", "old_halt_answered_rate", "new_halt_answered_rate",
            "old_halt_coverage", "new_halt_coverage")
    shown = " ".join(f"{k}={figures[k]:.3f}" for k in keys
                     if isinstance(figures.get(k), float))
    print(f"RESULT items={len(items)} labelled={served['labelled']} "
          f"held_out={figures['items']} held_out_correct={figures['correct']} {shown} "
          f"refit_s={refit_s:.0f}")


if __name__ == "__main__":
    main()
