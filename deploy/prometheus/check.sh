#!/usr/bin/env bash
# The alert rules: valid (`promtool check rules`), each firing and not firing as its tests say
# (`promtool test rules`), each naming a runbook that exists. `make test` runs it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
command -v promtool >/dev/null || { echo "promtool missing: make up installs Prometheus" >&2; exit 1; }
promtool check rules rules/*.yml
(cd tests && promtool test rules ./*.test.yml)
missing=0
for r in $(grep -ho 'runbook_url: .*' rules/*.yml | awk '{print $2}'); do
  [ -f "../../$r" ] || { echo "runbook missing: $r" >&2; missing=1; }
done
alerts=$(grep -c '^      - alert:' rules/*.yml | awk -F: '{s+=$NF} END {print s}')
tested=$(grep -ho 'alertname: [A-Za-z]*' tests/*.yml | sort -u | wc -l)
[ "$alerts" = "$tested" ] || { echo "$alerts alerts, $tested with tests" >&2; missing=1; }
[ "$missing" = 0 ] && echo "alert rules: $alerts, each tested and with its runbook"
exit "$missing"
