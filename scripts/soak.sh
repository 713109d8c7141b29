#!/usr/bin/env bash
# The crash test (crates/cli/tests/crash.rs) at scale: the real `greenlight`
# binary killed with SIGKILL until at least $SOAK_KILLS kills have landed
# (default 200), within $SOAK_MINUTES minutes of killing (default 35; the
# whole run is cut at that plus 5 minutes). Reaching the time limit with
# fewer kills is a failure, not a pass.
#
# The seed is drawn here (or taken from GREENLIGHT_CRASH_SEED) and printed
# first, with the line that replays the run; the test prints kills, runs,
# rounds, time and the kinds of kill points it hit at the end. The test's
# output is kept in $SOAK_LOG (default: a file under ${TMPDIR:-/tmp}).
set -euo pipefail
cd "$(dirname "$0")/.."

kills=${SOAK_KILLS:-200}
minutes=${SOAK_MINUTES:-35}
case "$kills$minutes" in
  *[!0-9]*) echo "soak: SOAK_KILLS and SOAK_MINUTES are whole numbers" >&2; exit 2 ;;
esac
seed=${GREENLIGHT_CRASH_SEED:-$(( ($(date +%s%N) & 0x7fffffffffffffff) | 1 ))}
log=${SOAK_LOG:-${TMPDIR:-/tmp}/greenlight-soak-$seed.log}
replay="GREENLIGHT_CRASH_SEED=$seed SOAK_KILLS=$kills SOAK_MINUTES=$minutes make soak"

echo "soak: seed $seed; at least $kills kills within $minutes min of killing"
echo "soak: replay with: $replay"
# Built first, so the time limit is the test's alone. The test and the
# binary under test are copied and run from the copies, so that a build in
# a shared target directory (or an edit of the sources) during the run
# cannot swap either half-way through.
test_exe=$(${CARGO:-cargo} test -p greenlight-cli --test crash --no-run --message-format=json \
  | python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "crash" and m.get("executable"):
        print(m["executable"])')
target=$(${CARGO:-cargo} metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
work=$(mktemp -d "${TMPDIR:-/tmp}/greenlight-soak.XXXXXX")
trap 'rm -rf "$work"' EXIT
cp "$test_exe" "$work/crash"
cp "$target/debug/greenlight" "$work/greenlight"

start=$(date +%s)
status=0
GREENLIGHT_CRASH_SEED=$seed \
GREENLIGHT_CRASH_BIN=$work/greenlight \
GREENLIGHT_SOAK_KILLS=$kills \
GREENLIGHT_SOAK_SECONDS=$(( minutes * 60 )) \
  timeout --signal=KILL "$(( minutes + 5 ))m" \
  "$work/crash" --nocapture 2>&1 | tee "$log" \
  || status=$?
elapsed=$(( $(date +%s) - start ))

echo
echo "soak: $(( elapsed / 60 )) min $(( elapsed % 60 )) s; output in $log"
# The test's figures: its "crash test: seed" line and the indented lines under it.
awk '/^crash test: seed/ { p = 1; print; next } p && /^  / { print; next } { p = 0 }' "$log"
if [ "$status" -ne 0 ]; then
  echo "soak: FAILED (exit $status); replay with: $replay" >&2
  exit "$status"
fi
echo "soak: passed; replay with: $replay"
