#!/usr/bin/env bash
# Runs the terminal demo's approve-everything flow N times (default 10) and
# checks that no job is left in a state that claims more than is known:
# every followed job ends updated or rolled back (the demo's thermostat), and
# the device that dropped off is "approved — waiting for the device", never
# "delayed — Waiting for Approval" or a success it did not report.
#   scripts/demo-runs.sh [N]      (builds the CLI first)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-10}
cargo build -q -p greenlight-cli
bin="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/debug/greenlight"
fail=0
for i in $(seq 1 "$n"); do
  start=$(date +%s)
  out=$(timeout 600 "$bin" --json demo --approve-all --exit-when-done 2>/dev/null) || { echo "run $i: the demo failed or timed out"; fail=1; continue; }
  took=$(( $(date +%s) - start ))
  echo "$out" | python3 -c '
import json, sys
run, took = sys.argv[1], sys.argv[2]
d = json.load(sys.stdin)
want = {"7CDFA1000001": {"success"}, "7CDFA1000002": {"success"}, "7CDFA1000004": {"success"},
        "7CDFA1000005": {"rolled_back"}}
states = {j["node_id"]: j["state"]["state"] for j in d["jobs"]}
for o in d["outcomes"]:
    r = o["result"]
    if r["result"] == "queued":
        states[o["node_id"]] = "queued:" + r["job"]["state"]["reason"]["why"]
bad = [f"{k}={states.get(k)}" for k, ok in want.items() if states.get(k) not in ok]
garage = states.get("7CDFA1000003", "")
if not garage.startswith("queued:") and garage not in ("success",):
    bad.append(f"7CDFA1000003={garage}")
print(f"run {run}: {took} s, " + ", ".join(f"{k[-2:]}={v}" for k, v in sorted(states.items())) + ("" if not bad else "  WRONG: " + "; ".join(bad)))
sys.exit(1 if bad else 0)
' "$i" "$took" || fail=1
done
exit $fail
