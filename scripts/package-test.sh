#!/usr/bin/env bash
# The package test (`make package-test`, part of `make test`): builds the .deb
# from the debug build `make test` already made (or takes the .deb given:
# `scripts/package-test.sh FILE.deb`), checks its control file and
# contents, installs it on this machine with dpkg, runs the installed
# `greenlight --version`, `greenlight-sim --help` and `greenlight demo` (which
# must find the installed simulator), starts the installed app
# from its desktop entry under Xvfb and a private D-Bus session until its
# window "Greenlight" is mapped and drawn, takes a screenshot
# (target/e2e-screenshots/package-installed.png), stops the app and removes
# the package, checking that its files are gone. The package is removed even
# when a step fails.
# Refuses to run (exit 1) when a Greenlight package, or a file the package
# would own, is already on the machine: it would be replaced, then removed.
# With CI=true a missing prerequisite fails the test; elsewhere it skips,
# saying why.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
t0=$SECONDS

say() { echo "package-test: $*" >&2; }
die() { say "FAILED — $*"; exit 1; }
# CI as the Rust tests read it (greenlight_tests::in_ci): true, 1 or yes.
in_ci() { case "$(printf %s "${CI:-}" | tr -d '[:space:]' | tr '[:upper:]' '[:lower:]')" in true | 1 | yes) return 0 ;; *) return 1 ;; esac; }
skip() {
  if in_ci; then die "$* (under CI a missing prerequisite is a failure)"; fi
  say "SKIPPED — $*"
  exit 0
}
need() { command -v "$1" >/dev/null 2>&1; }

# Prerequisites: dpkg, root (or sudo without a password), a virtual display,
# the X tools that find the window and take the screenshot.
need dpkg && need dpkg-deb && need dpkg-query || skip "no dpkg here: the .deb can only be tested on Debian or a derivative"
for b in Xvfb xwininfo dbus-run-session import identify setsid timeout; do
  need "$b" || skip "$b is missing: run scripts/deps.sh (installs xvfb, x11-utils, dbus, imagemagick)"
done
SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  if need sudo && sudo -n true 2>/dev/null; then SUDO=(sudo -n); else
    skip "installing a .deb needs root, and sudo asks for a password here"
  fi
fi

# Nothing of ours may be installed already: dpkg -i would upgrade it and the
# clean-up would then remove somebody's installation.
pkgs=$(dpkg-query -W -f='${db:Status-Abbrev} ${Package}\n' 'greenlight*' 2>/dev/null | awk '$1 ~ /^.i/ {print $2}' || true)
if [ -n "$pkgs" ]; then
  say "REFUSED — a Greenlight package is already installed ($(echo $pkgs)); this test installs and then removes one."
  say "Remove it first (sudo dpkg -r $(echo $pkgs)) or run the test on another machine."
  exit 1
fi
for f in /usr/bin/greenlight /usr/bin/greenlight-app /usr/bin/greenlight-sim; do
  if [ -e "$f" ]; then
    say "REFUSED — $f exists ($(dpkg -S "$f" 2>/dev/null || echo 'not from a package')); installing the test package would overwrite it and removing it would delete it."
    exit 1
  fi
done

if [ -z "${CARGO_TARGET_DIR:-}" ]; then
  CARGO_TARGET_DIR=$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
fi
export CARGO_TARGET_DIR

# 1. The .deb: the one given (e.g. `make package`'s release .deb), or one
# bundled from the debug build.
if [ $# -gt 0 ]; then
  deb=$(realpath "$1")
  [ -f "$deb" ] || die "$1: no such file"
else
  tb=$SECONDS
  scripts/package.sh --debug --bundles deb
  debs=("$CARGO_TARGET_DIR"/debug/bundle/deb/*.deb)
  [ ${#debs[@]} -eq 1 ] && [ -f "${debs[0]}" ] || die "expected one .deb in $CARGO_TARGET_DIR/debug/bundle/deb, found: ${debs[*]}"
  deb=${debs[0]}
  say "bundled $deb in $((SECONDS - tb)) s"
fi

# 2. Its control file and contents.
pkg=$(dpkg-deb -f "$deb" Package)
version=$(dpkg-deb -f "$deb" Version)
case "$(dpkg-query -W -f='${db:Status-Abbrev}' "$pkg" 2>/dev/null || true)" in
  ?i*) say "REFUSED — $pkg is already installed; remove it first (sudo dpkg -r $pkg)"; exit 1 ;;
esac
depends=$(dpkg-deb -f "$deb" Depends)
say "package $pkg $version, Depends: $depends"
for d in libwebkit2gtk-4.1-0 libgtk-3-0 libayatana-appindicator3-1; do
  [[ ", $depends," == *", $d"[\ ,]* ]] || die "Depends lacks $d: $depends"
done
contents=$(dpkg-deb -c "$deb" | awk '{print $6}' | sed -E 's|^\.?/?|/|; s|/$||')
for f in /usr/bin/greenlight-app /usr/bin/greenlight /usr/bin/greenlight-sim; do
  grep -qx "$f" <<<"$contents" || die "$f is not in the package"
done
for s in 16x16 32x32 48x48 64x64 128x128 256x256 512x512; do
  grep -q "^/usr/share/icons/hicolor/$s/apps/.*\.png$" <<<"$contents" || die "no $s icon in the package"
done
desktop=$(grep '^/usr/share/applications/.*\.desktop$' <<<"$contents") || die "no desktop entry in the package"
[ "$(wc -l <<<"$desktop")" -eq 1 ] || die "several desktop entries: $desktop"

# 3. Install it; from here on the trap removes it.
work=$(mktemp -d /tmp/greenlight-package-test.XXXXXX)
installed=0
app_pid=""
demo_pid=""
xvfb_pid=""
cleanup() {
  rc=$?
  [ -n "$demo_pid" ] && { kill -KILL -- "-$demo_pid" 2>/dev/null || true; }
  [ -n "$app_pid" ] && { kill -KILL -- "-$app_pid" 2>/dev/null || true; }
  [ -n "$xvfb_pid" ] && { kill "$xvfb_pid" 2>/dev/null || true; }
  if [ "$installed" = 1 ]; then
    say "clean-up: removing $pkg"
    "${SUDO[@]}" dpkg -P "$pkg" >/dev/null 2>&1 || say "clean-up: dpkg -P $pkg failed; remove it by hand"
  fi
  rm -rf "$work"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

installed=1
"${SUDO[@]}" dpkg -i "$deb" >"$work/dpkg-i.log" 2>&1 || { cat "$work/dpkg-i.log" >&2; die "dpkg -i $deb failed"; }
[ "$(dpkg-query -W -f='${db:Status-Abbrev}' "$pkg")" = "ii " ] || die "$pkg is not fully installed after dpkg -i"

# 4. The installed command-line tools, from /usr/bin.
v=$(timeout 20 /usr/bin/greenlight --version) || die "/usr/bin/greenlight --version failed"
say "installed greenlight --version: $v"
[[ "$v" == *"${version%%-*}"* ]] || die "greenlight --version says '$v', the package is $version"
timeout 20 /usr/bin/greenlight-sim --help >"$work/sim-help.txt" 2>&1 || { cat "$work/sim-help.txt" >&2; die "/usr/bin/greenlight-sim --help failed"; }
mkdir -p "$work/home" "$work/run" "$work/data" "$work/cli-data"
chmod 700 "$work/run"
# The installed CLI finds the installed simulator beside it (no
# GREENLIGHT_SIM, only /usr/bin and /bin on PATH): its demo fleet lists the
# pending updates within 30 s. Stopped there (the simulator exits with it).
td=$SECONDS
env -u GREENLIGHT_SIM -u GREENLIGHT_DATA_DIR -u DBUS_SESSION_BUS_ADDRESS PATH=/usr/bin:/bin HOME="$work/home" \
  XDG_RUNTIME_DIR="$work/run" \
  setsid /usr/bin/greenlight --data-dir "$work/cli-data" demo --approve-all --exit-when-done \
  </dev/null >"$work/demo.log" 2>&1 &
demo_pid=$!
for _ in $(seq 1 150); do
  grep -q 'update(s) waiting for your approval' "$work/demo.log" && break
  kill -0 "$demo_pid" 2>/dev/null || break
  sleep 0.2
done
kill -TERM -- "-$demo_pid" 2>/dev/null || true
wait "$demo_pid" 2>/dev/null || true
demo_pid=""
grep -q 'update(s) waiting for your approval' "$work/demo.log" || {
  tail -20 "$work/demo.log" >&2; die "the installed 'greenlight demo' did not list the demo fleet's updates within 30 s"; }
say "installed greenlight demo ran the installed greenlight-sim ($((SECONDS - td)) s to the pending updates)"

# 5. The desktop entry starts the app, not the CLI.
entry=$(grep -m1 '^Exec=' "$desktop") || die "$desktop has no Exec line"
exec_bin=${entry#Exec=}; exec_bin=${exec_bin%% *}
app=$(PATH=/usr/bin:/bin command -v "$exec_bin") || die "$desktop runs '$exec_bin', which is not on PATH"
[ "$app" = /usr/bin/greenlight-app ] || die "$desktop runs $app, not /usr/bin/greenlight-app"
dpkg -S "$app" 2>/dev/null | grep -q "^$pkg:" || die "$app does not belong to $pkg"
say "desktop entry $desktop: $entry"

# 6. The installed app under Xvfb, on a display nobody uses.
disp=""
for n in $(seq 140 199); do
  [ -e "/tmp/.X11-unix/X$n" ] || [ -e "/tmp/.X$n-lock" ] || { disp=":$n"; break; }
done
[ -n "$disp" ] || die "no free X display number in :140-:199"
Xvfb "$disp" -screen 0 1100x760x24 -nolisten tcp >"$work/xvfb.log" 2>&1 &
xvfb_pid=$!
for _ in $(seq 1 100); do
  xwininfo -root -display "$disp" >/dev/null 2>&1 && break
  kill -0 "$xvfb_pid" 2>/dev/null || { cat "$work/xvfb.log" >&2; die "Xvfb $disp exited"; }
  sleep 0.1
done
xwininfo -root -display "$disp" >/dev/null 2>&1 || die "Xvfb $disp did not answer within 10 s"

ta=$SECONDS
# Its own process group (setsid), so stopping it stops the D-Bus daemon too.
HOME="$work/home" XDG_RUNTIME_DIR="$work/run" XDG_CONFIG_HOME="$work/home/.config" \
  XDG_DATA_HOME="$work/home/.local/share" DISPLAY="$disp" \
  WEBKIT_DISABLE_DMABUF_RENDERER=1 NO_AT_BRIDGE=1 GREENLIGHT_LOG=info \
  setsid dbus-run-session -- "$app" --data-dir "$work/data" >"$work/app.log" 2>&1 &
app_pid=$!

app_failed() { say "--- app log"; tail -30 "$work/app.log" >&2; die "$*"; }
# A window titled "Greenlight" that is viewable (mapped), within 60 s.
mapped=""
for _ in $(seq 1 300); do
  kill -0 "$app_pid" 2>/dev/null || app_failed "the installed app exited before showing its window"
  for id in $(xwininfo -root -tree -display "$disp" 2>/dev/null | awk '/ "Greenlight": / {print $1}'); do
    if xwininfo -id "$id" -display "$disp" 2>/dev/null | grep -q 'Map State: IsViewable'; then mapped=$id; break; fi
  done
  [ -n "$mapped" ] && break
  sleep 0.2
done
[ -n "$mapped" ] || app_failed "no mapped window titled \"Greenlight\" within 60 s"
geom=$(xwininfo -id "$mapped" -display "$disp" | awk '/Width:/ {w=$2} /Height:/ {h=$2} END {print w "x" h}')
say "window \"Greenlight\" ($mapped, $geom) mapped $((SECONDS - ta)) s after start"

# Then drawn: the web view has painted the page when the screen holds more
# than a handful of colours (an empty window is one flat colour). Within 60 s.
shots="$root/target/e2e-screenshots"
mkdir -p "$shots"
shot="$shots/package-installed.png"
colours=0
for _ in $(seq 1 120); do
  kill -0 "$app_pid" 2>/dev/null || app_failed "the installed app exited after mapping its window"
  if import -display "$disp" -window root "$work/screen.png" 2>/dev/null; then
    colours=$(identify -format '%k' "$work/screen.png" 2>/dev/null || echo 0)
    [ "$colours" -gt 64 ] && break
  fi
  sleep 0.5
done
[ "$colours" -gt 64 ] || app_failed "the window stayed blank ($colours colours on screen) for 60 s"
cp "$work/screen.png" "$shot"
say "screenshot $shot ($colours colours), $((SECONDS - ta)) s after start"

# 7. Stop the app, remove the package, check that nothing is left.
kill -TERM -- "-$app_pid" 2>/dev/null || true
for _ in $(seq 1 50); do kill -0 "$app_pid" 2>/dev/null || break; sleep 0.1; done
kill -KILL -- "-$app_pid" 2>/dev/null || true
wait "$app_pid" 2>/dev/null || true
app_pid=""

"${SUDO[@]}" dpkg -P "$pkg" >"$work/dpkg-r.log" 2>&1 || { cat "$work/dpkg-r.log" >&2; die "dpkg -P $pkg failed"; }
installed=0
left=$(dpkg-query -W -f='${db:Status-Abbrev}' "$pkg" 2>/dev/null || true)
[ -z "$left" ] || [ "${left:1:1}" = n ] || die "$pkg is still known to dpkg after removal (status '$left')"
for f in /usr/bin/greenlight /usr/bin/greenlight-app /usr/bin/greenlight-sim "$desktop"; do
  [ ! -e "$f" ] || die "$f is still there after dpkg -P $pkg"
done
while read -r f; do
  [ -z "$f" ] || [ -d "$f" ] || [ ! -e "$f" ] || die "$f is still there after dpkg -P $pkg"
done <<<"$contents"

say "passed in $((SECONDS - t0)) s (installed, ran greenlight --version and greenlight-sim, window mapped and drawn, removed cleanly)"
