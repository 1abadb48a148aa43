#!/usr/bin/env bash
# Starts, stops and shows the mesh's services on the local stack (after `stack.sh up` and a build).
#
#   local-stack/services.sh start    start every service not already running, wait until ready
#   local-stack/services.sh stop     SIGTERM every service (graceful drain), then wait
#   local-stack/services.sh status   one line per service: pid, /readyz, URL
#
# SWITCHYARD_SECOND_INSTANCES (e.g. "orchestrator,kyc-adapter,aml-adapter") runs a second instance of
# each service named, in the same consumer group (static member `local-1`), on its port + 1000;
# its pid file and log are `<service>-b`.
#
# Binaries come from CARGO_TARGET_DIR (default ~/.cache/switchyard/target)/SWITCHYARD_PROFILE (default
# debug), configuration from SWITCHYARD_CONFIG_DIR (default local-stack/config); the simulators complete
# checks after SWITCHYARD_SIM_COMPLETE_AFTER_MS (default 400); logs go to
# local-stack/data/logs/<service>.log.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DATA="${SWITCHYARD_DATA_DIR:-$HERE/data}"
RUN="$DATA/run"
LOGS="$DATA/logs"
BIN="${CARGO_TARGET_DIR:-$HOME/.cache/switchyard/target}/${SWITCHYARD_PROFILE:-debug}"
SERVICES=(ingress orchestrator kyc-adapter aml-adapter fraud-adapter cards-adapter payouts-adapter
  openbanking-adapter webhook-normalizer reconciliation)
ROOT="$(cd "$HERE/.." && pwd)"
CONFIG="${SWITCHYARD_CONFIG_DIR:-$HERE/config}"
# Vendor simulators: name, port, extra arguments.
SIMS=(onfido sumsub mesh watchman sift seon wise stripe marqeta lithic truelayer plaid)
declare -A SIM_PORT=([onfido]=9301 [sumsub]=9302 [mesh]=9303 [watchman]=9304 [sift]=9305 [seon]=9306 [wise]=9307
  [stripe]=9308 [marqeta]=9309 [lithic]=9310 [truelayer]=9311 [plaid]=9312)
declare -A SIM_ARGS=([onfido]="--webhook-url http://127.0.0.1:8090/webhooks/kyc-onfido"
  [sumsub]="--webhook-url http://127.0.0.1:8090/webhooks/kyc-sumsub" [mesh]="" [watchman]="" [sift]="" [seon]="" [wise]="--webhook-url http://127.0.0.1:8090/webhooks/payouts-wise --reports-dir $HERE/data/reports/payouts-wise --state-file $HERE/data/sim-wise.json"
  [stripe]="--webhook-url http://127.0.0.1:8090/webhooks/payouts-stripe --reports-dir $HERE/data/reports/payouts-stripe --state-file $HERE/data/sim-stripe.json"
  [marqeta]="--webhook-url http://127.0.0.1:8090/webhooks/cards-marqeta --gateway-url http://127.0.0.1:8105/authorizations/cards-marqeta --state-file $HERE/data/sim-marqeta.json"
  [lithic]="--webhook-url http://127.0.0.1:8090/webhooks/cards-lithic --gateway-url http://127.0.0.1:8105/authorizations/cards-lithic --state-file $HERE/data/sim-lithic.json"
  [truelayer]="--webhook-url http://127.0.0.1:8090/webhooks/openbanking-truelayer --state-file $HERE/data/sim-truelayer.json"
  [plaid]="--state-file $HERE/data/sim-plaid.json")

[ -f "$HERE/endpoints.env" ] || { echo "local stack is not up (run make up)" >&2; exit 1; }
set -a
# shellcheck disable=SC1091
. "$HERE/endpoints.env"
set +a
mkdir -p "$RUN" "$LOGS"

var_of() { local v="${1//-/_}"; echo "${v^^}"; }

# Partner credentials of the local run: generated once, kept with the stack's data, shared by the
# simulators (which issue them) and the services (which present them). Never committed.
secrets() {
  local f="$DATA/secrets.env"
  if [ ! -f "$f" ]; then
    local r
    r() { head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
    {
      echo "ONFIDO_API_TOKEN=$(r)"
      echo "ONFIDO_WEBHOOK_SECRET=$(r)"
      echo "SUMSUB_APP_TOKEN=sbx:$(r)"
      echo "SUMSUB_SECRET_KEY=$(r)"
      echo "SUMSUB_WEBHOOK_SECRET=$(r)"
      echo "MESH_USERNAME=switchyard-$(r | cut -c1-8)"
      echo "MESH_PASSWORD=$(r)"
    } >"$f"
    chmod 600 "$f"
  fi
  # Partners added after the file was made get their credentials appended once.
  if ! grep -q '^SIFT_API_KEY=' "$f"; then
    local r2
    r2() { head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
    {
      echo "SIFT_API_KEY=$(r2)"
      echo "SEON_API_KEY=$(r2)"
    } >>"$f"
    chmod 600 "$f"
  fi
  if ! grep -q '^WISE_API_TOKEN=' "$f"; then
    local r3
    r3() { head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
    {
      echo "WISE_API_TOKEN=$(r3)"
      echo "STRIPE_API_KEY=sk_test_$(r3)"
    } >>"$f"
    chmod 600 "$f"
  fi
  # Wise signs its webhooks with its RSA key; we hold the public half (PKCS#8 and RSAPublicKey DER,
  # base64).
  if ! grep -q '^WISE_WEBHOOK_PUBLIC_KEY=' "$f"; then
    local key
    key="$(mktemp)"
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$key" 2>/dev/null
    {
      echo "WISE_WEBHOOK_PRIVATE_KEY=$(openssl pkcs8 -topk8 -nocrypt -in "$key" -outform DER | base64 -w0)"
      echo "WISE_WEBHOOK_PUBLIC_KEY=$(openssl rsa -in "$key" -RSAPublicKey_out -outform DER 2>/dev/null | base64 -w0)"
    } >>"$f"
    rm -f "$key"
  fi
  if ! grep -q '^STRIPE_WEBHOOK_SECRET=' "$f"; then
    echo "STRIPE_WEBHOOK_SECRET=whsec_$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')" >>"$f"
  fi
  if ! grep -q '^MARQETA_APPLICATION_TOKEN=' "$f"; then
    local r4
    r4() { head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
    {
      echo "MARQETA_APPLICATION_TOKEN=$(r4)"
      echo "MARQETA_ADMIN_TOKEN=$(r4)"
      echo "MARQETA_CALLBACK_USERNAME=switchyard"
      # Marqeta wants 20 to 50 characters for the funding source's and webhook's passwords.
      echo "MARQETA_CALLBACK_PASSWORD=$(r4)"
      echo "MARQETA_WEBHOOK_SECRET=$(r4)"
      echo "LITHIC_API_KEY=$(r4)"
      echo "LITHIC_ASA_SECRET=$(r4)"
      echo "LITHIC_WEBHOOK_SECRET=whsec_$(head -c 24 /dev/urandom | base64 -w0)"
    } >>"$f"
    chmod 600 "$f"
  fi
  if ! grep -q '^TRUELAYER_CLIENT_ID=' "$f"; then
    local r5 key
    r5() { head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
    key="$(mktemp)"
    {
      echo "TRUELAYER_CLIENT_ID=switchyard-$(r5 | cut -c1-8)"
      echo "TRUELAYER_CLIENT_SECRET=$(r5)"
      # Our payment-request signing key (P-521): the private half for the adapter, the public point
      # (the last 133 bytes of its SubjectPublicKeyInfo) for the simulator.
      openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-521 -out "$key" 2>/dev/null
      echo "TRUELAYER_SIGNING_KEY=$(openssl pkcs8 -topk8 -nocrypt -in "$key" -outform DER | base64 -w0)"
      echo "TRUELAYER_SIGNING_PUBLIC=$(openssl pkey -in "$key" -pubout -outform DER | tail -c 133 | base64 -w0)"
      # The simulators' own webhook signing keys (they publish the public halves).
      openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-521 -out "$key" 2>/dev/null
      echo "TRUELAYER_WEBHOOK_PRIVATE_KEY=$(openssl pkcs8 -topk8 -nocrypt -in "$key" -outform DER | base64 -w0)"
      openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$key" 2>/dev/null
      echo "PLAID_WEBHOOK_PRIVATE_KEY=$(openssl pkcs8 -topk8 -nocrypt -in "$key" -outform DER | base64 -w0)"
      echo "PLAID_CLIENT_ID=$(r5 | cut -c1-24)"
      echo "PLAID_SECRET=$(r5)"
    } >>"$f"
    rm -f "$key"
    chmod 600 "$f"
  fi
  # The open-banking adapter's key for the providers' tokens at rest (AES-256).
  if ! grep -q '^OPENBANKING_TOKEN_KEY=' "$f"; then
    echo "OPENBANKING_TOKEN_KEY=$(head -c 32 /dev/urandom | base64 -w0)" >>"$f"
  fi
  set -a
  # shellcheck disable=SC1090
  . "$f"
  set +a
}
# Running, and not a zombie waiting to be reaped (a killed service whose parent is gone can linger as
# one where PID 1 does not reap).
alive() {
  local pid
  [ -f "$RUN/svc-$1.pid" ] || return 1
  pid="$(cat "$RUN/svc-$1.pid")"
  kill -0 "$pid" 2>/dev/null || return 1
  [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != "Z" ]
}
ready() { curl -fsS "http://127.0.0.1:$1/readyz" >/dev/null 2>&1; }

# A running process ($1: pid-file name) whose binary ($2) was rebuilt after it started is stopped, so
# `start` runs what was just built (a test run must never talk to yesterday's code).
stop_if_stale() {
  alive "$1" || return 0
  local pid
  pid="$(cat "$RUN/svc-$1.pid")"
  [ "$2" -nt "/proc/$pid" ] || return 0
  echo "$1: binary rebuilt since it started; restarting"
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$RUN/svc-$1.pid"
}

start_sims() {
  for v in "${SIMS[@]}"; do
    stop_if_stale "sim-$v" "$BIN/provider-sim"
    alive "sim-$v" && continue
    # shellcheck disable=SC2086
    setsid nohup "$BIN/provider-sim" "$v" --listen "127.0.0.1:${SIM_PORT[$v]}" ${SIM_ARGS[$v]} \
      --complete-after-ms "${SWITCHYARD_SIM_COMPLETE_AFTER_MS:-400}" \
      >>"$LOGS/sim-$v.log" 2>&1 </dev/null &
    echo $! >"$RUN/svc-sim-$v.pid"
  done
  for v in "${SIMS[@]}"; do
    local deadline=$((SECONDS + 30))
    until curl -fsS "http://127.0.0.1:${SIM_PORT[$v]}/_sim/health" >/dev/null 2>&1; do
      ((SECONDS < deadline)) || { echo "simulator $v not up (log: $LOGS/sim-$v.log)" >&2; exit 1; }
      sleep 0.2
    done
  done
}

# Instances to run: "<service> <name> <port offset> <static member>", one per line.
instances() {
  local s
  for s in "${SERVICES[@]}"; do echo "$s $s 0 ${SWITCHYARD_KAFKA__GROUP_INSTANCE_ID-local-0}"; done
  local second="${SWITCHYARD_SECOND_INSTANCES:-}"
  for s in ${second//,/ }; do echo "$s $s-b 1000 local-1"; done
}

start() {
  secrets
  cd "$ROOT"
  start_sims
  local s name offset member
  while read -r s name offset member; do
    stop_if_stale "$name" "$BIN/$s"
    alive "$name" && continue
    [ -x "$BIN/$s" ] || { echo "missing binary $BIN/$s (run: cargo build --workspace --bins)" >&2; exit 1; }
    local v port db
    v="$(var_of "$s")"
    port="$(($(eval echo "\${${v}_HTTP_PORT}") + offset))"
    db="$(eval echo "\${${v}_DATABASE_URL}")"
    # Same-host PostgreSQL over its unix socket instead of loopback TCP (the bench mesh).
    if [ -n "${SWITCHYARD_PG_SOCKET_DIR:-}" ]; then
      db="$(sed -E "s#@127\.0\.0\.1:([0-9]+)/([^?]+)#@localhost/\2?host=$SWITCHYARD_PG_SOCKET_DIR\&port=\1#" <<<"$db")"
    fi
    local cfg=""
    [ -f "$CONFIG/$s.toml" ] && cfg="$CONFIG/$s.toml"
    SWITCHYARD_CONFIG="$cfg" SWITCHYARD_DATABASE__URL="$db" \
      SWITCHYARD_HTTP__LISTEN="127.0.0.1:$port" \
      SWITCHYARD_KAFKA__BOOTSTRAP_SERVERS="$KAFKA_BOOTSTRAP_SERVERS" \
      SWITCHYARD_REGISTRY__URL="$SCHEMA_REGISTRY_URL" \
      SWITCHYARD_TELEMETRY__LOG_FORMAT=json \
      SWITCHYARD_KAFKA__GROUP_INSTANCE_ID="$member" \
      setsid nohup "$BIN/$s" >>"$LOGS/$name.log" 2>&1 </dev/null &
    echo $! >"$RUN/svc-$name.pid"
  done < <(instances)
  local deadline=$((SECONDS + 120))
  while read -r s name offset member; do
    local v port
    v="$(var_of "$s")"
    port="$(($(eval echo "\${${v}_HTTP_PORT}") + offset))"
    until ready "$port"; do
      alive "$name" || { echo "$name exited during start-up; last log lines:" >&2; tail -n 20 "$LOGS/$name.log" >&2; exit 1; }
      ((SECONDS < deadline)) || { echo "$name not ready after 120 s (log: $LOGS/$name.log)" >&2; exit 1; }
      sleep 0.3
    done
  done < <(instances)
}

stop() {
  local all=("${SERVICES[@]}" "${SIMS[@]/#/sim-}")
  local f
  for f in "$RUN"/svc-*-b.pid; do [ -e "$f" ] && all+=("$(basename "$f" .pid | sed 's/^svc-//')"); done
  for s in "${all[@]}"; do
    alive "$s" && kill -TERM "$(cat "$RUN/svc-$s.pid")" 2>/dev/null || true
  done
  for s in "${all[@]}"; do
    for _ in $(seq 1 60); do alive "$s" || break; sleep 0.25; done
    alive "$s" && kill -KILL "$(cat "$RUN/svc-$s.pid")" 2>/dev/null || true
    rm -f "$RUN/svc-$s.pid"
  done
}

status() {
  printf '%-22s %-8s %-10s %s\n' SERVICE PID READYZ URL
  local s name offset member
  while read -r s name offset member; do
    local v port pid="-" r="down"
    v="$(var_of "$s")"
    port="$(($(eval echo "\${${v}_HTTP_PORT}") + offset))"
    alive "$name" && pid="$(cat "$RUN/svc-$name.pid")"
    ready "$port" && r="ready"
    printf '%-22s %-8s %-10s %s\n' "$name" "$pid" "$r" "http://127.0.0.1:$port"
  done < <(instances)
  for v in "${SIMS[@]}"; do
    local pid="-" r="down"
    alive "sim-$v" && pid="$(cat "$RUN/svc-sim-$v.pid")"
    curl -fsS "http://127.0.0.1:${SIM_PORT[$v]}/_sim/health" >/dev/null 2>&1 && r="ready"
    printf '%-22s %-8s %-10s %s\n' "sim: $v" "$pid" "$r" "http://127.0.0.1:${SIM_PORT[$v]}"
  done
}

case "${1:-}" in
start) start ;;
stop) stop ;;
status) status ;;
*) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
