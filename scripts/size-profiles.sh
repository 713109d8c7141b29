#!/usr/bin/env bash
# Measures what each size-related release setting buys (issue 14, item 2):
# builds the app, the CLI and the simulator once per variant, each in a
# target directory of its own (a profile change rebuilds everything anyway),
# and prints the stripped binary sizes. Slow: a full release build per
# variant (about 6-10 min each on 2 cores).
#   scripts/size-profiles.sh [BASE_DIR] [variant...]
# Variants: current fat fat-s fat-z (default: all four).
set -euo pipefail
cd "$(dirname "$0")/.."
base=${1:-${CARGO_TARGET_DIR:-$(pwd)/target}/size-profiles}
shift || true
variants=("$@")
[ ${#variants[@]} -gt 0 ] || variants=(current fat fat-s fat-z)

scripts/ui.sh build >/dev/null

flags_of() {
  local fat=(--config 'profile.release.lto="fat"' --config profile.release.codegen-units=1)
  case "$1" in
    current) flags=() ;;
    fat) flags=("${fat[@]}") ;;
    fat-s) flags=("${fat[@]}" --config 'profile.release.opt-level="s"') ;;
    fat-z) flags=("${fat[@]}" --config 'profile.release.opt-level="z"') ;;
    *) echo "unknown variant $1" >&2; exit 2 ;;
  esac
}

printf '%-8s %12s %12s %12s %8s\n' variant greenlight-app greenlight greenlight-sim build_s
for v in "${variants[@]}"; do
  dir="$base/$v"
  start=$(date +%s)
  flags_of "$v"
  cargo build --release --quiet "${flags[@]}" \
    -p greenlight-app -p greenlight-cli -p greenlight-sim --target-dir "$dir" >&2
  took=$(( $(date +%s) - start ))
  size() { stat -c %s "$dir/release/$1"; }
  printf '%-8s %12s %12s %12s %8s\n' "$v" "$(size greenlight-app)" "$(size greenlight)" "$(size greenlight-sim)" "$took"
done
