#!/usr/bin/env bash
# Starts the RainMaker simulator's demo fleet and shows how to look at it.
# (Until the desktop app exists, this is what `make demo` runs.)
set -euo pipefail
bin="${1:?path to greenlight-sim}"
out=$(mktemp)
"$bin" rainmaker --embedded-broker 127.0.0.1:0 --scenario demo >"$out" &
pid=$!
trap 'kill $pid 2>/dev/null; rm -f "$out"' EXIT INT TERM
for _ in $(seq 1 300); do
  [ -s "$out" ] && break
  kill -0 $pid 2>/dev/null || { echo "simulator failed to start" >&2; exit 1; }
  sleep 0.1
done
ready=$(head -n1 "$out")
field() { python3 -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$ready" "$1"; }
http=$(field http); mqtt=$(field mqtt); user=$(field user); pass=$(field password)
hostport=${mqtt#mqtt://}; mhost=${hostport%:*}; mport=${hostport##*:}
cat <<MSG

Greenlight demo fleet is running (Ctrl-C to stop).
  REST API : $http/v1/   (user $user, password $pass)
  MQTT     : $mqtt
  ready    : $ready

Look at it:
  TOKEN=\$(curl -s -X POST $http/v1/login2 -d '{"user_name":"$user","password":"$pass"}' | python3 -c 'import json,sys;print(json.load(sys.stdin)["accesstoken"])')
  curl -s "$http/v1/user/nodes?node_details=true" -H "Authorization: \$TOKEN" | python3 -m json.tool | less
  mosquitto_sub -h $mhost -p $mport -v -t 'node/#'     # every node message, live
Approve the Kitchen Plug's pending update:
  curl -s -X PUT "$http/v1/user/nodes/params?node_id=7CDFA1000001" -H "Authorization: \$TOKEN" -d '{"OTA":{"Operation":"start"}}'
MSG
wait $pid
