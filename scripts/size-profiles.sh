#!/usr/bin/env bash
# Measures what each size-related release setting buys (issue 14, item 2):
# builds the app, the CLI and the simulator once per variant, each in a
# target directory of its own (a profile change rebuilds everything anyway),
# and prints the stripped binary sizes. Slow: a full release build per
# variant (about 6-10 min each on 2 cores).
#   scripts/size-profiles.sh [BASE_DIR] [variant...]
# Variants: current (Cargo.toml's [profile.release]: fat LTO, one codegen
# unit, opt-level "z"), thin (the profile before: thin LTO, 4 units, opt 3),
# fat (fat LTO, one unit, opt 3), fat-s (opt "s"). Default: all four.
set -euo pipefail
cd "$(dirname "$0")/.."
base=${1:-${CARGO_TARGET_DIR:-$(pwd)/target}/size-profiles}
shift || true
variants=("$@")
[ ${#variants[@]} -gt 0 ] || variants=(current thin fat fat-s)

scripts/ui.sh build >/dev/null

flags_of() {
  case "$1" in
    current) flags=() ;;
    thin) flags=(--config 'profile.release.lto="thin"' --config profile.release.codegen-units=4
                 --config profile.release.opt-level=3) ;;
    fat) flags=(--config profile.release.opt-level=3) ;;
    fat-s) flags=(--config 'profile.release.opt-level="s"') ;;
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
