#!/usr/bin/env bash
# Usage: ci/rxe ci/smoke/31-rping-faults.sh
#
# Fault cases for the Swift rping on rxe: a peer killed mid-run, a persistent
# server (-P) that outlives a killed client, nothing listening, an address no
# one answers, loopback, mismatched -S, and bad flags. Each check prints one
# line; the script exits non-zero if any failed.
set -uo pipefail
rping=${UMEM_BIN:-${UMEM_SCRATCH:-.build}/debug}/rping
c_rping=$(command -v rping || echo /usr/bin/rping)
addr=${RPING_ADDR:-198.18.0.1}
logs=$(mktemp -d)
. "$(dirname "$0")/../lib/smoke.sh"

# expect NAME WANT_STATUS PATTERN CMD...: runs CMD (40 s limit), checks the
# exit status and that stderr+stdout contain PATTERN.
expect() {
  local name=$1 want=$2 pattern=$3
  shift 3
  local t
  t=$(now)
  timeout 40 "$@" >"$logs/out" 2>&1
  local status=$?
  if [ "$status" -eq "$want" ] && grep -q -- "$pattern" "$logs/out"; then
    ok "$name: exit $status after $(since "$t")s, says '$pattern'"
  else
    fail "$name: exit $status (want $want), pattern '$pattern'"
    show "$logs/out"
  fi
}

# 1. Nothing listening: REJECTED, reported like rping.
expect "nothing listening" 255 "cma event RDMA_CM_EVENT_REJECTED, error 8" \
  "$rping" -c -a "$addr" -p 7400 -C 1
# 2. An address on the subnet that nobody answers: a clear timeout.
expect "no peer at 198.18.0.99" 255 "ESTABLISHED within" "$rping" -c -a 198.18.0.99 -p 7400 -C 1
# 3. Loopback does not reach rxe.
expect "127.0.0.1" 255 "ENODEV" "$rping" -c -a 127.0.0.1 -p 7400 -C 1
# 4. Bad flags exit with EINVAL (22) like rping.
expect "invalid -S 1" 22 "Invalid size 1" "$rping" -s -S 1
expect "neither -s nor -c" 22 "Usage" "$rping" -a "$addr"
expect "unresolvable -a" 255 "getaddrinfo" "$rping" -c -a no.such.host.invalid -C 1

# 5. Mismatched sizes: a Swift server with a smaller -S refuses the READ.
"$rping" -s -a "$addr" -p 7401 -S 64 >"$logs/s5" 2>&1 &
sp=$!
listening 7401 || true
expect "client -S 4096 vs Swift server -S 64 (client side)" 255 "DISCONNECTED" \
  "$rping" -c -a "$addr" -p 7401 -S 4096 -C 5 -V
wait "$sp"
status=$?
if [ "$status" -ne 0 ] && grep -q "use the same -S" "$logs/s5"; then
  ok "client -S 4096 vs Swift server -S 64 (server side): exit $status, asks for the same -S"
else
  fail "mismatched sizes, Swift server: exit $status"
  show "$logs/s5"
fi
# ... and against the C server, whose READ fails.
"$c_rping" -s -a "$addr" -p 7402 -S 64 >"$logs/s5c" 2>&1 &
sp=$!
listening 7402 || true
expect "client -S 4096 vs C server -S 64" 255 "RDMA_CM_EVENT_" \
  "$rping" -c -a "$addr" -p 7402 -S 4096 -C 5 -V
wait "$sp" || true

# 6. Server killed mid-run: the client reports the disconnect within 10 s.
"$rping" -s -a "$addr" -p 7403 -S 64 >"$logs/s6" 2>&1 &
sp=$!
listening 7403 || true
"$rping" -c -a "$addr" -p 7403 -S 64 -C 0 -V >"$logs/c6" 2>&1 &
cp=$!
sleep 3
kill -9 "$sp"
if ! ends_within "$cp" 10; then
  fail "server killed: client still running after 10 s"
elif [ "$status" -ne 0 ] && grep -q "RDMA_CM_EVENT_DISCONNECTED\|status" "$logs/c6"; then
  ok "server killed mid-run: client exit $status after ${took}s: $(grep -m1 'rping:' "$logs/c6")"
else
  fail "server killed: client exit $status"
  show "$logs/c6"
fi

# 7. Client killed mid-run: a server that expects -C pings fails within 10 s.
#    (rping.c's server ignores -C; our server given -C N treats a disconnect
#    before N pings as a failure.)
"$rping" -s -a "$addr" -p 7404 -S 64 -C 1000000 >"$logs/s7" 2>&1 &
sp=$!
listening 7404 || true
"$rping" -c -a "$addr" -p 7404 -S 64 -C 0 >"$logs/c7" 2>&1 &
cp=$!
sleep 3
kill -9 "$cp"
if ! ends_within "$sp" 10; then
  fail "client killed: server still running after 10 s"
elif [ "$status" -ne 0 ] && grep -q "went away" "$logs/s7"; then
  ok "client killed mid-run: server exit $status after ${took}s: $(grep -m1 'rping:' "$logs/s7")"
else
  fail "client killed: server exit $status"
  show "$logs/s7"
fi
wait "$cp" 2>/dev/null

# 8. A persistent server survives a killed client, holds no QP for it, and
#    serves the next client (Swift and C).
"$rping" -s -P -a "$addr" -p 7405 -S 64 -v >"$logs/s8" 2>&1 &
sp=$!
listening 7405 || true
"$rping" -c -a "$addr" -p 7405 -S 64 -C 0 >"$logs/c8" 2>&1 &
cp=$!
sleep 3
kill -9 "$cp"
wait "$cp" 2>/dev/null
sleep 2
qps=$(rdma resource show qp 2>/dev/null | grep -c "pid $sp " || true)
if kill -0 "$sp" 2>/dev/null && [ "$qps" -eq 0 ]; then
  ok "-P server alive after a killed client, $qps QPs left for it"
else
  fail "-P server: alive? $(kill -0 "$sp" 2>/dev/null && echo yes || echo no), QPs left $qps"
  show "$logs/s8"
fi
expect "-P server serves the next Swift client" 0 "ping data: rdma-ping-9:" \
  "$rping" -c -a "$addr" -p 7405 -S 64 -C 10 -V -v
expect "-P server serves the next C client" 0 "ping data: rdma-ping-9:" \
  "$c_rping" -c -a "$addr" -p 7405 -S 64 -C 10 -V -v
kill "$sp" 2>/dev/null
wait "$sp" 2>/dev/null

# 9. -P serves clients concurrently: a short client finishes while a long
#    one is still running on the same server (Swift and C clients).
"$rping" -s -P -a "$addr" -p 7406 -S 64 >"$logs/s9" 2>&1 &
sp=$!
listening 7406 || true
"$rping" -c -a "$addr" -p 7406 -S 64 -C 0 -V >"$logs/c9long" 2>&1 &
lp=$!
sleep 1
expect "-P: a Swift client served while another is connected" 0 "ping data: rdma-ping-4:" \
  "$rping" -c -a "$addr" -p 7406 -S 64 -C 5 -V -v
expect "-P: a C client served while another is connected" 0 "ping data: rdma-ping-4:" \
  "$c_rping" -c -a "$addr" -p 7406 -S 64 -C 5 -V -v
if kill -0 "$lp" 2>/dev/null; then
  ok "-P: the long client was still running throughout (served concurrently)"
else
  fail "-P: the long client ended early"
  show "$logs/c9long"
fi
kill -9 "$lp" 2>/dev/null
wait "$lp" 2>/dev/null
sleep 1
if kill -0 "$sp" 2>/dev/null; then ok "-P server alive after the killed long client"; else fail "-P server died"; show "$logs/s9"; fi
kill "$sp" 2>/dev/null
wait "$sp" 2>/dev/null

# 10. Nothing left behind: no user QPs or CM ids remain once all runs ended.
sleep 1
left=$(rdma resource show qp 2>/dev/null | grep -c "comm rping" || true)
if [ "$left" -eq 0 ]; then ok "no rping QPs left in the kernel"; else fail "$left rping QPs left"; fi

rm -rf "$logs"
echo "31-rping-faults: $failures failure(s)"
[ "$failures" -eq 0 ]
