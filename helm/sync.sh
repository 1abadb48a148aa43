#!/usr/bin/env bash
# Copies the alert rules and dashboards into the chart (Helm reads files inside the chart only).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
rm -f helm/switchyard/files/prometheus/* helm/switchyard/files/grafana/*
cp deploy/prometheus/rules/*.yml helm/switchyard/files/prometheus/
cp deploy/grafana/*.json helm/switchyard/files/grafana/
