#!/usr/bin/env bash
# The Rust version the dependencies need: the highest `rust-version` declared
# by any package in Cargo.lock's graph, for every target (Linux, macOS,
# Windows, Android, iOS: no --filter-platform), the workspace's own crates
# left out (they inherit the number this script is for). Prints the ten
# highest; the first line is what `rust-version` in Cargo.toml's
# [workspace.package] should say.
#   scripts/msrv.sh          the top ten
#   scripts/msrv.sh 25       the top 25
# Works offline (cargo metadata --locked reads Cargo.lock and the registry
# cache).
set -euo pipefail
cd "$(dirname "$0")/.."
top=${1:-10}

cargo metadata --format-version 1 --locked | python3 -c '
import json, sys
top = int(sys.argv[1])
meta = json.load(sys.stdin)
members = set(meta["workspace_members"])
rows = []
for p in meta["packages"]:
    rv = p.get("rust_version")
    if p["id"] in members or not rv:
        continue
    key = tuple(int(x) for x in rv.split("."))
    key += (0,) * (3 - len(key))
    rows.append((key, p["name"], p["version"], rv))
rows.sort(key=lambda r: (r[0], r[1]), reverse=True)
ndeps = len(meta["packages"]) - len(members)
print(f"{len(rows)} of {ndeps} dependencies declare a rust-version; the highest:")
for key, name, version, rv in rows[:top]:
    print(f"  {rv:<8} {name} {version}")
ws = sorted({p.get("rust_version") or "none" for p in meta["packages"] if p["id"] in members})
print("workspace rust-version:", ", ".join(ws))
' "$top"
