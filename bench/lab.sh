#!/usr/bin/env bash
# Subnet benchmark: N agents fetching SIZE of content through one shaped WAN link,
# with peer copy (one master, the others copy from it) against the same office with
# peer copy off (every agent downloads directly) in the same run.
#
#   bash bench/lab.sh [AGENTS] [SIZE] [WAN_RATE]      (defaults: 8 256M 400Mbit)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
(cd "$ROOT" && cargo build --release -q)
exec "$ROOT/target/release/contentdist" lab --agents "${1:-8}" --size "${2:-256M}" --wan-rate "${3:-400Mbit}" --baseline
