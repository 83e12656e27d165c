# Shared by the benchmark scripts (sourced): free ports, a clock, and a local
# nginx serving a published origin.
#
# Needs W (the script's temp dir) and NGINX (the nginx binary); sets URL and
# NGINX_STARTED (the caller's cleanup stops nginx when it is set).

free_port() { # SOCK_STREAM (default) or SOCK_DGRAM
  python3 -c 'import socket;s=socket.socket(socket.AF_INET,socket.'"${1:-SOCK_STREAM}"');s.bind(("127.0.0.1",0));print(s.getsockname()[1])'
}
now() { date +%s.%N; }

# start_origin_nginx ROOT [WORKER_CONNECTIONS]: nginx with sendfile on, one worker,
# serving ROOT on 127.0.0.1 at a free port, waited for until BENCH/1's manifest
# answers.
start_origin_nginx() {
  local port user_line=""
  port=$(free_port)
  [ "$(id -u)" = 0 ] && user_line="user root;"
  mkdir -p "$W/nginx/logs"
  cat > "$W/nginx/nginx.conf" <<NGX
$user_line
worker_processes 1;
error_log $W/nginx/logs/error.log;
pid $W/nginx/nginx.pid;
events { worker_connections ${2:-64}; }
http {
  access_log off;
  sendfile on;
  server { listen 127.0.0.1:$port; root $1; }
}
NGX
  "$NGINX" -p "$W/nginx" -c "$W/nginx/nginx.conf"; NGINX_STARTED=1
  URL="http://127.0.0.1:$port"
  for _ in $(seq 50); do curl -sf -o /dev/null "$URL/BENCH/1/manifest.json" && break; sleep 0.1; done
}
