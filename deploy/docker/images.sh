#!/usr/bin/env bash
# The images there are: every service the chart deploys, and yardctl (the chart's topic and schema Job).
echo ingress orchestrator kyc-adapter aml-adapter fraud-adapter payouts-adapter cards-adapter \
  openbanking-adapter webhook-normalizer reconciliation yardctl
