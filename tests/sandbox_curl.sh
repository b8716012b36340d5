#!/bin/sh
# tests/sandbox_curl.sh: `cellbox serve` driven by curl, as in docs/api.md.
# Prints TAP. Needs root (namespaces, cgroups) and curl.
CELLBOX=${CELLBOX:-./cellbox}
n=0
fail=0
ok() { n=$((n + 1)); if [ "$1" = 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; fail=1; fi; }
if [ "$(id -u)" != 0 ] || ! command -v curl >/dev/null; then echo "1..0 # SKIP needs root and curl"; exit 0; fi

tmp=$(mktemp -d /tmp/cellbox-curl-test.XXXXXX)
"$CELLBOX" serve --listen 127.0.0.1:0 --state-dir "$tmp/state" >"$tmp/out" 2>"$tmp/log" &
pid=$!
cleanup() { kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
i=0
while [ $i -lt 300 ] && ! grep -q "listening on" "$tmp/out"; do sleep 0.05; i=$((i + 1)); done
URL=$(sed -n 's/.*listening on //p' "$tmp/out")
TOKEN=$(cat "$tmp/state/token")
A="Authorization: Bearer $TOKEN"

mode=$(stat -c %a "$tmp/state/token")
ok $([ "$mode" = 600 ] && echo 0 || echo 1) "token file is mode 0600"
grep -q "token $TOKEN" "$tmp/out"; ok $? "token printed at startup"
code=$(curl -s -o /dev/null -w '%{http_code}' "$URL/v1/sandboxes")
ok $([ "$code" = 401 ] && echo 0 || echo 1) "no token: 401"
curl -s "$URL/v1/health" | grep -q '"status":"ok"'; ok $? "health"
code=$(curl -s -o "$tmp/c" -w '%{http_code}' -X PUT -H "$A" "$URL/v1/sandboxes/curl-a" -d '{"instanceType":"lite"}')
ok $([ "$code" = 201 ] && echo 0 || echo 1) "create: 201"
curl -s -H "$A" "$URL/v1/sandboxes/curl-a/exec" -d '{"command":"echo hello from $(hostname)"}' >"$tmp/e"
grep -q '"stdout":"hello from curl-a\\n"' "$tmp/e"; ok $? "exec"
curl -s -N -H "$A" -H 'Accept: text/event-stream' "$URL/v1/sandboxes/curl-a/exec" \
    -d '{"command":"echo one; echo two >&2"}' >"$tmp/sse"
grep -q '^event: start' "$tmp/sse" && grep -q '^event: stdout' "$tmp/sse" && \
    grep -q '^event: stderr' "$tmp/sse" && tail -3 "$tmp/sse" | grep -q '^event: complete'
ok $? "exec as server-sent events"
head -c 5000000 /dev/urandom >"$tmp/blob"
curl -s -X PUT -H "$A" --data-binary @"$tmp/blob" "$URL/v1/sandboxes/curl-a/files/content?path=blob.bin" >"$tmp/u"
grep -q '"size":5000000' "$tmp/u"; ok $? "raw upload with curl --data-binary"
curl -s -H "$A" "$URL/v1/sandboxes/curl-a/files/content?path=/workspace/blob.bin" -o "$tmp/blob2"
cmp -s "$tmp/blob" "$tmp/blob2"; ok $? "raw download is byte-identical"
curl -s -H "$A" "$URL/v1/sandboxes/curl-a/files/read" -d '{"path":"nope"}' | grep -q '"code":"FILE_NOT_FOUND"'
ok $? "errors are JSON with a code"
code=$(curl -s -o /dev/null -w '%{http_code}' -X DELETE -H "$A" "$URL/v1/sandboxes/curl-a")
ok $([ "$code" = 200 ] && echo 0 || echo 1) "delete"
kill -TERM "$pid"
wait "$pid"
ok $? "SIGTERM: clean exit"
echo "1..$n"
exit $fail
