#!/usr/bin/env bash
# Peer-copy benchmark: a peer agent copying a published file from a master agent on
# loopback, against `curl -o` of the same file from a local nginx in the same run.
#
#   bash bench/peer_copy.sh [SIZE_MIB] [ROUNDS]     (defaults: 1024 MiB, 3 rounds)
#
# The master (CONTENTDIST_BIN) downloads the content from nginx once and keeps it;
# then each round: curl from nginx, and for each peer binary a fresh peer (empty
# cache) that gets the content, which it must copy from the master (checked:
# bytes_from_peers = size, bytes_from_origin = 0). With BASELINE_BIN set, each round
# also runs a peer with that binary, so before and after are measured in the same
# run, against the same master and page cache state:
#
#   BASELINE_BIN=target-before/release/contentdist bash bench/peer_copy.sh
#
# With METRICS_AB=1, the two peers of each round are the same binary with its
# metrics off (MetricsAddress = "") and on, the peer's and the master's /metrics
# scraped every 0.25 s during the copy (60 times Prometheus' default rate): the cost
# of metrics on the hot path.
#
# Prints per round: curl seconds, and per peer binary the `get` wall time (submit to
# delivered, including the ~0.5 s election window), the job's own time, and the
# ratio peer/curl; then the median ratios. Needs nginx, curl, python3 and a release
# build. Everything runs under a temp dir, on 127.0.X.Y and ports chosen at run time.
set -euo pipefail
SIZE_MIB=${1:-1024}
ROUNDS=${2:-3}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${CONTENTDIST_BIN:-$ROOT/target/release/contentdist}
[ -x "$BIN" ] || (cd "$ROOT" && cargo build --release -q)
PEERS=("after=$BIN")
[ -n "${BASELINE_BIN:-}" ] && PEERS=("before=$BASELINE_BIN" "${PEERS[@]}")
[ -n "${METRICS_AB:-}" ] && PEERS=("metrics-off=$BIN" "metrics-on=$BIN")
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
W=$(mktemp -d /tmp/cd-peerbench.XXXXXX)
PIDS=(); NGINX_STARTED=""
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -n "$NGINX_STARTED" ] && "$NGINX" -p "$W/nginx" -c "$W/nginx/nginx.conf" -s stop 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT

. "$ROOT/bench/lib.sh"
drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true; }

mkdir -p "$W/src" "$W/origin" "$W/nginx/logs"
head -c $((SIZE_MIB * 1024 * 1024)) /dev/urandom > "$W/src/image.bin"
"$BIN" publish "$W/src" --id BENCH --version 1 --out "$W/origin" > /dev/null

start_origin_nginx "$W/origin"

# One election port for the subnet; 127.0.X.1 the master, 127.0.X.2 the peer.
EPORT=$(free_port SOCK_DGRAM)
NET="127.0.$((EPORT % 250))"
config() { # dir address [metrics address]
  mkdir -p "$1"
  cat > "$1/agent.toml" <<TOML
MetricsAddress = "${3:-}"
CacheDir = "$1/cache"
ControlSocket = "$1/control.sock"
OriginUrl = "$URL"
P2PEnabled = 0x28
P2PHttpPort = 0
P2P_Port = $EPORT
ListenAddress = "$2"
ElectionAddress = "127.255.255.255"
LogLevel = "warn"
TOML
}
start_agent() { # bin dir; sets AGENT_PID
  "$1" agent --config "$2/agent.toml" 2>> "$2/agent.log" & AGENT_PID=$!; PIDS+=("$AGENT_PID")
  for _ in $(seq 100); do "$1" jobs --config "$2/agent.toml" >/dev/null 2>&1 && return; sleep 0.1; done
  echo "agent did not start:"; cat "$2/agent.log"; exit 1
}
field() { python3 -c 'import json,sys;print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$@"; }

config "$W/master" "$NET.1" "$NET.1:0"
start_agent "$BIN" "$W/master"
metrics_url() { "$BIN" status --json --config "$1/agent.toml" | python3 -c 'import json,sys;print(json.load(sys.stdin).get("metrics",""))'; }
MASTER_METRICS=$(metrics_url "$W/master")
SCRAPES=0
scrape_loop() { # urls...; scrapes until killed, counting in $W/scrapes
  while :; do
    for u in "$@"; do curl -sf -m 2 -o /dev/null "$u" && echo >> "$W/scrapes"; done
    sleep 0.25
  done
}
"$BIN" get BENCH --version 1 --dest "$W/master/dest" --config "$W/master/agent.toml" --json > "$W/master/get.json" 2>> "$W/master/get.log"
echo "master: downloaded ${SIZE_MIB} MiB from nginx in $(field "$W/master/get.json" elapsed_ms) ms"

declare -A RATIOS
for r in $(seq "$ROUNDS"); do
  rm -f "$W/curl.bin"; drop_caches
  t0=$(now); curl -sf -o "$W/curl.bin" "$URL/BENCH/1/content/image.bin"; t1=$(now)
  curl_s=$(echo "$t1 - $t0" | bc -l)
  line=$(printf 'round %d: curl %.2f s (%.0f MiB/s)' "$r" "$curl_s" "$(echo "$SIZE_MIB / $curl_s" | bc -l)")
  # Alternate which binary goes first, so neither always runs on a page cache or
  # a disk the other just left busy.
  order=("${PEERS[@]}"); [ $((r % 2)) = 0 ] && order=($(printf '%s\n' "${PEERS[@]}" | tac))
  for p in "${order[@]}"; do
    name=${p%%=*}; pbin=${p#*=}; d="$W/peer-$name"
    maddr=""; [ "$name" = metrics-on ] && maddr="$NET.2:0"
    rm -rf "$d"; config "$d" "$NET.2" "$maddr"; drop_caches
    start_agent "$pbin" "$d"; peer_pid=$AGENT_PID
    scraper=""
    if [ -n "$maddr" ]; then
      scrape_loop "$(metrics_url "$d")" "$MASTER_METRICS" & scraper=$!
    fi
    t0=$(now)
    "$pbin" get BENCH --version 1 --dest "$d/dest" --config "$d/agent.toml" --json > "$d/get.json" 2>> "$d/get.log"
    t1=$(now)
    [ -n "$scraper" ] && { kill "$scraper"; wait "$scraper" 2>/dev/null || true; }
    kill "$peer_pid"; wait "$peer_pid" 2>/dev/null || true
    from_peers=$(field "$d/get.json" bytes_from_peers); from_origin=$(field "$d/get.json" bytes_from_origin)
    [ "$from_origin" = 0 ] && [ "$from_peers" = $((SIZE_MIB * 1024 * 1024)) ] \
      || { echo "round $r $name: not a peer copy (origin $from_origin, peers $from_peers)"; cat "$d/agent.log"; exit 1; }
    cmp -s "$d/dest/image.bin" "$W/src/image.bin" || { echo "round $r $name: delivered bytes differ"; exit 1; }
    peer_s=$(echo "$t1 - $t0" | bc -l)
    job_s=$(echo "$(field "$d/get.json" elapsed_ms) / 1000" | bc -l)
    ratio=$(echo "$peer_s / $curl_s" | bc -l)
    RATIOS[$name]+="$ratio "
    line+=$(printf '; %s peer %.2f s (%.0f MiB/s; job %.2f s), peer/curl %.2f' \
      "$name" "$peer_s" "$(echo "$SIZE_MIB / $peer_s" | bc -l)" "$job_s" "$ratio")
  done
  echo "$line"
done
for p in "${PEERS[@]}"; do
  name=${p%%=*}
  median=$(printf '%s\n' ${RATIOS[$name]} | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
  printf '%s: median peer/curl ratio over %d rounds: %.2f\n' "$name" "$ROUNDS" "$median"
done
[ -f "$W/scrapes" ] && echo "metrics scrapes answered during the copies: $(wc -l < "$W/scrapes")"
exit 0
