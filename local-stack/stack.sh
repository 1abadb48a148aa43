#!/usr/bin/env bash
# The local stack, no Docker: real Apache Kafka (KRaft), a real Confluent-compatible schema registry
# (Apicurio Registry, persisted in PostgreSQL), PostgreSQL and Prometheus, as plain processes.
#
#   local-stack/stack.sh install   fetch/install what is missing (idempotent, fast when present)
#   local-stack/stack.sh up        install, then start whatever is not running; write endpoints.env
#   local-stack/stack.sh down      stop everything (data is kept)
#   local-stack/stack.sh clean     down, then remove all data (local-stack/data)
#   local-stack/stack.sh status    show what runs
#
# Downloads are cached outside the clone (SWITCHYARD_CACHE_DIR, default ~/.cache/switchyard) and in
# Maven's own cache; data lives under local-stack/data only.
set -euo pipefail

KAFKA_VERSION=4.1.1
APICURIO_VERSION=3.3.3

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${SWITCHYARD_CACHE_DIR:-$HOME/.cache/switchyard}"
DATA="${SWITCHYARD_DATA_DIR:-$HERE/data}"
LOGS="$DATA/logs"
RUN="$DATA/run"

KAFKA_PORT="${KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-9093}"
REGISTRY_PORT="${REGISTRY_PORT:-8081}"
PG_PORT="${PG_PORT:-55432}"
PROMETHEUS_PORT="${PROMETHEUS_PORT:-9090}"
# Jaeger (v2, all-in-one, in memory): OTLP/gRPC in, the query API and UI out.
OTLP_PORT="${OTLP_PORT:-4317}"
JAEGER_PORT="${JAEGER_PORT:-16686}"
PG_USER=switchyard
PG_PASSWORD=switchyard

# Databases: one per service, plus the registry's own.
SERVICES=(ingress orchestrator kyc-adapter aml-adapter fraud-adapter cards-adapter payouts-adapter
  openbanking-adapter webhook-normalizer reconciliation)
# HTTP ports of the services (health, metrics; ingress and webhooks also serve their APIs there).
declare -A SERVICE_PORT=([ingress]=8080 [orchestrator]=8101 [kyc-adapter]=8102 [aml-adapter]=8103
  [fraud-adapter]=8104 [cards-adapter]=8105 [payouts-adapter]=8106 [openbanking-adapter]=8107
  [webhook-normalizer]=8090 [reconciliation]=8108)

PG_BIN="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1 || true)"
KAFKA_HOME="$CACHE/kafka-$KAFKA_VERSION"
APICURIO_HOME="$CACHE/apicurio-registry-$APICURIO_VERSION"

# Apicurio Registry 3.3 is built for Java 21+; Kafka runs on the default java (17+). Pick the newest
# JDK on the machine whose major version is at least 21 (this machine kind ships one beside Java 17).
find_java21() {
  local j v
  for j in ${JAVA21_HOME:+$JAVA21_HOME/bin/java} /usr/lib/jvm/*/bin/java "$(command -v java || true)"; do
    [ -x "$j" ] || continue
    v="$("$j" -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p')"
    [ -n "$v" ] && [ "${v%%.*}" -ge 21 ] && { echo "$j"; return 0; }
  done
  return 1
}

log() { printf '[stack] %s\n' "$*" >&2; }
die() { printf '[stack] error: %s\n' "$*" >&2; exit 1; }

db_name() { echo "${1//-/_}"; }

# ---------------------------------------------------------------- install
apt_install() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
  done
  ((${#missing[@]} == 0)) && return 0
  log "installing Debian packages: ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

install_kafka() {
  [ -f "$KAFKA_HOME/.complete" ] && return 0
  command -v mvn >/dev/null || apt_install maven
  log "fetching Apache Kafka $KAFKA_VERSION jars from Maven Central"
  rm -rf "$KAFKA_HOME" && mkdir -p "$KAFKA_HOME/libs"
  mvn -q -B -f "$HERE/kafka/pom.xml" -Dkafka.version="$KAFKA_VERSION" \
    dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$KAFKA_HOME/libs"
  touch "$KAFKA_HOME/.complete"
}

install_apicurio() {
  [ -f "$APICURIO_HOME/.complete" ] && return 0
  command -v mvn >/dev/null || apt_install maven
  log "fetching Apicurio Registry $APICURIO_VERSION from Maven Central"
  rm -rf "$APICURIO_HOME" && mkdir -p "$APICURIO_HOME"
  local tmp
  tmp="$(mktemp -d)"
  mvn -q -B dependency:copy \
    -Dartifact="io.apicurio:apicurio-registry-app:$APICURIO_VERSION:tar.gz:all" -DoutputDirectory="$tmp"
  tar -xzf "$tmp"/apicurio-registry-app-*.tar.gz -C "$APICURIO_HOME"
  rm -rf "$tmp"
  [ -f "$APICURIO_HOME/quarkus-run.jar" ] || die "Apicurio archive has no quarkus-run.jar"
  touch "$APICURIO_HOME/.complete"
}

# Jaeger v2, built from the Go module proxy at the version local-stack/jaeger/go.mod pins (once: the
# binary is cached under the version and the module files' digest).
install_jaeger() {
  export PATH="$PATH:/usr/local/go/bin"
  command -v go >/dev/null || apt_install golang-go
  local sum
  sum="$(cat "$HERE/jaeger/go.mod" "$HERE/jaeger/go.sum" | sha256sum | cut -c1-12)"
  JAEGER_BIN="$CACHE/jaeger-$sum/jaeger"
  [ -x "$JAEGER_BIN" ] && return 0
  log "building Jaeger from the Go module proxy (once; a few minutes)"
  mkdir -p "$CACHE/jaeger-$sum"
  (cd "$HERE/jaeger" && go build -o "$JAEGER_BIN.tmp" github.com/jaegertracing/jaeger/cmd/jaeger)
  mv "$JAEGER_BIN.tmp" "$JAEGER_BIN"
}

install_python_client() {
  # A Confluent client in another language (confluent-kafka for Python), for the interop tests.
  local venv="$CACHE/pyvenv" req="$HERE/../tests/interop/requirements.txt" stamp
  stamp="$(sha256sum "$req" | cut -c1-16)"
  [ -f "$venv/.complete-$stamp" ] && return 0
  log "installing the Python Confluent client into $venv"
  python3 -m venv "$venv" >/dev/null 2>&1 || { apt_install python3-venv; python3 -m venv "$venv"; }
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$req"
  touch "$venv/.complete-$stamp"
}

cmd_install() {
  # Java runs Kafka and the registry; PostgreSQL and Prometheus come from Debian; the C toolchain and
  # headers build librdkafka (bundled by the rdkafka crate).
  command -v java >/dev/null || apt_install openjdk-17-jre-headless
  apt_install postgresql prometheus build-essential pkg-config libssl-dev zlib1g-dev curl openssl
  [ -n "$PG_BIN" ] || PG_BIN="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)"
  install_kafka
  install_apicurio
  install_python_client
  install_jaeger
}

# ---------------------------------------------------------------- helpers
pid_alive() {
  local pid
  [ -f "$RUN/$1.pid" ] || return 1
  pid="$(cat "$RUN/$1.pid")"
  kill -0 "$pid" 2>/dev/null && [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != "Z" ]
}

wait_for() { # name seconds command...
  local name=$1 secs=$2
  shift 2
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || die "$name did not become ready within ${secs}s (logs: $LOGS)"
    sleep 0.5
  done
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

start_bg() { # name logfile command...
  local name=$1 logfile=$2
  shift 2
  setsid nohup "$@" >"$logfile" 2>&1 </dev/null &
  echo $! >"$RUN/$name.pid"
}

as_postgres() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

psql_admin() {
  PGPASSWORD=$PG_PASSWORD psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U "$PG_USER" -d postgres "$@"
}

# ---------------------------------------------------------------- components
start_postgres() {
  local pgdata="$DATA/postgres"
  if [ ! -f "$pgdata/PG_VERSION" ]; then
    log "initialising PostgreSQL cluster in $pgdata"
    mkdir -p "$pgdata"
    [ "$(id -u)" -eq 0 ] && chown postgres:postgres "$pgdata"
    local pwfile
    pwfile="$(mktemp)"
    echo "$PG_PASSWORD" >"$pwfile"
    chmod 644 "$pwfile"
    as_postgres "$PG_BIN/initdb" -D "$pgdata" -U "$PG_USER" --pwfile="$pwfile" -A scram-sha-256 -E UTF8 >/dev/null
    rm -f "$pwfile"
    cat >>"$pgdata/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$pgdata'
max_connections = 400
shared_buffers = 256MB
fsync = on
synchronous_commit = on
wal_level = logical
log_min_messages = warning
EOF
  fi
  if as_postgres "$PG_BIN/pg_ctl" -D "$pgdata" status >/dev/null 2>&1; then
    log "PostgreSQL already running on :$PG_PORT"
  else
    log "starting PostgreSQL on :$PG_PORT"
    as_postgres "$PG_BIN/pg_ctl" -D "$pgdata" -l "$pgdata/server.log" -w -t 60 start >/dev/null
  fi
  wait_for PostgreSQL 60 psql_admin -c "select 1"
  # Logical decoding, for the Debezium relay the bench compares ours with (clusters made before
  # this setting get it once, with a restart).
  if [ "$(psql_admin -tAc 'show wal_level')" != logical ]; then
    log "PostgreSQL: wal_level = logical (restart)"
    psql_admin -c "alter system set wal_level = logical" >/dev/null
    as_postgres "$PG_BIN/pg_ctl" -D "$pgdata" -l "$pgdata/server.log" -m fast -w -t 60 restart >/dev/null
    wait_for PostgreSQL 60 psql_admin -c "select 1"
  fi
  for db in registry "${SERVICES[@]}"; do
    local name
    name="$(db_name "$db")"
    psql_admin -tAc "select 1 from pg_database where datname='$name'" | grep -q 1 ||
      psql_admin -c "create database $name" >/dev/null
  done
}

start_kafka() {
  if pid_alive kafka; then log "Kafka already running on :$KAFKA_PORT"; return 0; fi
  local dir="$DATA/kafka" props="$DATA/kafka/server.properties"
  mkdir -p "$dir/logs"
  cat >"$props" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://localhost:$KAFKA_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$dir/logs
num.partitions=3
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
log.retention.hours=168
EOF
  cat >"$dir/log4j.properties" <<EOF
log4j.rootLogger=WARN, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.server.KafkaServer=INFO
log4j.logger.kafka.server.BrokerServer=INFO
EOF
  local cp="$KAFKA_HOME/libs/*"
  if [ ! -f "$dir/logs/meta.properties" ]; then
    local cluster_id
    cluster_id="$(java -cp "$cp" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n1)"
    log "formatting Kafka storage (cluster $cluster_id)"
    java -cp "$cp" -Dlog4j.configuration="file:$dir/log4j.properties" kafka.tools.StorageTool format \
      -t "$cluster_id" -c "$props" >"$LOGS/kafka-format.log" 2>&1 || { cat "$LOGS/kafka-format.log"; die "kafka storage format failed"; }
  fi
  log "starting Kafka $KAFKA_VERSION (KRaft) on :$KAFKA_PORT"
  start_bg kafka "$LOGS/kafka.log" java -Xms512m -Xmx1g -XX:+UseG1GC -Djava.awt.headless=true \
    -Dlog4j.configuration="file:$dir/log4j.properties" -cp "$cp" kafka.Kafka "$props"
}

registry_ready() { curl -fsS "http://127.0.0.1:$REGISTRY_PORT/apis/ccompat/v7/subjects" >/dev/null; }

start_registry() {
  if pid_alive registry; then log "schema registry already running on :$REGISTRY_PORT"; return 0; fi
  local java21
  java21="$(find_java21)" || die "Apicurio Registry $APICURIO_VERSION needs a Java 21+ runtime; none found under /usr/lib/jvm (set JAVA21_HOME)"
  log "starting Apicurio Registry $APICURIO_VERSION on :$REGISTRY_PORT (SQL storage in PostgreSQL)"
  (
    cd "$APICURIO_HOME"
    export QUARKUS_HTTP_PORT=$REGISTRY_PORT QUARKUS_HTTP_HOST=127.0.0.1 \
      APICURIO_STORAGE_KIND=sql APICURIO_STORAGE_SQL_KIND=postgresql \
      APICURIO_DATASOURCE_URL="jdbc:postgresql://127.0.0.1:$PG_PORT/registry" \
      APICURIO_DATASOURCE_USERNAME=$PG_USER APICURIO_DATASOURCE_PASSWORD=$PG_PASSWORD \
      APICURIO_DATASOURCE_JDBC_INITIAL_SIZE=2 APICURIO_DATASOURCE_JDBC_MIN_SIZE=2 \
      APICURIO_DATASOURCE_JDBC_MAX_SIZE=20 QUARKUS_LOG_LEVEL=WARN
    start_bg registry "$LOGS/registry.log" "$java21" -Xms256m -Xmx768m -jar quarkus-run.jar
  )
}

set_registry_rule() {
  # Apicurio enforces no compatibility unless a rule exists; production registries run BACKWARD.
  local base="http://127.0.0.1:$REGISTRY_PORT/apis/ccompat/v7"
  curl -fsS -X PUT -H 'Content-Type: application/vnd.schemaregistry.v1+json' \
    --data '{"compatibility":"BACKWARD"}' "$base/config" >/dev/null ||
    die "could not set the registry's global BACKWARD compatibility rule"
  curl -fsS "$base/config" | grep -q BACKWARD || die "registry global compatibility is not BACKWARD"
}

start_prometheus() {
  command -v prometheus >/dev/null || { log "prometheus not installed; skipping"; return 0; }
  local dir="$DATA/prometheus" targets=""
  mkdir -p "$dir/tsdb"
  for s in "${SERVICES[@]}"; do targets+="'127.0.0.1:${SERVICE_PORT[$s]}', "; done
  # The project's alert rules are evaluated here too (the demo reads what fired). Their digest is
  # written in the configuration, so a changed rule file reloads a running Prometheus too.
  local rules_digest
  rules_digest=$(cat "$HERE"/../deploy/prometheus/rules/*.yml | sha256sum | cut -c1-16)
  cat >"$dir/prometheus.yml.new" <<EOF
# rules digest: $rules_digest
global:
  scrape_interval: 5s
  evaluation_interval: 15s
rule_files:
  - '$HERE/../deploy/prometheus/rules/*.yml'
scrape_configs:
  - job_name: switchyard
    static_configs:
      - targets: [${targets%, }]
EOF
  if pid_alive prometheus; then
    if ! cmp -s "$dir/prometheus.yml.new" "$dir/prometheus.yml"; then
      mv "$dir/prometheus.yml.new" "$dir/prometheus.yml"
      kill -HUP "$(cat "$RUN/prometheus.pid")"
      log "Prometheus already running on :$PROMETHEUS_PORT; configuration reloaded"
    else
      rm -f "$dir/prometheus.yml.new"
      log "Prometheus already running on :$PROMETHEUS_PORT"
    fi
    return 0
  fi
  mv "$dir/prometheus.yml.new" "$dir/prometheus.yml"
  log "starting Prometheus on :$PROMETHEUS_PORT"
  start_bg prometheus "$LOGS/prometheus.log" prometheus --config.file="$dir/prometheus.yml" \
    --storage.tsdb.path="$dir/tsdb" --web.listen-address="127.0.0.1:$PROMETHEUS_PORT" \
    --storage.tsdb.retention.time=2d
}

start_jaeger() {
  if pid_alive jaeger; then
    log "Jaeger already running on :$JAEGER_PORT"
    return 0
  fi
  log "starting Jaeger (OTLP :$OTLP_PORT, UI and API :$JAEGER_PORT)"
  # The bundled all-in-one configuration: memory storage, OTLP on localhost, the UI.
  start_bg jaeger "$LOGS/jaeger.log" "$JAEGER_BIN"
}

write_endpoints() {
  local f="$HERE/endpoints.env"
  # The operators' token for every service's /admin API (yardctl sends it), made once per stack.
  [ -s "$DATA/admin-token" ] || { umask 077; od -An -tx1 -N24 /dev/urandom | tr -d ' \n' >"$DATA/admin-token"; }
  {
    echo "# written by local-stack/stack.sh up; source it: set -a; . local-stack/endpoints.env; set +a"
    echo "KAFKA_BOOTSTRAP_SERVERS=localhost:$KAFKA_PORT"
    echo "SCHEMA_REGISTRY_URL=http://127.0.0.1:$REGISTRY_PORT/apis/ccompat/v7"
    echo "PROMETHEUS_URL=http://127.0.0.1:$PROMETHEUS_PORT"
    echo "SWITCHYARD_ADMIN__TOKEN=$(cat "$DATA/admin-token")"
    echo "SWITCHYARD_TELEMETRY__OTLP_ENDPOINT=http://127.0.0.1:$OTLP_PORT"
    echo "JAEGER_URL=http://127.0.0.1:$JAEGER_PORT"
    echo "POSTGRES_ADMIN_URL=postgres://$PG_USER:$PG_PASSWORD@127.0.0.1:$PG_PORT/postgres"
    for s in "${SERVICES[@]}"; do
      local var="${s//-/_}"
      var="${var^^}"
      echo "${var}_DATABASE_URL=postgres://$PG_USER:$PG_PASSWORD@127.0.0.1:$PG_PORT/$(db_name "$s")"
    done
    for s in "${SERVICES[@]}"; do
      local var="${s//-/_}"
      var="${var^^}"
      echo "${var}_HTTP_PORT=${SERVICE_PORT[$s]}"
    done
    echo "WEBHOOKS_URL=http://127.0.0.1:${SERVICE_PORT[webhook-normalizer]}"
    for s in "${SERVICES[@]}"; do
      local var="${s//-/_}"
      var="${var^^}"
      echo "${var}_URL=http://127.0.0.1:${SERVICE_PORT[$s]}"
    done
  } >"$f"
  log "endpoints written to $f:"
  grep -v '^#' "$f" | grep -vE '_(DATABASE_URL|HTTP_PORT)=|ADMIN__TOKEN' | sed 's/^/    /' >&2
}

cmd_up() {
  cmd_install
  mkdir -p "$LOGS" "$RUN"
  start_postgres
  start_kafka
  start_registry
  start_prometheus
  start_jaeger
  wait_for Kafka 90 port_open "$KAFKA_PORT"
  wait_for "schema registry" 120 registry_ready
  set_registry_rule
  write_endpoints
  log "stack is up"
}

stop_pid() {
  local name=$1
  pid_alive "$name" || { rm -f "$RUN/$name.pid"; return 0; }
  local pid
  pid="$(cat "$RUN/$name.pid")"
  log "stopping $name ($pid)"
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
  rm -f "$RUN/$name.pid"
}

cmd_down() {
  # Services first (they were started by scripts/services.sh into the same run folder).
  if [ -d "$RUN" ]; then
    for f in "$RUN"/svc-*.pid; do [ -e "$f" ] && stop_pid "$(basename "$f" .pid)"; done
  fi
  stop_pid prometheus
  stop_pid jaeger
  stop_pid registry
  stop_pid kafka
  if [ -f "$DATA/postgres/PG_VERSION" ] && as_postgres "$PG_BIN/pg_ctl" -D "$DATA/postgres" status >/dev/null 2>&1; then
    log "stopping PostgreSQL"
    as_postgres "$PG_BIN/pg_ctl" -D "$DATA/postgres" -m fast -w stop >/dev/null
  fi
  log "stack is down"
}

cmd_clean() {
  cmd_down
  log "removing $DATA"
  rm -rf "$DATA" "$HERE/endpoints.env"
}

cmd_status() {
  for n in kafka registry prometheus; do
    if pid_alive "$n"; then echo "$n: running (pid $(cat "$RUN/$n.pid"))"; else echo "$n: stopped"; fi
  done
  if [ -f "$DATA/postgres/PG_VERSION" ] && as_postgres "$PG_BIN/pg_ctl" -D "$DATA/postgres" status >/dev/null 2>&1; then
    echo "postgres: running"
  else
    echo "postgres: stopped"
  fi
}

case "${1:-}" in
install) cmd_install ;;
up) cmd_up ;;
down) cmd_down ;;
clean) cmd_clean ;;
status) cmd_status ;;
*) echo "usage: $0 install|up|down|clean|status" >&2; exit 2 ;;
esac
