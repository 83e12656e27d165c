#!/usr/bin/env bash
# Download benchmark: one agent fetching a published file from a local nginx origin,
# against `curl -o` of the same file from the same nginx in the same run.
#
#   bash bench/download.sh [SIZE_MIB] [ROUNDS]      (defaults: 1024 MiB, 3 rounds)
#
# Prints per round: curl seconds, agent seconds (submit to delivered), ratio
# agent/curl, and the median ratio. With BASELINE_BIN set, each round also runs an
# agent with that binary (before/after in the same run, same page cache state):
#   BASELINE_BIN=target-before/release/contentdist bash bench/download.sh Also prints publish throughput. Needs nginx, curl
# and a release build (`cargo build --release`). Everything runs under a temp dir and
# on 127.0.0.1 ports chosen at run time.
set -euo pipefail
SIZE_MIB=${1:-1024}
ROUNDS=${2:-3}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${CONTENTDIST_BIN:-$ROOT/target/release/contentdist}
[ -x "$BIN" ] || (cd "$ROOT" && cargo build --release -q)
AGENTS=("agent=$BIN")
[ -n "${BASELINE_BIN:-}" ] && AGENTS=("before=$BASELINE_BIN" "after=$BIN")
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
W=$(mktemp -d /tmp/cd-bench.XXXXXX)
AGENT_PID=""; NGINX_STARTED=""
cleanup() {
  [ -n "$AGENT_PID" ] && kill "$AGENT_PID" 2>/dev/null || true
  [ -n "$NGINX_STARTED" ] && "$NGINX" -p "$W/nginx" -c "$W/nginx/nginx.conf" -s stop 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT

. "$ROOT/bench/lib.sh"

mkdir -p "$W/src" "$W/origin" "$W/nginx/logs"
head -c $((SIZE_MIB * 1024 * 1024)) /dev/urandom > "$W/src/image.bin"
sync
t0=$(now)
"$BIN" publish "$W/src" --id BENCH --version 1 --out "$W/origin" > /dev/null
t1=$(now)
echo "publish: ${SIZE_MIB} MiB in $(echo "$t1 - $t0" | bc -l | cut -c1-6) s = $(echo "$SIZE_MIB / ($t1 - $t0)" | bc -l | cut -c1-7) MiB/s"

start_origin_nginx "$W/origin"

cat > "$W/agent.toml" <<TOML
CacheDir = "$W/cache"
ControlSocket = "$W/control.sock"
OriginUrl = "$URL"
# One agent: no peer copy, so no election broadcasts leave this host.
P2PEnabled = 0
LogLevel = "warn"
TOML
start_agent() {
  "$ABIN" agent --config "$W/agent.toml" 2>> "$W/agent.log" & AGENT_PID=$!
  for _ in $(seq 100); do "$ABIN" jobs --config "$W/agent.toml" >/dev/null 2>&1 && return; sleep 0.1; done
  echo "agent did not start:"; cat "$W/agent.log"; exit 1
}
stop_agent() { kill "$AGENT_PID"; wait "$AGENT_PID" 2>/dev/null || true; AGENT_PID=""; }

declare -A RATIOS
for r in $(seq "$ROUNDS"); do
  rm -f "$W/curl.bin"; sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
  t0=$(now); curl -sf -o "$W/curl.bin" "$URL/BENCH/1/content/image.bin"; t1=$(now)
  curl_s=$(echo "$t1 - $t0" | bc -l)
  # Alternate which binary goes first, so neither always runs on a page cache or
  # a disk the other just left busy.
  order=("${AGENTS[@]}"); [ $((r % 2)) = 0 ] && order=($(printf '%s\n' "${AGENTS[@]}" | tac))
  for a in "${order[@]}"; do
    name=${a%%=*}; ABIN=${a#*=}
    # A fresh cache each round, so the agent really downloads.
    rm -rf "$W/cache" "$W/dest"; sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
    start_agent
    t0=$(now)
    "$ABIN" get BENCH --version 1 --dest "$W/dest" --config "$W/agent.toml" --json > "$W/get.json"
    t1=$(now)
    job_s=$(python3 -c 'import json,sys;print(json.load(open(sys.argv[1]))["elapsed_ms"]/1000)' "$W/get.json")
    agent_s=$(echo "$t1 - $t0" | bc -l)
    stop_agent
    cmp -s "$W/dest/image.bin" "$W/src/image.bin" || { echo "round $r: delivered bytes differ"; exit 1; }
    ratio=$(echo "$agent_s / $curl_s" | bc -l)
    RATIOS[$name]+="$ratio "
    printf 'round %d: curl %.2f s (%.0f MiB/s), %s %.2f s (%.0f MiB/s; the job itself %.2f s), %s/curl %.2f\n' \
      "$r" "$curl_s" "$(echo "$SIZE_MIB / $curl_s" | bc -l)" "$name" "$agent_s" "$(echo "$SIZE_MIB / $agent_s" | bc -l)" "$job_s" "$name" "$ratio"
  done
done
for a in "${AGENTS[@]}"; do
  name=${a%%=*}
  median=$(printf '%s\n' ${RATIOS[$name]} | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
  printf 'median %s/curl ratio over %d rounds: %.2f\n' "$name" "$ROUNDS" "$median"
done
