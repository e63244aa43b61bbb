#!/usr/bin/env bash
# The container, without Docker: what deploy/Dockerfile and the local-model overlay do,
# replayed on this machine, for hosts with no Docker engine (like the dev machines).
#
#   bash deploy/pod_smoke.sh   # ~9 min the first time (torch, llama.cpp), then ~2 min
#
# 1. build stage: the Dockerfile's COPY set into a clean folder, then scripts/bootstrap.sh
#    with VENV, HALLGATE_EDITABLE=0, HALLGATE_EXTRAS=gemma exactly as the Dockerfile runs it;
# 2. the two ConfigMaps as `kubectl kustomize deploy/k8s/overlays/local-model` renders them;
# 3. `hallgate serve` as UID/GID 10001 (when run as root) with the image's environment,
#    only a temp dir and the audit dir writable; /healthz, /readyz, one chat completion,
#    the audit line, /metrics, then SIGTERM and a clean exit of the gateway and its model.
# Differences from the pod: paths under $SMOKE_DIR instead of /etc/hallgate, /tmp and
# /var/log/hallgate (HALLGATE_POLICY_FILE and HALLGATE_AUDIT__PATH point there), and the
# root filesystem is not read-only. Ends with one `RESULT name=value ...` line.
set -euo pipefail
cd "$(dirname "$0")/.."

WORK=${SMOKE_DIR:-/tmp/hallgate-pod-smoke}
# The venv's base Python must be readable by UID 10001 (pyenv's under /root is not).
PYTHON=${SMOKE_PYTHON:-/usr/bin/python3.11}
PORT=${SMOKE_PORT:-18080}
KUBECTL=${KUBECTL:-$(command -v .venv/bin/kubectl || command -v kubectl)}
URL="http://127.0.0.1:$PORT"

echo "pod_smoke: build stage into $WORK/venv"
rm -rf "$WORK/ctx" "$WORK/etc" "$WORK/tmp" "$WORK/log"
mkdir -p "$WORK/ctx/scripts" "$WORK/etc" "$WORK/tmp" "$WORK/log"
cp pyproject.toml README.md "$WORK/ctx/"
cp scripts/bootstrap.sh "$WORK/ctx/scripts/"
cp -r proxy detectors policies hallgate_cli calibration "$WORK/ctx/"
find "$WORK/ctx" -name __pycache__ -prune -exec rm -rf {} +
rm -f "$WORK/venv/.hallgate-installed"   # always install the current tree
(cd "$WORK/ctx" && env PYTHON="$PYTHON" VENV="$WORK/venv" HALLGATE_EDITABLE=0 \
  HALLGATE_EXTRAS=gemma bash scripts/bootstrap.sh)

echo "pod_smoke: ConfigMaps of the local-model overlay into $WORK/etc"
"$KUBECTL" kustomize deploy/k8s/overlays/local-model | "$WORK/venv/bin/python" -c '
import sys, yaml
for doc in yaml.safe_load_all(sys.stdin):
    if doc and doc["kind"] == "ConfigMap":
        for name, text in doc["data"].items():
            open(f"{sys.argv[1]}/{name}", "w").write(text)
' "$WORK/etc"

AS_POD=()
if [ "$(id -u)" = 0 ]; then
  chown 10001:10001 "$WORK/tmp" "$WORK/log"
  AS_POD=(setpriv --reuid=10001 --regid=10001 --clear-groups)
fi
env -i PATH="$WORK/venv/bin:/usr/bin:/bin" HOME="$WORK/tmp" TMPDIR="$WORK/tmp" \
  XDG_CACHE_HOME="$WORK/tmp/.cache" MPLCONFIGDIR="$WORK/tmp/matplotlib" \
  HF_HOME="$WORK/tmp/huggingface" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \
  PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 HALLGATE_EMBEDDED__N_THREADS=2 \
  OMP_NUM_THREADS=2 HALLGATE_POLICY_FILE="$WORK/etc/policy.yaml" \
  HALLGATE_AUDIT__PATH="$WORK/log/audit.jsonl" \
  "${AS_POD[@]}" "$WORK/venv/bin/hallgate" serve --config "$WORK/etc/hallgate.yaml" \
  --host 127.0.0.1 --port "$PORT" > "$WORK/server.log" 2>&1 &
SERVER=$!
trap 'kill "$SERVER" 2>/dev/null || true' EXIT

# wait_for PATH SECONDS: poll until PATH answers 200; prints the seconds it took.
wait_for() {
  local start=$SECONDS
  until [ "$(curl -s -o /dev/null -w '%{http_code}' "$URL$1")" = 200 ]; do
    kill -0 "$SERVER" 2>/dev/null || { tail -20 "$WORK/server.log"; exit 1; }
    [ $((SECONDS - start)) -lt "$2" ] || { echo "pod_smoke: $1 not 200 in $2 s" >&2; exit 1; }
    sleep 0.5
  done
  echo $((SECONDS - start))
}
echo "pod_smoke: serving as UID $( [ ${#AS_POD[@]} -gt 0 ] && echo 10001 || id -u )"
started=$SECONDS
wait_for /healthz 180 > /dev/null
wait_for /readyz 30 > /dev/null
ready_s=$((SECONDS - started))

chat_start=$SECONDS
answer=$(curl -s --max-time 300 "$URL/v1/chat/completions" -H 'Content-Type: application/json' \
  -d '{"model": "local/smollm2-135m-instruct", "max_tokens": 16,
       "messages": [{"role": "user", "content": "What is the capital of Peru?"}]}')
chat_s=$((SECONDS - chat_start))
grep -q '"hallgate"' <<< "$answer" || { echo "pod_smoke: no verdict in: $answer" >&2; exit 1; }
audit_lines=$(wc -l < "$WORK/log/audit.jsonl")
metric_lines=$(curl -s "$URL/metrics" | grep -c '^hallgate_')
rss_kib() { ps -o rss= -p "$1" | tr -d ' '; }
model_pid=$(pgrep -f "llama_cpp.server.*--port" -u "$(ps -o uid= -p "$SERVER" | tr -d ' ')" \
  | head -1)
rss_gateway_mib=$(( $(rss_kib "$SERVER") / 1024 ))
rss_model_mib=$(( $(rss_kib "$model_pid") / 1024 ))

stop_start=$(date +%s%N)
kill -TERM "$SERVER"
wait "$SERVER" || true
stop_ms=$(( ($(date +%s%N) - stop_start) / 1000000 ))
sleep 1
model_left=$(kill -0 "$model_pid" 2>/dev/null && echo 1 || echo 0)
[ "$model_left" = 0 ] || echo "pod_smoke: the llama.cpp child outlived the gateway" >&2
[ "$audit_lines" -ge 1 ] || echo "pod_smoke: no audit line written" >&2

echo "RESULT ready_s=$ready_s chat_s=$chat_s audit_lines=$audit_lines" \
     "metric_lines=$metric_lines rss_gateway_mib=$rss_gateway_mib" \
     "rss_model_mib=$rss_model_mib sigterm_exit_ms=$stop_ms model_left_running=$model_left"
[ "$model_left" = 0 ] && [ "$audit_lines" -ge 1 ]
