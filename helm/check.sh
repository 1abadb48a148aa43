#!/usr/bin/env bash
# The Helm chart, checked the way CI checks it (`make test` runs it):
#   1. the chart's copies of the alert rules and dashboards are the ones in deploy/;
#   2. the images the chart deploys are the services the workspace builds (deploy/docker/);
#   3. `helm lint --strict` and `helm template` with each value set in helm/ci/ (the schema refuses
#      the bad ones in helm/ci/bad/, each for the reason its first line names);
#   4. every rendered manifest strictly decoded against the Kubernetes API types (and the
#      Prometheus Operator's), and the chart's own rules (non-root, read-only root filesystem, probes,
#      resources, no literal secrets) by helm/validate.
# Helm and the validator are built from the Go module proxy into ~/.cache/switchyard/bin, once.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$HERE/.."
CHART="$HERE/switchyard"
HELM_VERSION=v3.22.0
# The Kubernetes version the manifests are rendered and checked for (a helm built by `go install`
# carries no default of its own worth having).
KUBE_VERSION=1.31.0
BIN="${SWITCHYARD_TOOLS_DIR:-$HOME/.cache/switchyard/bin}"
export PATH="$PATH:/usr/local/go/bin:$BIN"
mkdir -p "$BIN"
command -v go >/dev/null || { echo "go is needed to build helm (the Go toolchain)" >&2; exit 1; }
HELM="$BIN/helm-$HELM_VERSION"
if [ ! -x "$HELM" ]; then
  echo "building helm $HELM_VERSION from the Go module proxy (once)"
  tmp="$(mktemp -d)"
  GOBIN="$tmp" go install "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  mv "$tmp/helm" "$HELM"
  rm -rf "$tmp"
fi
VALIDATE="$BIN/switchyard-validate"
sum="$(cat "$HERE/validate/go.mod" "$HERE/validate/go.sum" "$HERE/validate/main.go" | sha256sum | cut -c1-16)"
if [ ! -x "$VALIDATE" ] || [ "$(cat "$VALIDATE.sum" 2>/dev/null)" != "$sum" ]; then
  echo "building the manifest validator"
  (cd "$HERE/validate" && go build -o "$VALIDATE" .)
  echo "$sum" >"$VALIDATE.sum"
fi

fail=0
# 1. copies in sync
for pair in "deploy/prometheus/rules:files/prometheus" "deploy/grafana:files/grafana"; do
  src="$ROOT/${pair%%:*}" dst="$CHART/${pair##*:}"
  for f in "$src"/*.yml "$src"/*.json; do
    [ -e "$f" ] || continue
    cmp -s "$f" "$dst/$(basename "$f")" || { echo "helm/switchyard/${pair##*:}/$(basename "$f") differs from ${pair%%:*} (run helm/sync.sh)" >&2; fail=1; }
  done
  for f in "$dst"/*; do
    [ -e "$src/$(basename "$f")" ] || { echo "helm/switchyard/${pair##*:}/$(basename "$f") has no source in ${pair%%:*}" >&2; fail=1; }
  done
done
# 2. images = services
images="$("$ROOT/deploy/docker/images.sh")"
for s in $images; do
  [ -f "$ROOT/services/$s/Cargo.toml" ] || [ -f "$ROOT/crates/$s/Cargo.toml" ] || { echo "image $s: no such binary crate" >&2; fail=1; }
  grep -q "\b$s\b" "$ROOT/deploy/docker/Dockerfile" || { echo "image $s: not copied by deploy/docker/Dockerfile" >&2; fail=1; }
  [ "$s" = yardctl ] || grep -q "^  $s:" "$CHART/values.yaml" || { echo "image $s: not a service in values.yaml" >&2; fail=1; }
done
# 3 and 4. lint, render, validate each value set
for values in "$HERE"/ci/*.yaml; do
  name="$(basename "$values")"
  "$HELM" lint --strict --kube-version "$KUBE_VERSION" "$CHART" -f "$values" >/tmp/helm-lint.$$ 2>&1 || { cat /tmp/helm-lint.$$ >&2; echo "helm lint: $name" >&2; fail=1; continue; }
  if out="$("$HELM" template check "$CHART" -f "$values" --namespace switchyard --kube-version "$KUBE_VERSION" 2>&1)"; then
    printf '%s: ' "$name"
    printf '%s\n' "$out" | "$VALIDATE" || { echo "invalid manifests: $name" >&2; fail=1; }
  else
    echo "$out" >&2; echo "helm template: $name" >&2; fail=1
  fi
done
rm -f /tmp/helm-lint.$$
# The validator itself refuses what it must: an unknown field, and a writable root filesystem.
render="$("$HELM" template check "$CHART" --kube-version "$KUBE_VERSION")"
for broken in 's/revisionHistoryLimit:/revisionHistoryLimits:/' 's/readOnlyRootFilesystem: true/readOnlyRootFilesystem: false/'; do
  if sed "$broken" <<<"$render" | "$VALIDATE" >/dev/null 2>&1; then
    echo "the validator accepted manifests broken by '$broken'" >&2; fail=1
  fi
done
for values in "$HERE"/ci/bad/*.yaml; do
  name="$(basename "$values")"
  want="$(sed -n '1s/^# refused: //p' "$values")"
  if out="$("$HELM" template check "$CHART" -f "$values" --kube-version "$KUBE_VERSION" 2>&1)"; then
    echo "bad values accepted: $name" >&2; fail=1
  elif ! grep -qF -- "$want" <<<"$out"; then
    echo "bad values $name refused, but not for \"$want\":" >&2; echo "$out" >&2; fail=1
  else
    echo "$name: refused ($want)"
  fi
done
[ "$fail" = 0 ] && echo "helm chart: linted, rendered and valid with every value set; bad ones refused"
exit "$fail"
