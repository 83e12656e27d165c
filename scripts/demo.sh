#!/usr/bin/env bash
# One agent end to end on loopback: nginx as the origin, publish a generated tree,
# start an agent, fetch the content with a progress bar, then show the job, the cache
# and the agent's status. Everything lives in a temp dir and is removed at the end.
#
#   bash scripts/demo.sh [SIZE_MIB]        (default 64)
set -euo pipefail
SIZE_MIB=${1:-64}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
echo "== building (release)"
(cd "$ROOT" && cargo build --release -q)
BIN=$ROOT/target/release/contentdist
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[ -x "$NGINX" ] || { echo "nginx is needed: apt-get install nginx"; exit 1; }
W=$(mktemp -d /tmp/contentdist-demo.XXXXXX)
AGENT_PID=""
cleanup() {
  [ -n "$AGENT_PID" ] && kill "$AGENT_PID" 2>/dev/null && wait "$AGENT_PID" 2>/dev/null || true
  "$NGINX" -p "$W/nginx" -c "$W/nginx/nginx.conf" -s stop 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT

echo "== publishing a ${SIZE_MIB} MiB tree as DEMO00001 version 1"
mkdir -p "$W/src/drivers" "$W/origin" "$W/nginx/logs"
head -c $((SIZE_MIB * 1024 * 1024)) /dev/urandom > "$W/src/image.bin"
head -c 300000 /dev/urandom > "$W/src/drivers/net.ko"
echo "#!/bin/sh" > "$W/src/install.sh"; chmod +x "$W/src/install.sh"
"$BIN" publish "$W/src" --id DEMO00001 --version 1 --out "$W/origin"

PORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
USER_LINE=""; [ "$(id -u)" = 0 ] && USER_LINE="user root;"
cat > "$W/nginx/nginx.conf" <<NGX
$USER_LINE
worker_processes 1;
error_log $W/nginx/logs/error.log;
pid $W/nginx/nginx.pid;
events { worker_connections 64; }
http {
  access_log $W/nginx/logs/access.log;
  server { listen 127.0.0.1:$PORT; root $W/origin; }
}
NGX
"$NGINX" -p "$W/nginx" -c "$W/nginx/nginx.conf"
echo "== origin: nginx on http://127.0.0.1:$PORT"

cat > "$W/contentdist.toml" <<TOML
CacheDir = "$W/cache"
ControlSocket = "$W/control.sock"
OriginUrl = "http://127.0.0.1:$PORT"
# One agent: no peer copy, so no election broadcasts leave this host.
P2PEnabled = 0
# A 400 Mbit/s WAN link, of which the agent may use 80% (MaxWorkRate default).
WanRateKbps = 400000
TOML
"$BIN" agent --config "$W/contentdist.toml" 2> "$W/agent.log" & AGENT_PID=$!
for _ in $(seq 100); do "$BIN" jobs --config "$W/contentdist.toml" >/dev/null 2>&1 && break; sleep 0.1; done
echo "== agent started (log: $W/agent.log)"

echo "== contentdist get DEMO00001 --version 1 --dest $W/dest"
"$BIN" get DEMO00001 --version 1 --dest "$W/dest" --config "$W/contentdist.toml"
diff -r "$W/src" "$W/dest" && echo "delivered tree is identical to the published one"
echo "== the same content again: served from the cache, nothing crosses the WAN"
"$BIN" get DEMO00001 --version 1 --dest "$W/dest2" --config "$W/contentdist.toml"
echo "== contentdist jobs"
"$BIN" jobs --config "$W/contentdist.toml"
echo "== contentdist cache list"
"$BIN" cache list --config "$W/contentdist.toml"
echo "== contentdist status"
"$BIN" status --config "$W/contentdist.toml"
