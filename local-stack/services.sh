#!/usr/bin/env bash
# Starts, stops and shows the mesh's services on the local stack (after `stack.sh up` and a build).
#
#   local-stack/services.sh start    start every service not already running, wait until ready
#   local-stack/services.sh stop     SIGTERM every service (graceful drain), then wait
#   local-stack/services.sh status   one line per service: pid, /readyz, URL
#
# Binaries come from CARGO_TARGET_DIR (default ~/.cache/switchyard/target)/debug; logs go to
# local-stack/data/logs/<service>.log.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DATA="${SWITCHYARD_DATA_DIR:-$HERE/data}"
RUN="$DATA/run"
LOGS="$DATA/logs"
BIN="${CARGO_TARGET_DIR:-$HOME/.cache/switchyard/target}/${SWITCHYARD_PROFILE:-debug}"
SERVICES=(ingress orchestrator kyc-adapter aml-adapter fraud-adapter cards-adapter payouts-adapter
  openbanking-adapter webhook-normalizer reconciliation)

[ -f "$HERE/endpoints.env" ] || { echo "local stack is not up (run make up)" >&2; exit 1; }
set -a
# shellcheck disable=SC1091
. "$HERE/endpoints.env"
set +a
mkdir -p "$RUN" "$LOGS"

var_of() { local v="${1//-/_}"; echo "${v^^}"; }
alive() { [ -f "$RUN/svc-$1.pid" ] && kill -0 "$(cat "$RUN/svc-$1.pid")" 2>/dev/null; }
ready() { curl -fsS "http://127.0.0.1:$1/readyz" >/dev/null 2>&1; }

start() {
  for s in "${SERVICES[@]}"; do
    alive "$s" && continue
    [ -x "$BIN/$s" ] || { echo "missing binary $BIN/$s (run: cargo build --workspace --bins)" >&2; exit 1; }
    local v port db
    v="$(var_of "$s")"
    port="$(eval echo "\${${v}_HTTP_PORT}")"
    db="$(eval echo "\${${v}_DATABASE_URL}")"
    SWITCHYARD_DATABASE__URL="$db" \
      SWITCHYARD_HTTP__LISTEN="127.0.0.1:$port" \
      SWITCHYARD_KAFKA__BOOTSTRAP_SERVERS="$KAFKA_BOOTSTRAP_SERVERS" \
      SWITCHYARD_REGISTRY__URL="$SCHEMA_REGISTRY_URL" \
      SWITCHYARD_TELEMETRY__LOG_FORMAT=json \
      setsid nohup "$BIN/$s" >>"$LOGS/$s.log" 2>&1 </dev/null &
    echo $! >"$RUN/svc-$s.pid"
  done
  local deadline=$((SECONDS + 120))
  for s in "${SERVICES[@]}"; do
    local v port
    v="$(var_of "$s")"
    port="$(eval echo "\${${v}_HTTP_PORT}")"
    until ready "$port"; do
      alive "$s" || { echo "$s exited during start-up; last log lines:" >&2; tail -n 20 "$LOGS/$s.log" >&2; exit 1; }
      ((SECONDS < deadline)) || { echo "$s not ready after 120 s (log: $LOGS/$s.log)" >&2; exit 1; }
      sleep 0.3
    done
  done
}

stop() {
  for s in "${SERVICES[@]}"; do
    alive "$s" && kill -TERM "$(cat "$RUN/svc-$s.pid")" 2>/dev/null || true
  done
  for s in "${SERVICES[@]}"; do
    for _ in $(seq 1 60); do alive "$s" || break; sleep 0.25; done
    alive "$s" && kill -KILL "$(cat "$RUN/svc-$s.pid")" 2>/dev/null || true
    rm -f "$RUN/svc-$s.pid"
  done
}

status() {
  printf '%-22s %-8s %-10s %s\n' SERVICE PID READYZ URL
  for s in "${SERVICES[@]}"; do
    local v port pid="-" r="down"
    v="$(var_of "$s")"
    port="$(eval echo "\${${v}_HTTP_PORT}")"
    alive "$s" && pid="$(cat "$RUN/svc-$s.pid")"
    ready "$port" && r="ready"
    printf '%-22s %-8s %-10s %s\n' "$s" "$pid" "$r" "http://127.0.0.1:$port"
  done
}

case "${1:-}" in
start) start ;;
stop) stop ;;
status) status ;;
*) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
