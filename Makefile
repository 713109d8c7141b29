# Greenlight: the two commands of the README, and a few more for developers.
#   make demo   run Greenlight on the built-in demo fleet (the desktop app;
#               the terminal demo where there is no display)
#   make test   run every test (installs what it needs if missing)
SHELL := /bin/bash
CARGO ?= cargo

.PHONY: demo demo-terminal demo-sim test test-rust test-ui e2e lint platform-deps audit bench bench-quick deps build ui bindings fmt package package-test soak fuzz fuzz-ci

deps:
	@scripts/deps.sh

# The front end, built into ui/dist (the app embeds it at compile time).
ui:
	@scripts/ui.sh build

build: ui
	$(CARGO) build --workspace

# The desktop app on the demo fleet. With no display (no X11 or Wayland) it
# cannot open a window, so the terminal demo runs instead, saying why.
demo: deps
	@if [ -n "$${DISPLAY:-}$${WAYLAND_DISPLAY:-}" ]; then \
	  scripts/ui.sh build && \
	  $(CARGO) build --release -p greenlight-sim && \
	  GREENLIGHT_DEMO=1 $(CARGO) run --release -p greenlight-app; \
	else \
	  echo "make demo: no display here (DISPLAY and WAYLAND_DISPLAY are unset), so this is the terminal demo; the desktop app needs a desktop session or Xvfb." >&2; \
	  $(CARGO) build --release -p greenlight-sim && \
	  $(CARGO) run --release -p greenlight-cli -- demo; \
	fi

# The demo fleet runs in the simulator (greenlight-sim demo), a separate
# process found beside the app and the CLI: build it first.
demo-terminal: deps
	$(CARGO) build --release -p greenlight-sim
	$(CARGO) run --release -p greenlight-cli -- demo

# The bare simulator, for poking at it with curl and mosquitto_sub.
demo-sim: deps
	$(CARGO) build --release -p greenlight-sim
	@scripts/demo-sim.sh "$$($(CARGO) metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release/greenlight-sim"

test: deps test-rust test-ui e2e package-test fuzz-ci

test-rust: ui
	$(CARGO) test --workspace --all-targets

test-ui:
	@scripts/ui.sh test

# The real app under Xvfb through WebDriver, on the demo fleet.
e2e: deps
	@scripts/e2e.sh

# The .deb bundled from the debug build, installed with dpkg, its app started
# under Xvfb and its CLI run from /usr/bin, then removed (needs root or sudo).
package-test: deps
	@scripts/package-test.sh

# The release packages for people: .deb and .rpm with Tauri's bundler, under
# target/release/bundle/ (or $CARGO_TARGET_DIR/release/bundle/).
package: deps
	@scripts/package.sh

# The SIGKILL crash test at scale: at least 200 kills (SOAK_KILLS) within
# 35 minutes of killing (SOAK_MINUTES), seeded; prints the seed, a replay
# line and the figures (kills, runs, rounds, time, kinds of kill points).
# `make test` runs the same test short. See SECURITY.md.
soak: deps
	@scripts/soak.sh

# Regenerates ui/src/bindings.ts from the Rust commands and types.
bindings: ui
	UPDATE_BINDINGS=1 $(CARGO) test -p greenlight-app --test bindings

lint: ui
	$(CARGO) fmt --all -- --check
	@scripts/platform-deps.sh
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	@scripts/ui.sh check

# The app's dependency graph for Android, iOS, macOS, Windows and Linux
# (cargo tree per target; no SDK or cross toolchain needed): the right
# keychain store and TLS pieces, the desktop-only crates only on desktops.
platform-deps:
	@scripts/platform-deps.sh

# Supply-chain checks (cargo-deny: licences, bans, sources; advisories where
# the RustSec database can be fetched). See SECURITY.md.
audit:
	@scripts/audit.sh

# Benchmarks: prints a table and rewrites BENCHMARKS.md (not a test; loopback
# only, every loop bounded). bench-quick is the short version.
bench: deps
	$(CARGO) run --release -p greenlight-bench -- --write BENCHMARKS.md

bench-quick: deps
	$(CARGO) run --release -p greenlight-bench -- --quick

# Coverage-guided fuzzing (cargo-fuzz, libFuzzer) of every parser that reads
# outside input: each target for FUZZ_SECONDS (default 600) seconds; prints
# executions, coverage and crashes per target, and fails on a crash.
fuzz:
	@scripts/fuzz.sh

# The short run `make test` includes: every target for 10 seconds, so a
# parser change that crashes on the committed corpus, or soon after it,
# fails CI. Built unoptimised (FUZZ_PROFILE=dev): a cold optimised build of
# the 420 crates took 15 min here, too much for every CI run; ten seconds
# at the lower speed still replays the corpus and explores from it.
fuzz-ci:
	@FUZZ_SECONDS=$${FUZZ_SECONDS:-10} FUZZ_PROFILE=$${FUZZ_PROFILE:-dev} scripts/fuzz.sh

fmt:
	$(CARGO) fmt --all
