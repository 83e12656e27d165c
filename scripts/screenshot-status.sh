#!/usr/bin/env bash
# Screenshot of an agent's status page (GET / on its metrics listener) in the middle
# of a lab run: `contentdist lab --metrics` on loopback, one follower's page opened in
# headless Chromium once its job is under way.
#
#   bash scripts/screenshot-status.sh [OUT.png]      # default docs/status-page.png
#
# Needs: chromium (Debian package `chromium`), jq, curl; a release build
# (`cargo build --release`) or CONTENTDIST=/path/to/contentdist. Every wait is bounded.
set -euo pipefail
cd "$(dirname "$0")/.."

out=${1:-docs/status-page.png}
bin=${CONTENTDIST:-target/release/contentdist}
# Between these shares of the content the page shows bars half full.
low=${LOW_PERCENT:-35}
for tool in chromium jq curl; do
    command -v "$tool" >/dev/null || { echo "$0: $tool is missing" >&2; exit 2; }
done
[ -x "$bin" ] || { echo "$0: $bin missing: cargo build --release" >&2; exit 2; }

work=$(mktemp -d)
lab=
cleanup() {
    [ -n "$lab" ] && kill "$lab" 2>/dev/null && wait "$lab" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

# 4 agents, 64 MiB behind a 20 Mbit/s WAN: about 30 s, long enough to look.
# (The log exists before the lab starts: the background job opens it later.)
: >"$work/lab.log"
"$bin" lab --metrics --agents 4 --size 64M --wan-rate 20Mbit >"$work/report" 2>"$work/lab.log" &
lab=$!

# Poll `cond` every 0.2 s for at most `secs` seconds.
wait_for() {
    local secs=$1 what=$2; shift 2
    local i
    for ((i = 0; i < secs * 5; i++)); do
        if "$@"; then return 0; fi
        kill -0 "$lab" 2>/dev/null || { echo "$0: the lab ended:" >&2; cat "$work/lab.log" >&2; exit 1; }
        sleep 0.2
    done
    echo "$0: no $what within $secs s" >&2
    cat "$work/lab.log" >&2
    exit 1
}

pages_listed() { [ "$(grep -c '^status page' "$work/lab.log")" -ge 4 ]; }
wait_for 30 "status page URLs" pages_listed

master_known() { grep -q ' master 127\.' "$work/lab.log"; }
wait_for 30 "master" master_known
master=$(grep -o ' master 127\.[0-9.]*' "$work/lab.log" | tail -n 1 | awk '{print $2}')
# A follower's page: its bytes come from peers, its election names the master.
url=$(grep '^status page' "$work/lab.log" | awk '{print $3}' | grep -v "//$master:" | head -n 1)
echo "master $master; status page of a follower: $url"

under_way() {
    local p
    p=$(curl -sf --max-time 2 "${url}status.json" |
        jq '[.jobs[0] | select(.bytes_total > 0) | .bytes_verified * 100 / .bytes_total] | first // 0')
    [ "${p%.*}" -ge "$low" ]
}
wait_for 90 "job past $low%" under_way

mkdir -p "$(dirname "$out")"
profile=$(mktemp -d -p "$work")
timeout 60 chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --hide-scrollbars --user-data-dir="$profile" --window-size=1200,900 \
    --screenshot="$out" "$url" 2>"$work/chromium.log" ||
    { cat "$work/chromium.log" >&2; exit 1; }
[ -s "$out" ] || { echo "$0: no screenshot written" >&2; exit 1; }
echo "wrote $out ($(stat -c %s "$out") bytes)"
