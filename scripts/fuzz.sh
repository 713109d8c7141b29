#!/usr/bin/env bash
# Coverage-guided fuzzing of every parser that reads outside input
# (libFuzzer through cargo-fuzz; the targets are in fuzz/fuzz_targets/, what
# each covers and asserts is at the top of its file).
#
#   scripts/fuzz.sh [seconds] [target...]     (`make fuzz` runs all of them)
#
# Each target runs for `seconds` (else $FUZZ_SECONDS, else 600), one after
# the other, from its committed seed corpus (fuzz/corpus/<target>/, never
# written to) plus a working corpus that grows between runs
# (fuzz/target/corpus/<target>/, not committed). Per target it prints the
# executions, executions per second, libFuzzer's final coverage (`cov:`
# edges, `ft:` features), the corpus size and the crashes found, and at the
# end a table of all of them. A crash stops that target: its input is
# written to fuzz/artifacts/<target>/ and named at the end, and the script
# exits 1. CI runs it short: `make fuzz-ci` (10 s per target), from `make test`.
#
# Works on a fresh Debian 12 machine with only the stable toolchain:
#   - cargo-fuzz is installed from crates.io when missing (scripts/deps.sh:
#     pinned version, --locked; nothing happens when it is there);
#   - libFuzzer is compiled from libfuzzer-sys's C++ sources (needs g++,
#     from build-essential);
#   - without a sanitizer, the instrumentation flags cargo-fuzz passes are
#     all stable rustc flags (-Cpasses=sancov-module,
#     -Cllvm-args=-sanitizer-coverage-*): no nightly is needed. A sanitizer
#     is a `-Z` flag, which stable rustc refuses: then, on a toolchain that
#     is not a nightly, RUSTC_BOOTSTRAP=1 lets stable rustc accept it.
#
# Sanitizer: none by default ($FUZZ_SANITIZER=address to change it).
# Everything fuzzed is safe Rust, where AddressSanitizer finds nothing the
# bounds checks do not, and it slows every memory access; what the targets
# look for are panics, overflows (debug assertions and overflow checks are
# on, cargo-fuzz's default), hangs (-timeout) and broken properties
# (assertions in the targets).
#
# Other settings: $FUZZ_TARGET_DIR (the build), $FUZZ_TIMEOUT (10 s per
# input is a hang), $FUZZ_RSS_MB (2048), $FUZZ_LOG_DIR (fuzz/target/logs),
# $FUZZ_PROFILE (release, or dev), extra libFuzzer flags in $FUZZ_ARGS.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

seconds=${FUZZ_SECONDS:-600}
if [ $# -gt 0 ] && [[ $1 =~ ^[0-9]+$ ]]; then
  seconds=$1
  shift
fi
sanitizer=${FUZZ_SANITIZER:-none}
profile=${FUZZ_PROFILE:-release}
timeout=${FUZZ_TIMEOUT:-10}
rss=${FUZZ_RSS_MB:-2048}
logs=${FUZZ_LOG_DIR:-$root/fuzz/target/logs}
mkdir -p "$logs"

# Every target of fuzz/Cargo.toml, in file order.
all=$(awk '/^\[\[bin\]\]/{b=1; next} b && /^name *=/{gsub(/[" ]/,""); sub(/name=/,""); print; b=0}' fuzz/Cargo.toml)
if [ $# -gt 0 ]; then
  targets=("$@")
  for t in "${targets[@]}"; do
    grep -qx "$t" <<<"$all" || { echo "fuzz: no target $t (targets: $(echo $all))" >&2; exit 2; }
  done
else
  mapfile -t targets <<<"$all"
fi

# cargo-fuzz, once (the same pinned version `make test` installs).
scripts/deps.sh cargo-fuzz
if ! command -v c++ >/dev/null 2>&1; then
  echo "fuzz: libFuzzer is built from C++ sources: install g++ (apt-get install build-essential)" >&2
  exit 1
fi

# The instrumented build shares nothing with the workspace's (other flags,
# another target triple): $FUZZ_TARGET_DIR keeps it apart and warm between
# runs (.ci/run sets it); else cargo's own choice (fuzz/target).
if [ -n "${FUZZ_TARGET_DIR:-}" ]; then
  export CARGO_TARGET_DIR=$FUZZ_TARGET_DIR
fi

# A sanitizer is a -Z flag: a stable toolchain takes it with RUSTC_BOOTSTRAP=1.
if [ "$sanitizer" != none ] && ! rustc -V | grep -q nightly; then
  export RUSTC_BOOTSTRAP=1
fi
toolchain="$(rustc -V)${RUSTC_BOOTSTRAP:+ with RUSTC_BOOTSTRAP=1}"

# The dictionary of each target (libFuzzer -dict).
dict_for() {
  case $1 in
    blynk_frames | blynk_build_tag) echo fuzz/dict/blynk.dict ;;
    control_*) echo fuzz/dict/control.dict ;;
    mqtt_topic | jwt | urls | fingerprint) echo fuzz/dict/text.dict ;;
    *) echo fuzz/dict/json.dict ;;
  esac
}

case $profile in
  release) build_flags=(--release --debug-assertions --sanitizer "$sanitizer") ;;
  dev) build_flags=(--dev --sanitizer "$sanitizer") ;;
  *) echo "fuzz: FUZZ_PROFILE is release or dev, not $profile" >&2; exit 2 ;;
esac
echo "fuzz: building ${#targets[@]} target(s) ($toolchain, $profile profile, sanitizer $sanitizer)"
build_start=$(date +%s)
if [ ${#targets[@]} -eq "$(wc -l <<<"$all")" ]; then
  cargo fuzz build "${build_flags[@]}"
else
  for t in "${targets[@]}"; do
    cargo fuzz build "${build_flags[@]}" "$t"
  done
fi
build_secs=$(( $(date +%s) - build_start ))
echo "fuzz: built in ${build_secs} s; ${seconds} s per target"

# The binaries just built, run directly: `cargo fuzz run` builds first, so
# an edit made while the targets run would mix builds and count the build
# as fuzzing time.
target_dir=$(cargo metadata --format-version 1 --no-deps --manifest-path fuzz/Cargo.toml |
  grep -oE '"target_directory":"[^"]*"' | head -1 | cut -d'"' -f4)
triple=$(rustc -vV | sed -n 's/^host: //p')
case $profile in
  release) bin_dir="$target_dir/$triple/release" ;;
  dev) bin_dir="$target_dir/$triple/debug" ;;
esac
if [ "$sanitizer" = address ]; then
  # As cargo-fuzz runs them.
  export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_odr_violation=0}
fi

# Values of the last libFuzzer status line ("#N ... cov: C ft: F corp: U/S ... exec/s: E").
field() { grep -oE "$1: [0-9]+" <<<"$2" | tail -1 | awk '{print $2}' || true; }
# A value of libFuzzer's final stats (-print_final_stats) in $log.
stat() { grep -oE "stat::$1:[[:space:]]+[0-9]+" "$log" | tail -1 | awk '{print $2}' || true; }

rows=()
crashed=()
total_execs=0
run_start=$(date +%s)
for t in "${targets[@]}"; do
  work="$root/fuzz/target/corpus/$t"
  mkdir -p "$work" "$root/fuzz/artifacts/$t"
  log="$logs/$t.log"
  echo
  echo "== $t: ${seconds} s"
  start=$(date +%s)
  set +e
  # shellcheck disable=SC2086
  "$bin_dir/$t" "$work" "fuzz/corpus/$t" \
    -max_total_time="$seconds" -timeout="$timeout" -rss_limit_mb="$rss" \
    -dict="$(dict_for "$t")" -print_final_stats=1 \
    -artifact_prefix="$root/fuzz/artifacts/$t/" ${FUZZ_ARGS:-} >"$log" 2>&1
  rc=$?
  set -e
  took=$(( $(date +%s) - start ))
  # libFuzzer's final stats, else its last status line.
  status=$(grep -E '^#[0-9]+' "$log" | tail -1 || true)
  execs=$(stat number_of_executed_units)
  [ -n "$execs" ] || execs=$(grep -oE '^#[0-9]+' <<<"$status" | tr -d '#' || true)
  rate=$(stat average_exec_per_sec)
  [ -n "$rate" ] || rate=$(field "exec/s" "$status")
  cov=$(field cov "$status")
  ft=$(field ft "$status")
  corp=$(field corp "$status")
  files=$(find "$work" -type f | wc -l)
  artifact=$(grep -oE 'Test unit written to [^ ]+' "$log" | tail -1 | sed 's/Test unit written to //' || true)
  crashes=0
  if [ $rc -ne 0 ] || [ -n "$artifact" ]; then
    crashes=1
    crashed+=("$t: ${artifact:-see $log}")
    grep -E 'panicked at|ERROR: libFuzzer|SUMMARY' -A2 "$log" | head -8 | sed 's/^/   /' || true
  fi
  total_execs=$(( total_execs + ${execs:-0} ))
  echo "   executions ${execs:-?}, ${rate:-?} exec/s, cov ${cov:-?}, ft ${ft:-?}, corpus ${corp:-?} units (${files} files in the working corpus), crashes ${crashes}  [${took} s, log ${log#$root/}]"
  rows+=("$(printf '%-16s %6s %12s %8s %6s %7s %7s %8s' "$t" "$took" "${execs:-?}" "${rate:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}" "$crashes")")
done
run_secs=$(( $(date +%s) - run_start ))

echo
echo "fuzz: $toolchain, $profile profile, sanitizer $sanitizer, cargo-fuzz $(cargo fuzz --version 2>/dev/null | awk '{print $2}'), ${seconds} s per target"
printf '%-16s %6s %12s %8s %6s %7s %7s %8s\n' target secs executions exec/s cov ft corpus crashes
for r in "${rows[@]}"; do echo "$r"; done
echo "total: ${total_execs} executions; build ${build_secs} s, runs ${run_secs} s"
if [ ${#crashed[@]} -gt 0 ]; then
  echo
  echo "fuzz: CRASHES (reproduce: cargo fuzz run ${build_flags[*]} <target> <artifact>):" >&2
  for c in "${crashed[@]}"; do echo "  $c" >&2; done
  exit 1
fi
