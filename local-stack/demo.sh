#!/usr/bin/env bash
# The demo workload: shows the running mesh. (Run through `make demo`, which starts everything first.)
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
set -a
# shellcheck disable=SC1091
. "$HERE/endpoints.env"
set +a

echo
echo "== switchyard: the mesh is running =="
"$HERE/services.sh" status
echo
echo "Schema registry subjects: $(curl -fsS "$SCHEMA_REGISTRY_URL/subjects" | tr -cd ',' | wc -c | awk '{print $1+1}') (global rule: $(curl -fsS "$SCHEMA_REGISTRY_URL/config"))"
echo "Kafka: $KAFKA_BOOTSTRAP_SERVERS   Prometheus: $PROMETHEUS_URL   Ingress: $INGRESS_URL   Webhooks: $WEBHOOKS_URL"
echo
echo "Relay status (switchyard_outbox_relay_active per service):"
for url in $INGRESS_URL $ORCHESTRATOR_URL $KYC_ADAPTER_URL $AML_ADAPTER_URL; do
  curl -fsS "$url/metrics" | grep '^switchyard_outbox_relay_active' || true
done
echo
echo "Stop the services with 'make services-stop', the whole stack with 'make down'."
