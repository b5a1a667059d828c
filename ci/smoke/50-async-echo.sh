#!/usr/bin/env bash
# Usage: ci/rxe ci/smoke/50-async-echo.sh
#
# async-echo on rxe: one server serving several clients at once from Tasks,
# every echo verified; a client killed mid-run while the server keeps
# serving another, and one more after it; bad arguments exit 64. Each check
# prints one line.
set -uo pipefail
echo_bin=${UMEM_BIN:-${UMEM_SCRATCH:-.build}/debug}/async-echo
addr=${UMEM_RPING_ADDR:-198.18.0.1}
port=7490
logs=$(mktemp -d)
. "$(dirname "$0")/../lib/smoke.sh"

"$echo_bin" server -a "$addr" -p "$port" -v >"$logs/server" 2>&1 &
sp=$!
for _ in $(seq 50); do grep -q listening "$logs/server" && break; sleep 0.1; done

# 1. Several clients at once, each echo compared with what was sent.
timeout 120 "$echo_bin" client -a "$addr" -p "$port" --clients 4 --messages 50 --size 4096 \
  --verify >"$logs/c1" 2>&1
cs=$?
if [ "$cs" -eq 0 ] && grep -q "4 clients, 400 echoes of 4096 B, 0 mismatched" "$logs/c1"; then
  ok "4 concurrent clients x 50 messages x 2 echoes verified: $(tail -n1 "$logs/c1")"
else
  fail "4 concurrent clients: exit $cs"
  show "$logs/c1"
  show "$logs/server"
fi

# 2. A client killed in the middle of its run; another, running at the same
#    time, must finish with every echo matched, and so must one after it.
"$echo_bin" client -a "$addr" -p "$port" --messages 1000000 --size 64 >"$logs/victim" 2>&1 &
vp=$!
sleep 2
timeout 120 "$echo_bin" client -a "$addr" -p "$port" --clients 2 --messages 100 --size 256 \
  --verify >"$logs/c2" 2>&1 &
cp=$!
sleep 1
kill -9 "$vp" 2>/dev/null
wait "$vp" 2>/dev/null
ends_within "$cp" 120
cs=$status
timeout 120 "$echo_bin" client -a "$addr" -p "$port" --clients 1 --messages 20 --size 64 --verify \
  >"$logs/c3" 2>&1
c3=$?
if [ "$cs" -eq 0 ] && [ "$c3" -eq 0 ] && kill -0 "$sp" 2>/dev/null; then
  ok "client killed mid-run: the concurrent client passed ($(tail -n1 "$logs/c2" | cut -c1-60)), a later one too, server still up"
else
  fail "client killed mid-run: concurrent client exit $cs, later client exit $c3"
  show "$logs/c2"
  show "$logs/c3"
  show "$logs/server"
fi
for _ in $(seq 50); do grep -q "client 5:" "$logs/server" && break; sleep 0.1; done
if grep -q "client 5:" "$logs/server"; then
  ok "server ended the killed client's Task: $(grep -m1 'client 5:' "$logs/server" | cut -c1-100)"
else
  fail "server did not report the killed client within 5 s"
  show "$logs/server"
fi

# 3. Bad arguments exit 64 (EX_USAGE).
bad=0
for args in "client -a $addr --clients 0" "client -a $addr --size 0" "client" \
  "server --exit-after 0" "frobnicate"; do
  # shellcheck disable=SC2086
  "$echo_bin" $args >/dev/null 2>&1
  rc=$?
  [ "$rc" -eq 64 ] || { fail "async-echo $args: exit $rc, expected 64"; bad=1; }
done
[ "$bad" -eq 0 ] && ok "bad arguments exit 64"

kill "$sp" 2>/dev/null
wait "$sp" 2>/dev/null
rm -rf "$logs"
exit $((failures > 0))
