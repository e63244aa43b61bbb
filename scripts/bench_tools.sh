#!/usr/bin/env bash
# Idempotent install of what bench/overhead.py needs:
#   wrk           the load generator (Debian package; C, multi-threaded, Lua-scripted)
#   .bench-venv/  a separate venv with litellm[proxy] (the peer we compare against) and
#                 py-spy (profiling); kept apart so the proxy's pinned dependencies never
#                 touch the project's .venv
# Usage: scripts/bench_tools.sh        (safe to re-run; does nothing when all is present)
set -euo pipefail
cd "$(dirname "$0")/.."

BENCH_VENV="${BENCH_VENV:-.bench-venv}"
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null || PYTHON=python3

if ! command -v wrk >/dev/null; then
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk
fi

if [ ! -x "$BENCH_VENV/bin/litellm" ] || [ ! -x "$BENCH_VENV/bin/py-spy" ]; then
    [ -x "$BENCH_VENV/bin/python" ] || "$PYTHON" -m venv "$BENCH_VENV"
    "$BENCH_VENV/bin/pip" install -q --upgrade pip
    "$BENCH_VENV/bin/pip" install -q 'litellm[proxy]' py-spy
fi

echo "wrk: $(command -v wrk)"
echo "litellm proxy: $BENCH_VENV/bin/litellm ($("$BENCH_VENV/bin/pip" show litellm | sed -n 's/^Version: //p'))"
echo "py-spy: $BENCH_VENV/bin/py-spy"
