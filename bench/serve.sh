#!/usr/bin/env bash
# Serving benchmark (issue 10, item 4): `curl` from a master's peer-copy server
# against `curl` from nginx (sendfile on) for the same file on loopback, and the
# master's memory with many slow clients.
#
#   bash bench/serve.sh [SIZE_MIB] [ROUNDS] [SLOW_CLIENTS]   (defaults: 1024, 5, 64)
#
# A master agent (CONTENTDIST_BIN, default target/release/contentdist; HTTP peer
# copy, P2PEnabled 0x28) downloads the published file from a local nginx once and
# keeps it (complete, so its files are stamped). With BASELINE_BIN set, a second
# master with that binary does the same, and every round measures both, so before
# and after are compared in the same run.
#
# 1. Each round, in alternating order, with the file in the page cache (it was
#    just read; the point is the serving path, not the disk):
#      nginx    curl -o /dev/null from nginx;
#      master   curl -o /dev/null from the master's GET /content/ID/VERSION/files/PATH
#               (machine-account Basic auth).
#    Printed: seconds, MiB/s, CPU seconds (user+sys) of the serving process, and
#    nginx_time / master_time (>= 1.0: the master is as fast as nginx).
# 2. SLOW_CLIENTS curls at once, each limited to 1 MiB/s, for 10 s against each
#    master and against nginx; the serving process's RSS is sampled every 0.2 s.
#    Printed: RSS before, the peak during, and the kernel's high-water mark
#    (VmHWM) of the agent process.
#
# Needs nginx, curl, python3, bc. Runs under a temp dir, on 127.0.X.Y and ports
# chosen at run time; every curl is bounded by a timeout.
set -euo pipefail
SIZE_MIB=${1:-1024}
ROUNDS=${2:-5}
SLOW=${3:-64}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${CONTENTDIST_BIN:-$ROOT/target/release/contentdist}
[ -x "$BIN" ] || (cd "$ROOT" && cargo build --release -q)
MASTERS=("after=$BIN")
[ -n "${BASELINE_BIN:-}" ] && MASTERS=("before=$BASELINE_BIN" "${MASTERS[@]}")
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
W=$(mktemp -d /tmp/cd-servebench.XXXXXX)
PIDS=(); NGINX_STARTED=""
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -n "$NGINX_STARTED" ] && "$NGINX" -p "$W/nginx" -c "$W/nginx/nginx.conf" -s stop 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT

. "$ROOT/bench/lib.sh"
cpu() { awk '{print ($14 + $15) / 100}' "/proc/$1/stat"; }   # user+sys, seconds (100 Hz)
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
hwm_kib() { awk '/^VmHWM/ {print $2}' "/proc/$1/status"; }

mkdir -p "$W/src" "$W/origin" "$W/nginx/logs"
head -c $((SIZE_MIB * 1024 * 1024)) /dev/urandom > "$W/src/image.bin"
"$BIN" publish "$W/src" --id BENCH --version 1 --out "$W/origin" > /dev/null

start_origin_nginx "$W/origin" 512
NGINX_WORKER=$(pgrep -P "$(cat "$W/nginx/nginx.pid")" | head -1)

MACHINE_KEY="bench-machine-key-0123456789"   # MachineKey needs 16+ characters
MUSER='BENCH$'
MPASS=$(python3 -c 'import hmac,hashlib,sys
print(hmac.new(sys.argv[1].encode(), b"contentdist machine account v1" + b"bench", hashlib.sha256).hexdigest()[:32])' "$MACHINE_KEY")

declare -A MURL MPID
n=0
for m in "${MASTERS[@]}"; do
  name=${m%%=*}; mbin=${m#*=}; d="$W/master-$name"; n=$((n + 1))
  EPORT=$(free_port SOCK_DGRAM)
  mkdir -p "$d"
  cat > "$d/agent.toml" <<TOML
CacheDir = "$d/cache"
ControlSocket = "$d/control.sock"
OriginUrl = "$URL"
P2PEnabled = 0x28
P2PHttpPort = 0
P2P_Port = $EPORT
ListenAddress = "127.0.$((EPORT % 250)).$n"
ElectionAddress = "127.255.255.255"
AuthenticatedUsers = 1
MachineKey = "$MACHINE_KEY"
LogLevel = "warn"
TOML
  # No limit, so that the slow clients below are not told busy (binaries that
  # know the setting).
  : > "$d/empty.toml"
  if "$mbin" config show --config "$d/empty.toml" 2>/dev/null | grep -q MaxServingConnections; then
    echo "MaxServingConnections = 0" >> "$d/agent.toml"
  fi
  "$mbin" agent --config "$d/agent.toml" 2>> "$d/agent.log" & MPID[$name]=$!; PIDS+=("${MPID[$name]}")
  for _ in $(seq 100); do "$mbin" jobs --config "$d/agent.toml" >/dev/null 2>&1 && break; sleep 0.1; done
  "$mbin" get BENCH --version 1 --dest "$d/dest" --config "$d/agent.toml" --json > "$d/get.json"
  "$mbin" status --json --config "$d/agent.toml" > "$d/status.json"
  MURL[$name]=$(python3 -c 'import json,sys
for u in json.load(open(sys.argv[1]))["listeners"]:
    if u.startswith("http://"): print(u.rstrip("/")); break' "$d/status.json")
  echo "$name master: ${MURL[$name]} ($mbin)"
done

timed() { # pid url -> "seconds cpu"
  local c0 t0 t1 c1
  c0=$(cpu "$1"); t0=$(now)
  timeout 300 curl -sS -f -o /dev/null ${3:+-u "$3"} "$2"
  t1=$(now); c1=$(cpu "$1")
  echo "$(echo "$t1 - $t0" | bc -l) $(echo "$c1 - $c0" | bc -l)"
}
FILE_PATH="BENCH/1/content/image.bin"
declare -A RATIOS
cat "$W/src/image.bin" > /dev/null   # into the page cache
for r in $(seq "$ROUNDS"); do
  parts=(nginx "${MASTERS[@]}"); [ $((r % 2)) = 0 ] && parts=($(printf '%s\n' "${parts[@]}" | tac))
  declare -A T=() C=()
  for p in "${parts[@]}"; do
    if [ "$p" = nginx ]; then
      read -r T[nginx] C[nginx] < <(timed "$NGINX_WORKER" "$URL/$FILE_PATH")
    else
      name=${p%%=*}
      read -r T[$name] C[$name] < <(timed "${MPID[$name]}" "${MURL[$name]}/BENCH/1/files/image.bin" "$MUSER:$MPASS")
    fi
  done
  line=$(printf 'round %d: nginx %.2f s (%.0f MiB/s, %.2f CPU-s)' "$r" "${T[nginx]}" "$(echo "$SIZE_MIB / ${T[nginx]}" | bc -l)" "${C[nginx]}")
  for m in "${MASTERS[@]}"; do
    name=${m%%=*}
    ratio=$(echo "${T[nginx]} / ${T[$name]}" | bc -l); RATIOS[$name]+="$ratio "
    line+=$(printf '; %s master %.2f s (%.0f MiB/s, %.2f CPU-s), nginx/master %.2f' "$name" "${T[$name]}" "$(echo "$SIZE_MIB / ${T[$name]}" | bc -l)" "${C[$name]}" "$ratio")
  done
  echo "$line"
done
for m in "${MASTERS[@]}"; do
  name=${m%%=*}
  median=$(printf '%s\n' ${RATIOS[$name]} | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
  printf '%s: median nginx/master time ratio over %d rounds: %.2f (goal >= 0.9)\n' "$name" "$ROUNDS" "$median"
done

slow() { # label pid url [user:pass]
  local before peak=0 s cpids=()
  before=$(rss_kib "$2")
  for _ in $(seq "$SLOW"); do
    timeout 12 curl -s -o /dev/null --limit-rate 1M ${4:+-u "$4"} "$3" & cpids+=($!)
  done
  for _ in $(seq 50); do
    s=$(rss_kib "$2"); [ "$s" -gt "$peak" ] && peak=$s; sleep 0.2
  done
  for c in "${cpids[@]}"; do wait "$c" 2>/dev/null || true; done
  printf '%s, %d clients at 1 MiB/s for 10 s: RSS %.1f MiB before, peak %.1f MiB during' "$1" "$SLOW" "$(echo "$before / 1024" | bc -l)" "$(echo "$peak / 1024" | bc -l)"
  [ "$1" != nginx ] && printf ', VmHWM %.1f MiB' "$(echo "$(hwm_kib "$2") / 1024" | bc -l)"
  echo
}
slow nginx "$NGINX_WORKER" "$URL/$FILE_PATH"
for m in "${MASTERS[@]}"; do
  name=${m%%=*}
  slow "$name master" "${MPID[$name]}" "${MURL[$name]}/BENCH/1/files/image.bin" "$MUSER:$MPASS"
done
