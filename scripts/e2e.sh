#!/usr/bin/env bash
# End-to-end test of the real app: builds the front end and the debug app,
# starts Xvfb and a private D-Bus session, tauri-driver (which drives
# WebKitWebDriver), then runs ui/e2e/*.test.mjs against the demo fleet.
# Screenshots go to target/e2e-screenshots/. Skips, saying why, only where
# no display server can be started, and never under CI=true.
# E2E_TESTS="e2e/clouds.test.mjs" runs only the files named (default: all).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
target=${CARGO_TARGET_DIR:-$root/target}

need() { command -v "$1" >/dev/null 2>&1; }
# CI as the Rust tests read it (greenlight_tests::in_ci): true, 1 or yes.
in_ci() { case "$(printf %s "${CI:-}" | tr -d '[:space:]' | tr '[:upper:]' '[:lower:]')" in true | 1 | yes) return 0 ;; *) return 1 ;; esac; }
if ! need Xvfb && [ -z "${DISPLAY:-}" ]; then
  # Under CI a missing prerequisite is a failure, never a skip.
  if in_ci; then
    echo "e2e: no Xvfb and no display here: run scripts/deps.sh (installs xvfb)" >&2
    exit 1
  fi
  echo "e2e: SKIPPED — no Xvfb and no display here (scripts/deps.sh installs xvfb)" >&2
  exit 0
fi
for b in WebKitWebDriver dbus-run-session import gnome-keyring-daemon; do
  need "$b" || { echo "e2e: $b is missing: run scripts/deps.sh" >&2; exit 1; }
done
need tauri-driver || [ -x "$HOME/.cargo/bin/tauri-driver" ] || {
  echo "e2e: tauri-driver is missing: cargo install tauri-driver --locked" >&2; exit 1; }
export PATH="$HOME/.cargo/bin:$PATH"

scripts/ui.sh build
# The app; the simulator (layout.test.mjs runs its own HTTPS cloud); the dock
# demo.test.mjs reads the app badge from (tests/src/bin/fake-dock.rs). Built
# as the whole workspace with every target, like `make test-rust` before it:
# cargo unifies features over the packages and targets it is asked for, so
# `-p greenlight-app -p greenlight-sim` and then `-p greenlight-tests` each
# rebuilt tokio, tauri, axum, reqwest and the rest with another feature set
# (3 min 39 s of a cold CI run, measured 2026-12-01); this is a no-op there.
cargo build --workspace --all-targets
export GREENLIGHT_FAKE_DOCK="$target/debug/fake-dock"

work=$(mktemp -d /tmp/greenlight-e2e.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

if need Xvfb; then
  # A display number nobody uses.
  for n in $(seq 90 130); do
    [ -e "/tmp/.X11-unix/X$n" ] || [ -e "/tmp/.X$n-lock" ] || { disp=":$n"; break; }
  done
  Xvfb "$disp" -screen 0 1100x760x24 -nolisten tcp >"$work/xvfb.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 50); do [ -e "/tmp/.X11-unix/X${disp#:}" ] && break; sleep 0.1; done
  export DISPLAY=$disp
fi

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
native=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$work/home" "$work/run" "$target/e2e-screenshots" "$root/target/e2e-screenshots"
chmod 700 "$work/run"
export HOME="$work/home" XDG_RUNTIME_DIR="$work/run"
export WEBKIT_DISABLE_DMABUF_RENDERER=1 GREENLIGHT_DATA_DIR="$work/data"
export GREENLIGHT_APP="$target/debug/greenlight-app" WEBDRIVER_PORT=$port
export GREENLIGHT_SIM="$target/debug/greenlight-sim"
export SCREENSHOT_DIR="$root/target/e2e-screenshots"
export NO_AT_BRIDGE=1

dbus-run-session -- bash -c '
  # A real keychain (the Secret Service), unlocked, private to this run:
  # accounts added through the form keep their passwords there.
  printf "greenlight-e2e-keyring" | gnome-keyring-daemon --unlock --components=secrets --daemonize >/dev/null 2>&1
  # A dock on this bus: what it hears is the badge a user would see.
  export GREENLIGHT_LAUNCHER_LOG="$2/launcher.log"
  "$GREENLIGHT_FAKE_DOCK" >"$GREENLIGHT_LAUNCHER_LOG" 2>"$2/dock.err" &
  monitor=$!
  for _ in $(seq 1 100); do grep -q ready "$GREENLIGHT_LAUNCHER_LOG" 2>/dev/null && break; sleep 0.1; done
  tauri-driver --port "$WEBDRIVER_PORT" --native-port "$1" >"$2/driver.log" 2>&1 &
  driver=$!
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$WEBDRIVER_PORT") 2>/dev/null && break
    sleep 0.1
  done
  cd ui && timeout 1200 node --test --test-concurrency=1 --test-reporter=spec ${E2E_TESTS:-e2e/*.test.mjs}
  rc=$?
  kill $driver $monitor 2>/dev/null
  [ $rc -ne 0 ] && { echo "--- tauri-driver log"; tail -40 "$2/driver.log"; }
  exit $rc
' _ "$native" "$work"
echo "e2e: screenshots in target/e2e-screenshots/"
