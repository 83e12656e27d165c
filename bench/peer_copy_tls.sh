#!/usr/bin/env bash
# Peer-copy benchmark over HTTPS, over HTTP and over mutual TLS, against nginx on the
# same host.
#
#   bash bench/peer_copy_tls.sh [SIZE_MIB] [ROUNDS]     (defaults: 1024 MiB, 5 rounds)
#
# Three masters (CONTENTDIST_BIN, default target/release/contentdist) each download a
# published file of SIZE_MIB MiB from a local nginx once and keep it: one serving
# HTTPS only (P2PEnabled 0x40, its self-signed certificate), one HTTP only (0x20),
# and one HTTPS only with certificate client authentication ("MTLS": P2PEnabled
# 0x40, P2PSslSettings 0x2; its own store with the script's CA in trusted/ and a
# client certificate the CA issued in my/, which it needs for its own download too).
# Each on its own election port and 127.0.X.* subnet. Then every round, for HTTPS,
# HTTP and MTLS (the order of the three parts, and of the three transfers within a
# part, alternates between rounds), with the page cache dropped before each transfer:
#
#   (a) nginx   `curl -o` of the file from nginx (HTTPS: TLS 1.3 only, a certificate
#               this script makes with its own CA; HTTP: sendfile on; MTLS: a second
#               HTTPS server, TLS 1.3 only, `ssl_verify_client on` with the CA,
#               curl presenting a client certificate of the CA with --cert/--key);
#   (b) master  `curl -o` of the same file from the master's peer-copy interface
#               (GET /content/ID/VERSION/files/PATH, machine-account Basic auth;
#               MTLS: no account, the client certificate is the proof), same curl
#               options (HTTPS and MTLS: -k instead of --cacert, same cipher);
#   (c) peer    a fresh peer agent (empty cache, same P2PEnabled as its master; MTLS:
#               also P2PSslSettings 0x2, its own store with the CA and a client
#               certificate issued for it) doing `contentdist get`, checked:
#               bytes_from_peers = size, bytes_from_origin = 0, delivered file
#               identical, peer log shows protocol=HTTPS (resp. HTTP; MTLS: HTTPS).
#
# Client certificates (master, each peer, curl) are issued by the script's CA with
# extendedKeyUsage clientAuth, basicConstraints CA:FALSE. Before timing, the script
# checks that the mTLS nginx and the MTLS master both refuse curl without a client
# certificate (curl exits non-zero) and accept it with one.
#
# Over HTTPS and MTLS all curls are forced to the TLS 1.3 cipher the HTTPS master
# negotiates by default (found with `openssl s_client -tls1_3` against the master;
# the MTLS master's choice, with a client certificate, is shown too).
#
# Prints per round and part the seconds and MiB/s of each transfer, the ratios
# nginx_time / master_time and nginx_time / peer_time (> 1.0: contentdist faster;
# the peer's time is the `get` wall time, submit to delivered, which includes the
# ~0.5 s election window; the job's own time is shown too), and the CPU seconds
# (user+sys) of server and client of each transfer; then the median ratios. curl -o
# leaves its file in the page cache while the peer fdatasyncs its cache as it copies,
# so the time of a `sync` right after (a) is shown too, and the ratio
# (nginx + sync) / peer. A
# transfer during which cargo or rustc ran on the machine is marked "*".
# Needs nginx, curl, openssl, python3, bc, timeout and root (to drop caches; without
# it the caches are not dropped and the script says so). Everything runs under a temp
# dir, on 127.0.X.Y and ports chosen at run time.
set -euo pipefail
SIZE_MIB=${1:-1024}
ROUNDS=${2:-5}
SIZE=$((SIZE_MIB * 1024 * 1024))
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${CONTENTDIST_BIN:-$ROOT/target/release/contentdist}
[ -x "$BIN" ] || (cd "$ROOT" && cargo build --release -q)
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
W=$(mktemp -d /tmp/cd-tlsbench.XXXXXX)
PIDS=(); NGINX_STARTED=""
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -n "$NGINX_STARTED" ] && "$NGINX" -p "$W/nginx" -c "$W/nginx/nginx.conf" -s stop 2>/dev/null || true
  [ -n "${KEEP_WORKDIR:-}" ] && { echo "work dir kept: $W"; return; }
  rm -rf "$W"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket;s=socket.socket(socket.AF_INET,socket.'"$1"');s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
now() { date +%s.%N; }
DROP=1
drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || DROP=0; }
field() { python3 -c 'import json,sys;print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$@"; }
# CPU seconds (user+sys) a process has used so far.
CLK=$(getconf CLK_TCK)
cpu_s() { awk -v clk="$CLK" '{ sub(/^.*\) /, ""); print ($12 + $13) / clk }' "/proc/$1/stat"; }
f2() { printf '%.2f' "$1"; }
building() { pgrep -x rustc >/dev/null || pgrep -x cargo >/dev/null; }
# Another build on the machine skews the timings: sample every 0.25 s whether cargo or
# rustc runs, and mark each transfer during which one did ("*" in the output).
busy_sampler() { while :; do building && echo "$(now) 1" >> "$W/busy.log"; sleep 0.25; done; }
busy_during() { # t0 t1: "*" if a build ran between them
  [ -f "$W/busy.log" ] && awk -v a="$1" -v b="$2" '$1 >= a - 0.3 && $1 <= b + 0.3 { f = 1 } END { if (f) printf "*" }' "$W/busy.log"
  return 0
}

# --- content, certificates, nginx -------------------------------------------------
mkdir -p "$W/src" "$W/origin" "$W/nginx/logs" "$W/pki" "$W/certstore"
head -c "$SIZE" /dev/urandom > "$W/src/image.bin"
"$BIN" publish "$W/src" --id BENCH --version 1 --out "$W/origin" > /dev/null

NAME=bench.test   # nginx's certificate name, reached with curl --resolve
(
  cd "$W/pki"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -keyout ca.key -out ca.pem -subj "/CN=contentdist bench CA" 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout server.key -out server.csr -subj "/CN=$NAME" 2>/dev/null
  printf 'subjectAltName=DNS:%s,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n' \
    "$NAME" > server.ext
  openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
    -extfile server.ext -out server.pem 2>/dev/null
  printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=clientAuth\n' > client.ext
)
# A client certificate of the CA (client authentication only): CN, out base ->
# BASE.pem (certificate), BASE.key (its key).
client_cert() {
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$2.key" -out "$2.csr" -subj "/CN=$1" 2>/dev/null
  openssl x509 -req -in "$2.csr" -CA "$W/pki/ca.pem" -CAkey "$W/pki/ca.key" -CAcreateserial \
    -days 2 -extfile "$W/pki/client.ext" -out "$2.pem" 2>/dev/null
  rm -f "$2.csr"
}
# An agent's certificate store for MTLS: the CA in trusted/, a client certificate
# issued for CN in my/client.pem (certificate and key in one file).
mtls_store() { # dir cn
  mkdir -p "$1/trusted" "$1/my"
  cp "$W/pki/ca.pem" "$1/trusted/ca.pem"
  client_cert "$2" "$1/issued"
  cat "$1/issued.pem" "$1/issued.key" > "$1/my/client.pem"; rm -f "$1/issued.pem" "$1/issued.key"
}
client_cert "curl.bench.test" "$W/pki/curl"

HPORT=$(free_port SOCK_STREAM)
SPORT=$(free_port SOCK_STREAM)
while :; do MPORT=$(free_port SOCK_STREAM); [ "$MPORT" != "$SPORT" ] && [ "$MPORT" != "$HPORT" ] && break; done
USER_LINE=""; [ "$(id -u)" = 0 ] && USER_LINE="user root;"
cat > "$W/nginx/nginx.conf" <<NGX
$USER_LINE
worker_processes 1;
error_log $W/nginx/logs/error.log;
pid $W/nginx/nginx.pid;
events { worker_connections 64; }
http {
  access_log off;
  sendfile on;
  server { listen 127.0.0.1:$HPORT; root $W/origin; }
  server {
    listen 127.0.0.1:$SPORT ssl;
    server_name $NAME;
    ssl_certificate $W/pki/server.pem;
    ssl_certificate_key $W/pki/server.key;
    ssl_protocols TLSv1.3;
    root $W/origin;
  }
  server {
    listen 127.0.0.1:$MPORT ssl;
    server_name $NAME;
    ssl_certificate $W/pki/server.pem;
    ssl_certificate_key $W/pki/server.key;
    ssl_protocols TLSv1.3;
    ssl_verify_client on;
    ssl_client_certificate $W/pki/ca.pem;
    root $W/origin;
  }
}
NGX
"$NGINX" -p "$W/nginx" -c "$W/nginx/nginx.conf"; NGINX_STARTED=1
URL="http://127.0.0.1:$HPORT"
SURL="https://$NAME:$SPORT"
MURL="https://$NAME:$MPORT"
for _ in $(seq 50); do curl -sf -o /dev/null "$URL/BENCH/1/manifest.json" && break; sleep 0.1; done
sleep 0.2
NGINX_WORKER=$(pgrep -P "$(cat "$W/nginx/nginx.pid")" | head -1)

# --- agents ------------------------------------------------------------------------
MACHINE_KEY="bench-machine-key-0123456789"   # MachineKey needs 16+ characters
MUSER='BENCH$'
MPASS=$(python3 -c 'import hmac,hashlib,sys
print(hmac.new(sys.argv[1].encode(), b"contentdist machine account v1" + b"bench", hashlib.sha256).hexdigest()[:32])' "$MACHINE_KEY")

config() { # dir address p2penabled eport [certstore p2psslsettings]
  mkdir -p "$1"
  cat > "$1/agent.toml" <<TOML
CacheDir = "$1/cache"
ControlSocket = "$1/control.sock"
CertStoreDir = "${5:-$W/certstore}"
OriginUrl = "$URL"
P2PEnabled = $3
P2PSslSettings = ${6:-0x0}
P2PHttpPort = 0
P2PHttpsPort = 0
P2P_Port = $4
ListenAddress = "$2"
ElectionAddress = "127.255.255.255"
AuthenticatedUsers = 1
MachineKey = "$MACHINE_KEY"
LogLevel = "${LOG_LEVEL:-info}"
TOML
}
start_agent() { # dir; sets AGENT_PID
  "$BIN" agent --config "$1/agent.toml" 2>> "$1/agent.log" & AGENT_PID=$!; PIDS+=("$AGENT_PID")
  for _ in $(seq 100); do "$BIN" jobs --config "$1/agent.toml" >/dev/null 2>&1 && return; sleep 0.1; done
  echo "agent did not start:"; cat "$1/agent.log"; exit 1
}
# MTLS: the agent must have chosen its client certificate, else its jobs wait
# (waiting_for_certificate). dir; prints the certificate's subject.
client_cert_chosen() {
  local st=""
  for _ in $(seq 50); do
    "$BIN" status --json --config "$1/agent.toml" > "$1/status.json" 2>/dev/null || true
    st=$(python3 -c 'import json,sys
c=json.load(open(sys.argv[1])).get("client_certificate") or {}
print(c.get("state", "none"), c.get("subject", ""))' "$1/status.json" 2>/dev/null || true)
    [ "${st%% *}" = chosen ] && { echo "${st#* }"; return; }
    sleep 0.1
  done
  echo "$1: no client certificate chosen (state: ${st:-?}):" >&2
  python3 -c 'import json,sys;print(json.dumps(json.load(open(sys.argv[1])).get("client_certificate"), indent=1))' "$1/status.json" >&2 || true
  cat "$1/agent.log" >&2; exit 1
}
# `contentdist get`; for MTLS bounded, so that a job waiting for a certificate
# (1440 min by default) fails the run instead of hanging it.
get_cmd() { # proto
  if [ "$1" = MTLS ]; then echo "timeout 900 $BIN"; else echo "$BIN"; fi
}

# Three subnets: 127.0.X.1 the master, 127.0.X.2 its peers, one election port each.
PARTS=(HTTPS HTTP MTLS)
declare -A EPORT NET BITS SSL SCHEME WIRE MASTER_PID MASTER_URL
BITS[HTTPS]=0x40; BITS[HTTP]=0x20; BITS[MTLS]=0x40
SSL[HTTPS]=0x0;   SSL[HTTP]=0x0;   SSL[MTLS]=0x2
SCHEME[HTTPS]=https; SCHEME[HTTP]=http; SCHEME[MTLS]=https
WIRE[HTTPS]=HTTPS;   WIRE[HTTP]=HTTP;   WIRE[MTLS]=HTTPS   # the peer log's protocol=
used=" 0 "   # not 127.0.0.*: nginx and curl's own addresses
for proto in "${PARTS[@]}"; do
  while :; do
    EPORT[$proto]=$(free_port SOCK_DGRAM)
    [[ "$used" != *" $((EPORT[$proto] % 250)) "* ]] && break
  done
  used+="$((EPORT[$proto] % 250)) "
done
for proto in "${PARTS[@]}"; do
  NET[$proto]="127.0.$((EPORT[$proto] % 250))"
  d="$W/master-$proto"
  store="$W/certstore"
  [ "$proto" = MTLS ] && { store="$d/certstore"; mtls_store "$store" "master.bench.test"; }
  config "$d" "${NET[$proto]}.1" "${BITS[$proto]}" "${EPORT[$proto]}" "$store" "${SSL[$proto]}"
  start_agent "$d"; MASTER_PID[$proto]=$AGENT_PID
  if [ "$proto" = MTLS ]; then
    subj=$(client_cert_chosen "$d") || exit 1
    echo "MTLS master client certificate chosen: $subj"
  fi
  $(get_cmd "$proto") get BENCH --version 1 --dest "$d/dest" --config "$d/agent.toml" --json > "$d/get.json" 2>> "$d/get.log" \
    || { echo "$proto master: get failed (status $?)"; cat "$d/get.json" "$d/get.log" "$d/agent.log"; exit 1; }
  "$BIN" status --json --config "$d/agent.toml" > "$d/status.json"
  lower=${SCHEME[$proto]}
  MASTER_URL[$proto]=$(python3 -c 'import json,sys
for u in json.load(open(sys.argv[1]))["listeners"]:
    if u.startswith(sys.argv[2] + "://"):
        print(u.split("://")[1].split("/")[0]); break' "$d/status.json" "$lower")
  [ -n "${MASTER_URL[$proto]}" ] || { echo "$proto master: no $lower listener"; cat "$d/status.json"; cat "$d/agent.log"; exit 1; }
  echo "$proto master (P2PEnabled ${BITS[$proto]}, P2PSslSettings ${SSL[$proto]}): $lower://${MASTER_URL[$proto]}, downloaded ${SIZE_MIB} MiB from nginx in $(field "$d/get.json" elapsed_ms) ms"
done
for proto in HTTPS MTLS; do
  python3 -c 'import json,sys
c=json.load(open(sys.argv[1])).get("https_certificate")
print(sys.argv[2], "master certificate:", json.dumps(c))' "$W/master-$proto/status.json" "$proto"
done

# --- TLS: the cipher the master negotiates by default, forced on both curls ---------
MHOST=${MASTER_URL[HTTPS]}
S_CLIENT=$(openssl s_client -connect "$MHOST" -tls1_3 </dev/null 2>&1 || true)
CIPHER=$(sed -n 's/.*Cipher is \(TLS_[A-Z0-9_]*\).*/\1/p' <<< "$S_CLIENT" | head -1)
[ -n "$CIPHER" ] || { echo "no TLS 1.3 handshake with the master at $MHOST:"; echo "$S_CLIENT" | head -30; exit 1; }
echo "master $MHOST, openssl s_client -tls1_3: $(grep -m1 -i 'cipher is' <<< "$S_CLIENT")"
# The MTLS master, with the curl client certificate (without one it ends the
# handshake with an alert; s_client may still print the cipher first).
MMHOST=${MASTER_URL[MTLS]}
S_CLIENT_M=$(openssl s_client -connect "$MMHOST" -tls1_3 -cert "$W/pki/curl.pem" -key "$W/pki/curl.key" </dev/null 2>&1 || true)
CIPHER_M=$(sed -n 's/.*Cipher is \(TLS_[A-Z0-9_]*\).*/\1/p' <<< "$S_CLIENT_M" | head -1)
[ -n "$CIPHER_M" ] || { echo "no TLS 1.3 handshake with the MTLS master at $MMHOST:"; echo "$S_CLIENT_M" | head -30; exit 1; }
echo "MTLS master $MMHOST, openssl s_client -tls1_3 -cert curl.pem: $(grep -m1 -i 'cipher is' <<< "$S_CLIENT_M")"
[ "$CIPHER_M" = "$CIPHER" ] || echo "NOTE: the MTLS master negotiates $CIPHER_M, the HTTPS master $CIPHER; both curls are forced to $CIPHER"
TLS_OPTS=(--http1.1 --tlsv1.3 --tls-max 1.3 --tls13-ciphers "$CIPHER")
CLIENT_CERT=(--cert "$W/pki/curl.pem" --key "$W/pki/curl.key")
NGINX_CURL=(curl -sS -f "${TLS_OPTS[@]}" --cacert "$W/pki/ca.pem" --resolve "$NAME:$SPORT:127.0.0.1")
MASTER_CURL=(curl -sS -f "${TLS_OPTS[@]}" -k -u "$MUSER:$MPASS")
MNGINX_NOCERT=(curl -sS -f "${TLS_OPTS[@]}" --cacert "$W/pki/ca.pem" --resolve "$NAME:$MPORT:127.0.0.1")
MMASTER_NOCERT=(curl -sS -f "${TLS_OPTS[@]}" -k)
MNGINX_CURL=("${MNGINX_NOCERT[@]}" "${CLIENT_CERT[@]}")
MMASTER_CURL=("${MMASTER_NOCERT[@]}" "${CLIENT_CERT[@]}")
HTTP_CURL=(curl -sS -f --http1.1)
declare -A A_CMD B_CMD A_URL B_URL
A_CMD[HTTPS]="NGINX_CURL";   A_URL[HTTPS]="$SURL/BENCH/1/content/image.bin"
B_CMD[HTTPS]="MASTER_CURL";  B_URL[HTTPS]="https://$MHOST/content/BENCH/1/files/image.bin"
A_CMD[HTTP]="HTTP_CURL";     A_URL[HTTP]="$URL/BENCH/1/content/image.bin"
B_CMD[HTTP]="HTTP_CURL";     B_URL[HTTP]="http://${MASTER_URL[HTTP]}/content/BENCH/1/files/image.bin"
A_CMD[MTLS]="MNGINX_CURL";   A_URL[MTLS]="$MURL/BENCH/1/content/image.bin"
B_CMD[MTLS]="MMASTER_CURL";  B_URL[MTLS]="https://$MMHOST/content/BENCH/1/files/image.bin"
HTTP_MASTER_AUTH=(-u "$MUSER:$MPASS")

run_curl() { # part a|b url out: runs curl, sets T_WALL T_CPU
  local -n cmd=${1}
  local extra=(); [ "$1" = HTTP_CURL ] && [ "$2" = b ] && extra=("${HTTP_MASTER_AUTH[@]}")
  local tf="$W/time.txt"
  TIMEFORMAT='%R %U %S'
  { time "${cmd[@]}" "${extra[@]}" -o "$4" "$3" 2>> "$W/curl.err"; } 2> "$tf" \
    || { echo "curl $3 failed:"; cat "$W/curl.err"; exit 1; }
  read -r T_WALL u s < "$tf"; T_CPU=$(echo "$u + $s" | bc -l)
}
# MTLS: both servers must refuse curl without a client certificate.
for part in a b; do
  if [ $part = a ]; then c=MNGINX_NOCERT; u=${A_URL[MTLS]}; who=nginx; else c=MMASTER_NOCERT; u=${B_URL[MTLS]}; who=master; fi
  declare -n cmd=$c
  rc=0; out=$("${cmd[@]}" -r 0-1023 -o /dev/null -w 'HTTP %{http_code}' "$u" 2>&1) || rc=$?
  unset -n cmd
  [ "$rc" != 0 ] || { echo "check MTLS $who without a client certificate: NOT refused (curl exit 0): $out"; exit 1; }
  echo "check MTLS $who without a client certificate: refused, curl exit $rc: $(tr '\n' ' ' <<< "$out")"
done
# Check every URL answers (and which TLS each curl uses) before timing.
for proto in "${PARTS[@]}"; do
  for part in a b; do
    if [ $part = a ]; then c=${A_CMD[$proto]}; u=${A_URL[$proto]}; else c=${B_CMD[$proto]}; u=${B_URL[$proto]}; fi
    declare -n cmd=$c
    extra=(); [ "$c" = HTTP_CURL ] && [ $part = b ] && extra=("${HTTP_MASTER_AUTH[@]}")
    out=$("${cmd[@]}" "${extra[@]}" -v -r 0-1023 -o /dev/null -w 'HTTP %{http_code}' "$u" 2>&1) \
      || { echo "check $proto $part $u failed:"; echo "$out"; exit 1; }
    unset -n cmd
    code=$(grep -o 'HTTP [0-9]*$' <<< "$out" || true)
    tls=$(grep -m1 'SSL connection using' <<< "$out" | sed 's/^\* *//' || true)
    echo "check $proto $([ $part = a ] && echo nginx || echo master): $u -> $code${tls:+, $tls}"
    [[ "$code" =~ ^HTTP\ 20[06]$ ]] || { echo "$out"; exit 1; }
  done
done
echo "TLS: curl ${TLS_OPTS[*]} (nginx: --cacert; master: -k; MTLS both: --cert/--key curl.pem, a client certificate of the CA)"

busy_sampler & PIDS+=("$!")
# Warm-up, untimed: on this VM the first transfer after the setup (whichever it is)
# runs up to 3x slower, its time in the kernel copying page-cache pages (memory the
# host has to fault in again after drop_caches). One pass of each curl first.
for proto in "${PARTS[@]}"; do
  drop_caches; run_curl "${A_CMD[$proto]}" a "${A_URL[$proto]}" "$W/out.bin"; w1=$T_WALL
  drop_caches; run_curl "${B_CMD[$proto]}" b "${B_URL[$proto]}" "$W/out.bin"
  printf 'warm-up %s (untimed): nginx %.2f s, master %.2f s\n' "$proto" "$w1" "$T_WALL"
done
rm -f "$W/out.bin"
BUSY_ANY=""

# --- rounds --------------------------------------------------------------------------
declare -A RB RC RCJ RCS
transfer() { # proto kind(a|b|c) round; appends to LINE and CPUL
  local proto=$1 kind=$2 r=$3
  case $kind in
    a)
      rm -f "$W/out.bin"; drop_caches
      local s0 t0; s0=$(cpu_s "$NGINX_WORKER"); t0=$(now)
      run_curl "${A_CMD[$proto]}" a "${A_URL[$proto]}" "$W/out.bin"
      A_S=$T_WALL; A_BUSY=$(busy_during "$t0" "$(now)")
      # curl leaves the file in the page cache; the peer fdatasyncs its cache as it
      # goes. Time the writeback too, for a durable-to-durable comparison.
      t0=$(now); sync; A_SYNC=$(echo "$(now) - $t0" | bc -l)
      CPUL[a]="nginx $(f2 "$(echo "$(cpu_s "$NGINX_WORKER") - $s0" | bc -l)") + curl $(f2 "$T_CPU")"
      cmp -s "$W/out.bin" "$W/src/image.bin" || { echo "round $r $proto nginx: bytes differ"; exit 1; }
      ;;
    b)
      rm -f "$W/out.bin"; drop_caches
      local mp=${MASTER_PID[$proto]} s0 t0; s0=$(cpu_s "$mp"); t0=$(now)
      run_curl "${B_CMD[$proto]}" b "${B_URL[$proto]}" "$W/out.bin"
      B_S=$T_WALL; B_BUSY=$(busy_during "$t0" "$(now)")
      CPUL[b]="master $(f2 "$(echo "$(cpu_s "$mp") - $s0" | bc -l)") + curl $(f2 "$T_CPU")"
      cmp -s "$W/out.bin" "$W/src/image.bin" || { echo "round $r $proto master: bytes differ"; exit 1; }
      ;;
    c)
      local d="$W/peer-$proto" store="$W/certstore"
      rm -rf "$d"
      # MTLS: a fresh store with the CA and a client certificate issued for this peer.
      [ "$proto" = MTLS ] && { store="$d/certstore"; mtls_store "$store" "peer$r.bench.test"; }
      config "$d" "${NET[$proto]}.2" "${BITS[$proto]}" "${EPORT[$proto]}" "$store" "${SSL[$proto]}"; drop_caches
      start_agent "$d"; local pp=$AGENT_PID mp=${MASTER_PID[$proto]}
      [ "$proto" = MTLS ] && client_cert_chosen "$d" > /dev/null
      local m0 p0 t0 t1; m0=$(cpu_s "$mp"); p0=$(cpu_s "$pp")
      t0=$(now)
      $(get_cmd "$proto") get BENCH --version 1 --dest "$d/dest" --config "$d/agent.toml" --json > "$d/get.json" 2>> "$d/get.log" \
        || { echo "round $r $proto peer: get failed (status $?)"; cat "$d/get.json" "$d/get.log" "$d/agent.log"; exit 1; }
      t1=$(now); C_BUSY=$(busy_during "$t0" "$t1")
      CPUL[c]="master $(f2 "$(echo "$(cpu_s "$mp") - $m0" | bc -l)") + peer agent $(f2 "$(echo "$(cpu_s "$pp") - $p0" | bc -l)")"
      kill "$pp"; wait "$pp" 2>/dev/null || true
      local from_peers from_origin
      from_peers=$(field "$d/get.json" bytes_from_peers); from_origin=$(field "$d/get.json" bytes_from_origin)
      [ "$from_origin" = 0 ] && [ "$from_peers" = "$SIZE" ] \
        || { echo "round $r $proto peer: not a peer copy (origin $from_origin, peers $from_peers)"; cat "$d/agent.log"; exit 1; }
      cmp -s "$d/dest/image.bin" "$W/src/image.bin" || { echo "round $r $proto peer: delivered bytes differ"; exit 1; }
      local proto_seen
      proto_seen=$(sed 's/\x1b\[[0-9;]*m//g' "$d/agent.log" | grep -o 'protocol=[A-Z]*' | sort -u | tr '\n' ' ' || true)
      [ "$proto_seen" = "protocol=${WIRE[$proto]} " ] \
        || { echo "round $r $proto peer: log shows '${proto_seen}', expected protocol=${WIRE[$proto]}"; cat "$d/agent.log"; exit 1; }
      C_S=$(echo "$t1 - $t0" | bc -l)
      C_JOB=$(echo "$(field "$d/get.json" elapsed_ms) / 1000" | bc -l)
      ;;
  esac
}

for r in $(seq "$ROUNDS"); do
  parts=(HTTPS HTTP MTLS); kinds=(a b c)
  [ $((r % 2)) = 0 ] && { parts=(MTLS HTTP HTTPS); kinds=(c b a); }
  for proto in "${parts[@]}"; do
    declare -A CPUL=()
    for k in "${kinds[@]}"; do transfer "$proto" "$k" "$r"; done
    rb=$(echo "$A_S / $B_S" | bc -l); rc=$(echo "$A_S / $C_S" | bc -l); rcj=$(echo "$A_S / $C_JOB" | bc -l)
    rcs=$(echo "($A_S + $A_SYNC) / $C_S" | bc -l)
    RB[$proto]+="$rb "; RC[$proto]+="$rc "; RCJ[$proto]+="$rcj "; RCS[$proto]+="$rcs "
    mbs() { printf '%.0f' "$(echo "$SIZE_MIB / $1" | bc -l)"; }
    [ -n "$A_BUSY$B_BUSY$C_BUSY" ] && BUSY_ANY=1
    printf 'round %d %-5s (%s): nginx%s %.2f s (%s MiB/s; then sync %.2f s); master%s %.2f s (%s MiB/s), ratio %.2f; peer%s %.2f s (%s MiB/s; job %.2f s), ratio %.2f (job %.2f; nginx+sync %.2f)\n' \
      "$r" "$proto" "${kinds[*]}" "$A_BUSY" "$A_S" "$(mbs "$A_S")" "$A_SYNC" "$B_BUSY" "$B_S" "$(mbs "$B_S")" "$rb" \
      "$C_BUSY" "$C_S" "$(mbs "$C_S")" "$C_JOB" "$rc" "$rcj" "$rcs"
    printf '    cpu s (server + client): (a) %s; (b) %s; (c) %s\n' "${CPUL[a]}" "${CPUL[b]}" "${CPUL[c]}"
  done
done
[ "$DROP" = 1 ] || echo "WARNING: page caches could not be dropped (not root?)"
[ -n "$BUSY_ANY" ] && echo "WARNING: cargo/rustc ran during the transfers marked *: those timings are skewed"
median() { printf '%s\n' $1 | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo "median ratios nginx_time / contentdist_time over $ROUNDS rounds (> 1.0: contentdist faster):"
for proto in "${PARTS[@]}"; do
  printf '  %-5s server-only (master) %.2f; peer copy %.2f (job time %.2f; nginx curl+sync / peer %.2f)\n' "$proto" \
    "$(median "${RB[$proto]}")" "$(median "${RC[$proto]}")" "$(median "${RCJ[$proto]}")" "$(median "${RCS[$proto]}")"
done
