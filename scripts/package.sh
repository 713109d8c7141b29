#!/usr/bin/env bash
# Builds Greenlight's Linux packages with Tauri's bundler: one .deb / .rpm
# holding the desktop app (/usr/bin/greenlight-app, its desktop entry and
# icons), the CLI (/usr/bin/greenlight) and the simulator
# (/usr/bin/greenlight-sim).
#   scripts/package.sh                        `make package`: release build
#                                             (`tauri build`), .deb and .rpm
#   scripts/package.sh --debug --bundles deb  what the package test installs:
#                                             the debug build `make test` made,
#                                             bundled as is (`tauri bundle`)
# The Tauri CLI is @tauri-apps/cli from ui/package-lock.json (npm registry,
# exact version, native binary included; nothing else is downloaded). Bundles
# go under "$CARGO_TARGET_DIR"/{release,debug}/bundle/ (default: cargo's
# target directory); the last lines name them, with their sizes.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

profile=release
bundles=deb,rpm
while [ $# -gt 0 ]; do
  case "$1" in
    --debug) profile=debug ;;
    --bundles) bundles=${2:?--bundles needs a value}; shift ;;
    --bundles=*) bundles=${1#--bundles=} ;;
    *) echo "usage: scripts/package.sh [--debug] [--bundles deb,rpm]" >&2; exit 2 ;;
  esac
  shift
done

if [ -z "${CARGO_TARGET_DIR:-}" ]; then
  CARGO_TARGET_DIR=$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
fi
export CARGO_TARGET_DIR
out="$CARGO_TARGET_DIR/$profile"

# The front end (tauri.conf.json has no beforeBuildCommand: the app embeds
# ui/dist at compile time) and, with it, the pinned Tauri CLI.
scripts/ui.sh build
tauri="$root/ui/node_modules/.bin/tauri"
[ -x "$tauri" ] || { echo "package: $tauri is missing (ui/package.json devDependencies)" >&2; exit 1; }

# The CLI and the simulator go into the same package, from
# src-tauri/binaries/ (git-ignored; bundle.linux.{deb,rpm}.files in
# tauri.conf.json). Not `bundle.externalBin`: tauri-build's build script
# would then require those files for every `cargo build` of the app and copy
# them over "$CARGO_TARGET_DIR"/debug/greenlight.
stage() {
  mkdir -p src-tauri/binaries
  for b in greenlight greenlight-sim; do
    install -m 0755 "$out/$b" "src-tauri/binaries/$b"
  done
}
# Only the files of this run get listed.
for b in ${bundles//,/ }; do rm -rf "${out:?}/bundle/$b"; done

if [ "$profile" = release ]; then
  # Each binary built on its own, as `cargo build --release -p X` makes it
  # (built together, one package's features would end up in the others).
  cargo build --release -p greenlight-cli
  cargo build --release -p greenlight-sim
  stage
  (cd src-tauri && "$tauri" build --bundles "$bundles" --ci)
else
  # The test: the same packages as scripts/e2e.sh builds (plus the CLI), so
  # the app binary `make test` already built is reused, then bundled as is.
  cargo build -p greenlight-app -p greenlight-sim -p greenlight-cli
  stage
  (cd src-tauri && "$tauri" bundle --debug --bundles "$bundles" --ci)
fi

echo "package: built ($profile):"
found=0
for b in ${bundles//,/ }; do
  for f in "$out/bundle/$b"/*."$b"; do
    [ -e "$f" ] || continue
    found=1
    printf '  %s  %s\n' "$(du -h "$f" | cut -f1)" "$f"
  done
done
[ "$found" = 1 ] || { echo "package: the bundler made no $bundles file under $out/bundle" >&2; exit 1; }
