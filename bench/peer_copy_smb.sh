#!/usr/bin/env bash
# Peer copy over SMB on loopback, against smbclient reading the same file from the
# same smbd, and against the HTTP peer copy from the same master, in the same run.
#
#   bash bench/peer_copy_smb.sh [SIZE_MIB] [ROUNDS]     (defaults: 1024 MiB, 5 rounds)
#
# The master (CONTENTDIST_BIN, default target/release/contentdist) serves SMB and
# HTTP (P2PEnabled 0x21) on 127.0.0.1 (smbd listens only on an interface's address,
# and 127.0.0.1 is lo's), its own smbd on a free port; it downloads a published file
# of SIZE_MIB MiB from a local nginx once and keeps it. Then every round, with the
# page cache dropped before each transfer (the order alternates between rounds):
#
#   (a) smbclient  `smbclient //127.0.0.1/contentdist -m SMB3 -U P2P-ACCOUNT -c get`
#                  of the file from the master's smbd (the account from `contentdist
#                  status --p2p-account`; signing is mandatory there, as for peers);
#   (b) SMB peer   a fresh preboot agent (empty cache, P2PEnabled 0x1) on 127.0.0.2
#                  doing `contentdist get`: it copies every block over SMB (checked:
#                  bytes from peers = size, from origin 0, the delivered file
#                  identical, its log says protocol=SMB);
#   (c) HTTP peer  the same with P2PEnabled 0x20 (log: protocol=HTTP).
#
# The peers are preboot agents so that they serve nothing themselves (a full agent
# would start an smbd of its own, which cannot listen on 127.0.0.2). A peer
# fdatasyncs its cache as it copies and smbclient does not, so the time of a `sync`
# right after (a) is shown, and the ratio (smbclient + sync) / SMB peer too.
# Prints per round the seconds and MiB/s of each transfer and the ratios
# smbclient / SMB peer and HTTP peer / SMB peer (> 1.0: the SMB peer copy faster),
# then their medians. Needs root (smbd, dropping caches), samba, smbclient, nginx,
# curl, python3 and bc. Everything runs under a temp dir on ports chosen at run time.
set -euo pipefail
SIZE_MIB=${1:-1024}
ROUNDS=${2:-5}
SIZE=$((SIZE_MIB * 1024 * 1024))
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${CONTENTDIST_BIN:-$ROOT/target/release/contentdist}
[ -x "$BIN" ] || (cd "$ROOT" && cargo build --release -q)
[ "$(id -u)" = 0 ] || { echo "needs root (the master's smbd, dropping caches)"; exit 1; }
[ -x /usr/sbin/smbd ] && command -v smbclient >/dev/null || { echo "needs samba and smbclient"; exit 1; }
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
W=$(mktemp -d /tmp/cd-smbbench.XXXXXX)
PIDS=(); NGINX_STARTED=""
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  [ -n "$NGINX_STARTED" ] && "$NGINX" -p "$W/nginx" -c "$W/nginx/nginx.conf" -s stop 2>/dev/null || true
  [ -n "${KEEP_WORKDIR:-}" ] && { echo "work dir kept: $W"; return; }
  rm -rf "$W"
}
trap cleanup EXIT

. "$ROOT/bench/lib.sh"
drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches; }
field() { python3 -c 'import json,sys;print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$@"; }

mkdir -p "$W/src" "$W/origin"
head -c "$SIZE" /dev/urandom > "$W/src/image.bin"
"$BIN" publish "$W/src" --id BENCH --version 1 --out "$W/origin" > /dev/null
start_origin_nginx "$W/origin"

EPORT=$(free_port SOCK_DGRAM)
HTTP_PORT=$(free_port)
while :; do SMB_PORT=$(free_port); [ "$SMB_PORT" != "$HTTP_PORT" ] && break; done
config() { # dir address p2penabled preboot
  mkdir -p "$1"
  cat > "$1/agent.toml" <<TOML
CacheDir = "$1/cache"
ControlSocket = "$1/control.sock"
CertStoreDir = "$1/certs"
MetricsAddress = ""
OriginUrl = "$URL"
P2PEnabled = $3
P2PHttpPort = $HTTP_PORT
P2PSmbPort = $SMB_PORT
P2P_Port = $EPORT
ListenAddress = "$2"
ElectionAddress = "127.255.255.255"
ManageFirewall = false
Preboot = $4
LogLevel = "info"
TOML
}
start_agent() { # dir; sets AGENT_PID
  "$BIN" agent --config "$1/agent.toml" 2>> "$1/agent.log" & AGENT_PID=$!; PIDS+=("$AGENT_PID")
  for _ in $(seq 100); do "$BIN" jobs --config "$1/agent.toml" >/dev/null 2>&1 && return; sleep 0.1; done
  echo "agent did not start:"; cat "$1/agent.log"; exit 1
}

M="$W/master"
config "$M" 127.0.0.1 0x21 false
start_agent "$M"
for _ in $(seq 150); do
  "$BIN" status --json --config "$M/agent.toml" > "$M/status.json"
  [ "$(python3 -c 'import json,sys;print((json.load(open(sys.argv[1])).get("smb") or {}).get("state"))' "$M/status.json")" = running ] && break
  sleep 0.1
done
"$BIN" get BENCH --version 1 --dest "$M/dest" --config "$M/agent.toml" --json > "$M/get.json" 2>> "$M/get.log"
echo "master: smb://127.0.0.1:$SMB_PORT/contentdist and http://127.0.0.1:$HTTP_PORT, downloaded $SIZE_MIB MiB from nginx in $(field "$M/get.json" elapsed_ms) ms"
"$BIN" status --p2p-account --json --config "$M/agent.toml" > "$M/account.json"
ACCOUNT="$(field "$M/account.json" user)%$(field "$M/account.json" password)"
SMBCLIENT=(smbclient "//127.0.0.1/contentdist" -p "$SMB_PORT" -m SMB3 -U "$ACCOUNT")
"${SMBCLIENT[@]}" -c "ls BENCH/1/data/*" | grep -q image.bin || { echo "smbclient cannot list the share"; exit 1; }
smbd_version=$(/usr/sbin/smbd --version); echo "smbd: $smbd_version; smbclient: $(smbclient --version)"

smbclient_get() { # sets A_S A_SYNC
  rm -f "$W/out.bin"; drop_caches
  local t0; t0=$(now)
  "${SMBCLIENT[@]}" -c "get BENCH/1/data/image.bin $W/out.bin" > "$W/smbclient.log" 2>&1 \
    || { echo "smbclient get failed:"; cat "$W/smbclient.log"; exit 1; }
  A_S=$(echo "$(now) - $t0" | bc -l)
  t0=$(now); sync; A_SYNC=$(echo "$(now) - $t0" | bc -l)
  cmp -s "$W/out.bin" "$W/src/image.bin" || { echo "smbclient: bytes differ"; exit 1; }
  rm -f "$W/out.bin"
}
peer_get() { # P2PEnabled wire-name; sets P_S P_JOB
  local d="$W/peer-$2"
  rm -rf "$d"; config "$d" 127.0.0.2 "$1" true; drop_caches
  start_agent "$d"; local pp=$AGENT_PID t0 t1
  t0=$(now)
  "$BIN" get BENCH --version 1 --dest "$d/dest" --config "$d/agent.toml" --json > "$d/get.json" 2>> "$d/get.log" \
    || { echo "$2 peer: get failed"; cat "$d/get.json" "$d/get.log" "$d/agent.log"; exit 1; }
  t1=$(now)
  kill "$pp"; wait "$pp" 2>/dev/null || true
  [ "$(field "$d/get.json" bytes_from_origin)" = 0 ] && [ "$(field "$d/get.json" bytes_from_peers)" = "$SIZE" ] \
    || { echo "$2 peer: not a peer copy"; cat "$d/get.json"; exit 1; }
  cmp -s "$d/dest/image.bin" "$W/src/image.bin" || { echo "$2 peer: delivered bytes differ"; exit 1; }
  grep -q "protocol=$2" "$d/agent.log" || { echo "$2 peer: its log does not say protocol=$2"; cat "$d/agent.log"; exit 1; }
  P_S=$(echo "$t1 - $t0" | bc -l)
  P_JOB=$(echo "$(field "$d/get.json" elapsed_ms) / 1000" | bc -l)
}

# Warm-up, untimed (the first transfer after setup is slow on this VM).
smbclient_get
RA=""; RAS=""; RH=""
mbs() { printf '%.0f' "$(echo "$SIZE_MIB / $1" | bc -l)"; }
for r in $(seq "$ROUNDS"); do
  steps=(a b c); [ $((r % 2)) = 0 ] && steps=(c b a)
  for s in "${steps[@]}"; do
    case $s in
      a) smbclient_get ;;
      b) peer_get 0x1 SMB; B_S=$P_S; B_JOB=$P_JOB ;;
      c) peer_get 0x20 HTTP; C_S=$P_S; C_JOB=$P_JOB ;;
    esac
  done
  ra=$(echo "$A_S / $B_S" | bc -l); ras=$(echo "($A_S + $A_SYNC) / $B_S" | bc -l); rh=$(echo "$C_S / $B_S" | bc -l)
  RA+="$ra "; RAS+="$ras "; RH+="$rh "
  printf 'round %d (%s): smbclient %.2f s (%s MiB/s; then sync %.2f s); SMB peer %.2f s (%s MiB/s; job %.2f s); HTTP peer %.2f s (%s MiB/s; job %.2f s); smbclient/SMB peer %.2f (with sync %.2f); HTTP peer/SMB peer %.2f\n' \
    "$r" "${steps[*]}" "$A_S" "$(mbs "$A_S")" "$A_SYNC" "$B_S" "$(mbs "$B_S")" "$B_JOB" "$C_S" "$(mbs "$C_S")" "$C_JOB" "$ra" "$ras" "$rh"
done
median() { printf '%s\n' $1 | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
printf 'median over %d rounds (> 1.0: the SMB peer copy faster): smbclient / SMB peer %.2f (smbclient + sync / SMB peer %.2f); HTTP peer / SMB peer %.2f\n' \
  "$ROUNDS" "$(median "$RA")" "$(median "$RAS")" "$(median "$RH")"
"$BIN" status --json --config "$M/agent.toml" > "$M/status.json"
python3 -c 'import json,sys;s=json.load(open(sys.argv[1]))["smb"];print("master smbd: restarts", s["restarts"], "bytes served", s["bytes_served"])' "$M/status.json"
