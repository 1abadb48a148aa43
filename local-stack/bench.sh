#!/usr/bin/env bash
# The mesh under the bench configuration: release binaries, partner and tenant limits above the
# target (5,000/s), simulators completing checks after SWITCHYARD_SIM_COMPLETE_AFTER_MS (default 400),
# and the services reaching PostgreSQL (on this host) over its unix socket rather than loopback TCP
# (SWITCHYARD_BENCH_DB=tcp keeps TCP).
#
#   local-stack/bench.sh start   restart the mesh that way
#   local-stack/bench.sh stop    restart the mesh as `make services` runs it
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DATA="${SWITCHYARD_DATA_DIR:-$HERE/data}"
CFG="$DATA/bench-config"
case "${1:-}" in
  start)
    rm -rf "$CFG" && cp -r "$HERE/config" "$CFG"
    sed -i -E 's/^rate_limit_per_second = .*/rate_limit_per_second = 5000/' "$CFG/routing.toml" "$CFG/ingress.toml"
    sed -i -E 's/^rate_limit_burst = .*/rate_limit_burst = 10000/' "$CFG/ingress.toml"
    # Reports where the partners (and the bench) drop them, whatever the copy's place.
    sed -i -E "s|^reports_dir = .*|reports_dir = \"$DATA/reports\"|" "$CFG/reconciliation.toml"
    "$HERE/services.sh" stop
    socket="$DATA/postgres" over="its unix socket"
    [ "${SWITCHYARD_BENCH_DB:-socket}" = tcp ] && socket="" over="loopback TCP"
    SWITCHYARD_PG_SOCKET_DIR="$socket" SWITCHYARD_PROFILE=release SWITCHYARD_CONFIG_DIR="$CFG" "$HERE/services.sh" start
    echo "bench mesh: release build, partner and tenant limits 5000/s ($CFG), simulators complete after ${SWITCHYARD_SIM_COMPLETE_AFTER_MS:-400} ms, database over $over"
    ;;
  stop)
    "$HERE/services.sh" stop
    "$HERE/services.sh" start
    ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
