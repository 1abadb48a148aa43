# The commands people run are the commands CI runs.
#   make demo   the main job: stack up, build, start every service, run the demo workload
#   make test   stack up, build, alert rules and Helm chart checks, schema compatibility check, every
#               test against the real stack, and
#               a short chaos run (60 flows, every service kind killed twice), the personal
#               data scan (yardctl privacy), then the demo and every dashboard panel's query
#               against Prometheus (yardctl dashboards check)
#   make chaos  the long chaos run: 300 flows, 20 SIGKILLs of each service kind, a Kafka broker kill
#               and a PostgreSQL kill; then again with two instances of the orchestrator and of each
#               adapter; exit 1 on any lost flow, wrong decision or duplicate effect
#   make up / make down / make clean   the local stack alone
SHELL := /bin/bash
export CARGO_TARGET_DIR ?= $(HOME)/.cache/switchyard/target
export CARGO_TERM_COLOR ?= never
STACK := local-stack/stack.sh
YARDCTL := $(CARGO_TARGET_DIR)/debug/yardctl
RELEASE_YARDCTL := $(CARGO_TARGET_DIR)/release/yardctl
ENV := set -a && . local-stack/endpoints.env && set +a

.PHONY: up down clean build schemas services services-stop demo test unit lint fmt bench chaos

up:
	@$(STACK) up

down:
	@$(STACK) down

clean:
	@$(STACK) clean

build:
	cargo build --workspace --bins --tests

schemas: up build
	@$(ENV) && $(YARDCTL) schemas register && $(YARDCTL) topics ensure

services: up build
	@local-stack/services.sh start
	@local-stack/services.sh status

services-stop:
	@local-stack/services.sh stop

demo: services
	@$(ENV) && $(YARDCTL) demo

test: up build
	@# Alert rules: valid, each firing and not firing as its promtool tests say, each with its runbook.
	@deploy/prometheus/check.sh
	@# The Helm chart: lint, render with each value set, every manifest checked against the API types.
	@helm/check.sh
	@$(ENV) && $(YARDCTL) schemas check
	@local-stack/services.sh start
	@# Bounded: a hung test fails the run instead of holding CI until its own limit.
	@$(ENV) && timeout 2400 cargo test --workspace --no-fail-fast
	@# Crash safety, short: every service kind SIGKILLed twice, adapters dying mid-call, calls in doubt.
	@$(ENV) && timeout 900 $(YARDCTL) chaos --flows 60 --kills 2 --window 30
	@# Personal data: flows with marker values at debug log level; logs, dead letters, topics, API scanned.
	@$(ENV) && timeout 600 $(YARDCTL) privacy
	@# Dashboards: the demo's workload through the mesh, then every panel's query asked of the local
	@# Prometheus; an empty or failing panel fails the run.
	@mkdir -p local-stack/data/logs
	@$(ENV) && timeout 900 $(YARDCTL) demo >local-stack/data/logs/test-demo.log 2>&1 || \
		{ tail -40 local-stack/data/logs/test-demo.log; exit 1; }
	@$(ENV) && $(YARDCTL) dashboards check
	@# No card number anywhere: every topic, table, log line and span scanned for PAN-shaped numbers.
	@$(ENV) && timeout 1200 $(YARDCTL) pan-scan

chaos: services
	@$(ENV) && $(YARDCTL) chaos --flows 300 --kills 20 --window 120 --kill-broker --kill-postgres
	@# Two instances of the orchestrator and of each adapter in one consumer group, either one killed.
	@$(ENV) && export SWITCHYARD_SECOND_INSTANCES=orchestrator,kyc-adapter,aml-adapter && \
		local-stack/services.sh start >/dev/null && \
		$(YARDCTL) chaos --flows 300 --kills 20 --window 120; rc=$$?; \
		local-stack/services.sh stop >/dev/null; \
		env -u SWITCHYARD_SECOND_INSTANCES local-stack/services.sh start >/dev/null; exit $$rc

lint:
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings

fmt:
	cargo fmt --all

# Release build; the mesh restarted with partner and tenant limits above the target (local-stack/bench.sh),
# first with the simulators' realistic completion delay (one instance, then two of the orchestrator and
# each adapter), then with none, and whole payout flows (burst, then latency at half that rate); then the relay (and Debezium
# Server's outbox router beside it) and the
# partition stall after a restart; the mesh is left as `make services` runs it.
bench: services
	cargo build --release --workspace --bins
	@local-stack/bench.sh start
	@$(ENV) && $(RELEASE_YARDCTL) bench onboarding --flows 600 --concurrency 20 --target 150
	@# The same with a second instance of the orchestrator and of each adapter (one consumer group each).
	@SWITCHYARD_SECOND_INSTANCES=orchestrator,kyc-adapter,aml-adapter local-stack/bench.sh start
	@$(ENV) && $(RELEASE_YARDCTL) bench onboarding --flows 600 --concurrency 20
	@SWITCHYARD_SECOND_INSTANCES=orchestrator,kyc-adapter,aml-adapter local-stack/services.sh stop >/dev/null
	@SWITCHYARD_SIM_COMPLETE_AFTER_MS=0 local-stack/bench.sh start
	@$(ENV) && $(RELEASE_YARDCTL) bench onboarding --flows 1200 --concurrency 40 --target 300
	@$(ENV) && $(RELEASE_YARDCTL) bench payouts --payouts 600
	@# Reconciliation through the running service: 100,000 outcomes taken in, a 100,000-line report.
	@$(ENV) && $(RELEASE_YARDCTL) bench recon --lines 100000
	@$(ENV) && $(RELEASE_YARDCTL) bench relay --debezium
	@# Card authorization decisions against PostgreSQL: many cards, then one hot card.
	@$(ENV) && $(RELEASE_YARDCTL) bench card-auth --auths 20000 --cards 1000 --concurrency 8
	@$(ENV) && $(RELEASE_YARDCTL) bench card-auth --auths 2000 --cards 1 --concurrency 8
	@# The same decisions as the processors ask them: HTTP to the running cards adapter, outbox and all.
	@$(ENV) && $(RELEASE_YARDCTL) bench card-gateway --auths 20000 --cards 100 --concurrency 16
	@local-stack/bench.sh stop
	@$(ENV) && $(YARDCTL) bench stall
