# The commands people run are the commands CI runs.
#   make demo   the main job: stack up, build, start every service, run the demo workload
#   make test   stack up, build, schema compatibility check, every test against the real stack
#   make up / make down / make clean   the local stack alone
SHELL := /bin/bash
export CARGO_TARGET_DIR ?= $(HOME)/.cache/switchyard/target
export CARGO_TERM_COLOR ?= never
STACK := local-stack/stack.sh
YARDCTL := $(CARGO_TARGET_DIR)/debug/yardctl
ENV := set -a && . local-stack/endpoints.env && set +a

.PHONY: up down clean build schemas services services-stop demo test unit lint fmt bench

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
	@$(ENV) && $(YARDCTL) schemas check
	@local-stack/services.sh start
	@# Bounded: a hung test fails the run instead of holding CI until its own limit.
	@$(ENV) && timeout 2400 cargo test --workspace --no-fail-fast

lint:
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings

fmt:
	cargo fmt --all

bench: services
	@$(ENV) && $(YARDCTL) bench relay
	@$(ENV) && $(YARDCTL) bench onboarding
