#!/usr/bin/env bash
# Measures the release app: binary size, cold start to the first window
# under Xvfb (median of N runs), and resident memory at rest on the demo fleet
# (the app and its WebKit processes). Prints one line per figure.
#   scripts/app-figures.sh [runs]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
target=${CARGO_TARGET_DIR:-$(pwd)/target}
app="$target/release/greenlight-app"
[ -x "$app" ] || { echo "build it first: scripts/ui.sh build && cargo build --release -p greenlight-app" >&2; exit 1; }
command -v xwininfo >/dev/null || { echo "xwininfo missing (apt install x11-utils)" >&2; exit 1; }

work=$(mktemp -d /tmp/greenlight-figures.XXXXXX)
for n in $(seq 140 180); do [ -e "/tmp/.X11-unix/X$n" ] || { disp=":$n"; break; }; done
Xvfb "$disp" -screen 0 1100x760x24 -nolisten tcp >/dev/null 2>&1 &
xvfb=$!
trap 'kill $xvfb 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 1 50); do [ -e "/tmp/.X11-unix/X${disp#:}" ] && break; sleep 0.1; done
export DISPLAY=$disp WEBKIT_DISABLE_DMABUF_RENDERER=1 NO_AT_BRIDGE=1 HOME="$work" XDG_RUNTIME_DIR="$work"
chmod 700 "$work"

# Only our own processes: this machine may run other people's apps.
descendants() {
  local c
  for c in $(ps -o pid= --ppid "$1" 2>/dev/null); do
    echo "$c"
    descendants "$c"
  done
}

size=$(stat -c %s "$app")
echo "binary: $(( size / 1024 / 1024 )) MiB ($size bytes) $app"

times=()
for i in $(seq 1 "$runs"); do
  rm -rf "$work/data"
  start=$(date +%s%N)
  GREENLIGHT_DATA_DIR="$work/data" dbus-run-session -- "$app" >/dev/null 2>&1 &
  pid=$!
  until xwininfo -root -tree 2>/dev/null | grep -q '"Greenlight"'; do
    sleep 0.005
    [ $(( ($(date +%s%N) - start) / 1000000 )) -lt 30000 ] || { echo "no window in 30 s" >&2; break; }
  done
  times+=($(( ($(date +%s%N) - start) / 1000000 )))
  for p in $(descendants $pid); do kill "$p" 2>/dev/null || true; done
  kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true
  sleep 0.5
done
sorted=$(printf '%s\n' "${times[@]}" | sort -n | tr '\n' ' ')
median=$(printf '%s\n' "${times[@]}" | sort -n | sed -n "$(( (runs + 1) / 2 ))p")
echo "cold start to first window: median ${median} ms over $runs runs (all: ${sorted})"

# Memory at rest after 20 s, nothing happening: once on an empty data
# directory (what a user's tray app holds all day), once on the demo fleet.
# The demo's simulator is a child process of its own (greenlight-sim demo),
# counted apart from the app and its WebKit processes.
sim="$target/release/greenlight-sim"
at_rest() { # label, extra environment...
  local label=$1; shift
  rm -rf "$work/data"
  env "$@" GREENLIGHT_DATA_DIR="$work/data" dbus-run-session -- "$app" >/dev/null 2>&1 &
  local pid=$! app_pid="" waited=0
  # dbus-run-session is the parent: find the app under it.
  until [ -n "$app_pid" ] || [ $waited -gt 100 ]; do
    app_pid=$(ps -o pid= --ppid $pid -o comm= 2>/dev/null | awk '$2 ~ /greenlight-app/ {print $1}' | head -1)
    sleep 0.1; waited=$((waited + 1))
  done
  [ -n "$app_pid" ] || { echo "$label: the app did not start" >&2; return; }
  sleep 20
  local rss_app rss_web=0 rss_sim=0 r comm
  rss_app=$(awk '/VmRSS/ {print $2}' /proc/$app_pid/status)
  for p in $(descendants $app_pid); do
    r=$(awk '/VmRSS/ {print $2}' /proc/$p/status 2>/dev/null || echo 0)
    comm=$(cat /proc/$p/comm 2>/dev/null || true)
    if [ "$comm" = "greenlight-sim" ]; then rss_sim=$(( rss_sim + ${r:-0} )); else rss_web=$(( rss_web + ${r:-0} )); fi
  done
  # RSS counts every shared-library page the app has touched (WebKitGTK,
  # JavaScriptCore, GTK, Mesa's LLVM under Xvfb), which its WebKit processes
  # and other GTK apps map too; PSS divides those among the sharers, and
  # "private" (USS) is what quitting the app would give back.
  local pss priv
  pss=$(awk '/^Pss:/ {print $2}' /proc/$app_pid/smaps_rollup 2>/dev/null || echo "?")
  priv=$(awk '/^Private_(Clean|Dirty):/ {s += $2} END {print s}' /proc/$app_pid/smaps_rollup 2>/dev/null || echo "?")
  echo "resident at rest ($label): app ${rss_app} KiB (PSS ${pss} KiB, private ${priv} KiB), its WebKit processes ${rss_web} KiB, demo simulator ${rss_sim} KiB"
  for p in $(descendants $pid); do kill "$p" 2>/dev/null || true; done
  kill $pid 2>/dev/null || true
  wait $pid 2>/dev/null || true
}
at_rest "no demo" GREENLIGHT_NOTHING=1
if [ -x "$sim" ]; then
  at_rest "demo fleet" GREENLIGHT_DEMO=1
else
  echo "resident at rest (demo fleet): not measured: $sim is not built" >&2
fi
