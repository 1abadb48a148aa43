#!/usr/bin/env bash
# Builds every service's image (and yardctl's) from one workspace build:
#   deploy/docker/build.sh [registry/prefix] [tag]        e.g. ghcr.io/switchyard/ 0.1.0
# Uses docker (BuildKit) or podman, whichever is there.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
prefix="${1:-switchyard/}"
tag="${2:-$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)}"
engine="$(command -v docker || command -v podman || true)"
[ -n "$engine" ] || { echo "neither docker nor podman is installed" >&2; exit 1; }
for s in $(deploy/docker/images.sh); do
  echo "== ${prefix}${s}:${tag}"
  "$engine" build -f deploy/docker/Dockerfile --build-arg "SERVICE=$s" -t "${prefix}${s}:${tag}" .
done
