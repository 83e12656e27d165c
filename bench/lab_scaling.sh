#!/usr/bin/env bash
# Lab scaling against this machine's floor: `contentdist lab` at several office
# sizes, and in the same run, for each size, the least time any design could take
# on this machine: the larger of the WAN time (one download of the content at the
# WAN rate) and N-1 plain copies of the content (`curl -o`, no verification) from
# one local nginx (sendfile) into files on the same file system, all at once.
#
#   bash bench/lab_scaling.sh [SIZE_MIB] [WAN_MBIT] [AGENTS...]
#                              (defaults: 64 400 8 32 64 128)
#
# Per size: the lab's makespan, when its master had the whole content (the WAN's
# part), the floor, and lab / floor; then each column against the smallest office.
# Needs nginx, curl, python3 and a release build. Temp files under $TMPDIR (the
# lab's and the copies' alike), 127.0.0.1 ports chosen at run time.
set -euo pipefail
SIZE_MIB=${1:-64}
WAN_MBIT=${2:-400}
shift $(($# < 2 ? $# : 2))
SIZES=("$@")
[ ${#SIZES[@]} -eq 0 ] && SIZES=(8 32 64 128)
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${CONTENTDIST_BIN:-$ROOT/target/release/contentdist}
[ -x "$BIN" ] || (cd "$ROOT" && cargo build --release -q)
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
W=$(mktemp -d "${TMPDIR:-/tmp}/cd-lab-scaling.XXXXXX")
NGINX_STARTED=""
cleanup() {
  [ -n "$NGINX_STARTED" ] && "$NGINX" -p "$W/nginx" -c "$W/nginx/nginx.conf" -s stop 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT
. "$ROOT/bench/lib.sh"

# The copies' source: as large as the lab's content (its image plus 302,000 bytes).
mkdir -p "$W/origin/BENCH/1" "$W/out"
head -c $((SIZE_MIB * 1024 * 1024 + 302000)) /dev/urandom > "$W/origin/BENCH/1/content.bin"
echo '{}' > "$W/origin/BENCH/1/manifest.json"
start_origin_nginx "$W/origin" 1024

floor_copies() { # N: seconds for N concurrent curl copies
  local n=$1 t0 t1 pids=()
  rm -f "$W"/out/*
  t0=$(now)
  for i in $(seq "$n"); do
    curl -sf -o "$W/out/$i.bin" "$URL/BENCH/1/content.bin" & pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p"; done
  t1=$(now)
  rm -f "$W"/out/*
  echo "$t1 - $t0" | bc -l
}

printf "%-7s %-9s %-11s %-10s %-8s %-8s\n" agents "lab (s)" "master (s)" "floor (s)" "lab/floor" "copies (s)"
declare -A LAB FLOOR
for n in "${SIZES[@]}"; do
  json=$("$BIN" lab --agents "$n" --size "${SIZE_MIB}M" --wan-rate "${WAN_MBIT}Mbit" --json)
  read -r lab master masters <<<"$(python3 -c '
import json,sys
r=json.load(sys.stdin)["lab"]
m=[a["seconds"] for a in r["agents"] if a["role"]=="master"]
print(r["seconds"], min(m) if m else "nan", r["masters_elected"])' <<<"$json")"
  copies=$(floor_copies $((n - 1)))
  wan=$(echo "($SIZE_MIB * 1048576 + 302000) * 8 / ($WAN_MBIT * 1000000)" | bc -l)
  floor=$(python3 -c "print(max($wan, $copies))")
  LAB[$n]=$lab; FLOOR[$n]=$floor
  printf "%-7s %-9.2f %-11.2f %-10.2f %-8.2f %-8.2f  masters elected: %s\n" \
    "$n" "$lab" "$master" "$floor" "$(echo "$lab / $floor" | bc -l)" "$copies" "$masters"
done
first=${SIZES[0]}
for n in "${SIZES[@]}"; do
  printf "%s / %s agents: lab %.1fx, floor %.1fx\n" "$n" "$first" \
    "$(echo "${LAB[$n]} / ${LAB[$first]}" | bc -l)" "$(echo "${FLOOR[$n]} / ${FLOOR[$first]}" | bc -l)"
done
