#!/usr/bin/env bash
# Debezium Server (from Maven Central), for the bench's side-by-side of our outbox relay with
# Debezium's outbox event router on the same PostgreSQL and Kafka. Not part of the mesh.
#
#   local-stack/debezium.sh fetch        download and unpack the distribution once (cached)
#   local-stack/debezium.sh run DIR      run it in the foreground with DIR/config/application.properties
#
# The distribution is cached in ${SWITCHYARD_CACHE:-~/.cache/switchyard}/debezium (about 780 MB
# packed). Debezium Server 3 needs Java 21 or newer: the newest JDK under /usr/lib/jvm is used
# (JAVA_HOME overrides).
set -euo pipefail
VERSION=3.6.1.Final
CACHE="${SWITCHYARD_CACHE:-$HOME/.cache/switchyard}/debezium"
DIST="$CACHE/debezium-server-$VERSION"
URL="https://repo1.maven.org/maven2/io/debezium/debezium-server-dist/$VERSION/debezium-server-dist-$VERSION.tar.gz"

fetch() {
  [ -f "$DIST/.unpacked" ] && return 0
  mkdir -p "$CACHE"
  local tgz="$CACHE/debezium-server-dist-$VERSION.tar.gz"
  if [ ! -s "$tgz" ]; then
    echo "[debezium] downloading Debezium Server $VERSION from Maven Central" >&2
    curl -fsSL --retry 3 -o "$tgz.part" "$URL"
    mv "$tgz.part" "$tgz"
  fi
  rm -rf "$DIST" "$CACHE/unpack"
  mkdir -p "$CACHE/unpack"
  tar xzf "$tgz" -C "$CACHE/unpack"
  mv "$CACHE/unpack/debezium-server" "$DIST"
  rmdir "$CACHE/unpack"
  touch "$DIST/.unpacked"
}

java_bin() {
  if [ -n "${JAVA_HOME:-}" ]; then echo "$JAVA_HOME/bin/java"; return; fi
  local best="" best_v=0 j v
  for j in /usr/lib/jvm/*/bin/java; do
    [ -x "$j" ] || continue
    v="$("$j" -version 2>&1 | sed -nE '1s/.*version "([0-9]+).*/\1/p')"
    if [ -n "$v" ] && [ "$v" -gt "$best_v" ]; then best="$j" best_v="$v"; fi
  done
  if [ "$best_v" -lt 21 ]; then
    echo "[debezium] Debezium Server $VERSION needs Java 21 or newer; found none under /usr/lib/jvm" >&2
    exit 3
  fi
  echo "$best"
}

case "${1:-}" in
  fetch) fetch ;;
  run)
    dir="${2:?usage: $0 run DIR}"
    [ -f "$dir/config/application.properties" ] || { echo "no $dir/config/application.properties" >&2; exit 2; }
    fetch
    java="$(java_bin)"
    cd "$dir"
    exec "$java" -Xms256m -Xmx1g --add-opens java.base/java.lang=ALL-UNNAMED -cp "$DIST/debezium-server-dist-$VERSION-runner.jar:$DIST/config/lib:$DIST/lib/*" io.debezium.server.Main
    ;;
  *) echo "usage: $0 fetch|run DIR" >&2; exit 2 ;;
esac
