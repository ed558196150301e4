#!/usr/bin/env bash
# Cross-check of the gateway-overhead numbers with wrk (Debian package), non-streaming only: the same fake
# upstream, direct vs through llmopsd vs through nginx (one worker, upstream keepalive), at 1 and 64 connections.
# Needs: cargo build --release --workspace --bins; apt-get install wrk nginx-light.
set -euo pipefail
cd "$(dirname "$0")/.."
B=target/release
D=$(mktemp -d)
trap 'rm -rf "$D"' EXIT
cat > "$D/post.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"model":"fake-model","messages":[{"role":"user","content":"hello there"}]}'
LUA
$B/fake-upstream --listen 127.0.0.1:0 --reply-words 16 > $D/up.out &
UP=$!
for i in $(seq 50); do grep -q listening $D/up.out && break; sleep 0.1; done
URL=$(grep -o 'http://[^ ]*' $D/up.out)
PORT=$(echo $URL | sed -E 's#http://127.0.0.1:([0-9]+)/v1#\1#')
printf '[engines.fake]\nkind = "openai"\nbase_url = "%s"\nmodels = ["fake-model"]\n' "$URL" > $D/c.toml
$B/llmopsd --config $D/c.toml --data-dir $D --http-listen 127.0.0.1:0 --grpc-listen unix:$D/s.sock > $D/d.out 2>$D/d.err &
DM=$!
for i in $(seq 50); do grep -q listening $D/d.out && break; sleep 0.1; done
DADDR=$(grep -o 'http=[^ ]*' $D/d.out | cut -d= -f2)
NPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p $D/ng
cat > $D/ng/nginx.conf <<NG
daemon off; worker_processes 1; pid $D/ng/nginx.pid; error_log $D/ng/error.log;
events { worker_connections 1024; }
http { access_log off; client_body_temp_path $D/ng; proxy_temp_path $D/ng; fastcgi_temp_path $D/ng; uwsgi_temp_path $D/ng; scgi_temp_path $D/ng;
  upstream up { server 127.0.0.1:$PORT; keepalive 64; }
  server { listen 127.0.0.1:$NPORT; location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_buffering off; } } }
NG
nginx -c $D/ng/nginx.conf -p $D/ng &
NG=$!
sleep 0.5
for c in 1 64; do
  t=$([ $c = 1 ] && echo 1 || echo 2)
  for target in "direct 127.0.0.1:$PORT" "llmopsd $DADDR" "nginx 127.0.0.1:$NPORT"; do
    set -- $target
    echo "== $1 c=$c"
    wrk -t$t -c$c -d10s --latency -s "$D/post.lua" http://$2/v1/chat/completions | grep -E "Requests/sec|  50%|  99%|Non-2xx"
  done
done
kill $NG $DM $UP 2>/dev/null; wait 2>/dev/null || true
