#!/usr/bin/env bash
# Install the real servers the tests start, from Debian: for the upstream conformance
# suite (tests/proxy/conformance/) nginx (TLS with a private CA, redirects, HTML pages,
# gzip, chunked streams, short keep-alive) and tinyproxy (a CONNECT forward proxy with
# Basic credentials); for the exchange store's tests (tests/proxy/store/) PostgreSQL
# (initdb and pg_ctl on a temporary directory, tests/postgres_server.py). The tests run them as the test user on free loopback ports with their own
# config files; the packages' system services are never started. Needs root (or
# password-less sudo) for apt-get; without it, or if apt-get fails, this script only
# warns: those tests then fail with the reason under CI=true and skip otherwise.
set -uo pipefail

PACKAGES=(nginx tinyproxy postgresql)
have_all() {
  { command -v nginx || [ -x /usr/sbin/nginx ]; } >/dev/null \
    && { command -v tinyproxy || [ -x /usr/bin/tinyproxy ]; } >/dev/null \
    && { command -v initdb || compgen -G "/usr/lib/postgresql/*/bin/initdb"; } >/dev/null
}

if have_all; then
  exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
  SUDO=()
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
  SUDO=(sudo -n)
else
  echo "install_test_servers: WARNING: not root and no password-less sudo; cannot install" \
       "${PACKAGES[*]}: the tests that start them will fail under CI=true and skip otherwise" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
# the packages' own services are not used: the tests start their own instances
install_packages() {
  "${SUDO[@]}" apt-get install -y -q --no-install-recommends "${PACKAGES[@]}"
}
if ! install_packages; then
  "${SUDO[@]}" apt-get update -q && install_packages \
    || echo "install_test_servers: WARNING: apt-get could not install ${PACKAGES[*]};" \
            "the tests that start them will fail under CI=true and skip otherwise" >&2
fi
