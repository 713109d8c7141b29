# Greenlight: the two commands of the README, and a few more for developers.
#   make demo   run Greenlight on the built-in demo fleet
#   make test   run every test (installs mosquitto & co. if missing)
SHELL := /bin/bash
CARGO ?= cargo

.PHONY: demo demo-sim test lint deps build fmt

deps:
	@scripts/deps.sh

build:
	$(CARGO) build --workspace

# Until the desktop app exists, the demo is the terminal one: the simulated
# fleet, the real engine and an interactive approval view.
demo: deps
	$(CARGO) run --release -p greenlight-cli -- demo

# The bare simulator, for poking at it with curl and mosquitto_sub.
demo-sim: deps
	$(CARGO) build --release -p greenlight-sim
	@scripts/demo-sim.sh "$$($(CARGO) metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release/greenlight-sim"

test: deps
	$(CARGO) test --workspace --all-targets

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all
