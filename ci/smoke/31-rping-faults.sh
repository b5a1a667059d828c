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
addr=${UMEM_RPING_ADDR:-198.18.0.1}
logs=$(mktemp -d)
. "$(dirname "$0")/../lib/smoke.sh"
# What a client says when its peer dies: the disconnect event, or a send that
# fails (rxe's transport retries running out) before that event arrives.
killed_peer='^rping: .*(DISCONNECTED|went away|RETRY_EXC|retry|flush)'

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
# ... and against the C server, whose READ fails: it drops the connection,
# which the client reports as the disconnect it is.
"$c_rping" -s -a "$addr" -p 7402 -S 64 >"$logs/s5c" 2>&1 &
sp=$!
listening 7402 || true
expect "client -S 4096 vs C server -S 64" 255 "cma event RDMA_CM_EVENT_DISCONNECTED" \
  "$rping" -c -a "$addr" -p 7402 -S 4096 -C 5 -V
wait "$sp" || true

# 6. Server killed mid-run: the client reports the disconnect within 10 s.
#    The kill comes only once the client has printed pings (it is connected
#    and moving data), so a client that never connected cannot pass.
"$rping" -s -a "$addr" -p 7403 -S 64 >"$logs/s6" 2>&1 &
sp=$!
listening 7403 || true
"$rping" -c -a "$addr" -p 7403 -S 64 -C 0 -V -v >"$logs/c6" 2>&1 &
cp=$!
if ! wait_for 60 lines_at_least "$logs/c6" '^ping data: ' 5; then
  fail "server killed: the client never got 5 pings through"
  show "$logs/c6"
  kill -9 "$sp" "$cp" 2>/dev/null
  wait "$cp" 2>/dev/null
else
  kill -9 "$sp"
  if ! ends_within "$cp" 10; then
    fail "server killed: client still running after 10 s"
  elif [ "$status" -eq 255 ] && grep -Eq "$killed_peer" "$logs/c6"; then
    ok "server killed mid-run: client exit $status after ${took}s: $(grep -m1 '^rping:' "$logs/c6")"
  else
    fail "server killed: client exit $status (want 255 and a disconnect or a failed completion)"
    grep -v 'ping data' "$logs/c6" | head -n 8 | sed 's/^/     | /'
  fi
fi
wait "$sp" 2>/dev/null

# 7. Client killed mid-run: a server that expects -C pings fails within 10 s.
#    (rping.c's server ignores -C; our server given -C N treats a disconnect
#    before N pings as a failure.) Killed once the server has served pings.
"$rping" -s -a "$addr" -p 7404 -S 64 -C 1000000 -v >"$logs/s7" 2>&1 &
sp=$!
listening 7404 || true
"$rping" -c -a "$addr" -p 7404 -S 64 -C 0 >"$logs/c7" 2>&1 &
cp=$!
if ! wait_for 60 lines_at_least "$logs/s7" '^server ping data: ' 5; then
  fail "client killed: the server never served 5 pings"
  show "$logs/s7"
  kill -9 "$sp" "$cp" 2>/dev/null
else
  kill -9 "$cp"
  if ! ends_within "$sp" 10; then
    fail "client killed: server still running after 10 s"
  elif [ "$status" -eq 255 ] && grep -q "^rping: the client went away" "$logs/s7"; then
    ok "client killed mid-run: server exit $status after ${took}s: $(grep -m1 '^rping:' "$logs/s7")"
  else
    fail "client killed: server exit $status (want 255, 'the client went away')"
    grep -v 'ping data' "$logs/s7" | head -n 8 | sed 's/^/     | /'
  fi
fi
wait "$cp" 2>/dev/null
wait "$sp" 2>/dev/null

# 8. A persistent server survives a killed client and lets go of everything it
#    held for it (QPs, CQs, connection ids: counted over all its threads in
#    the kernel's resource tracker, while it lives), then serves the next
#    client (Swift and C). The counts are taken first with the client
#    connected, so the check can see what a leak would leave.
"$rping" -s -P -a "$addr" -p 7405 -S 64 -v >"$logs/s8" 2>&1 &
sp=$!
listening 7405 || true
base_qp=$(owned qp "$sp") base_cq=$(owned cq "$sp") base_cm=$(owned cm_id "$sp")
"$rping" -c -a "$addr" -p 7405 -S 64 -C 0 -v >"$logs/c8" 2>&1 &
cp=$!
if ! wait_for 60 lines_at_least "$logs/c8" '^ping data: ' 5; then
  fail "-P server: the first client never got 5 pings through"
  show "$logs/c8"
fi
conn_qp=$(owned qp "$sp") conn_cq=$(owned cq "$sp") conn_cm=$(owned cm_id "$sp")
kill -9 "$cp"
wait "$cp" 2>/dev/null
settled() { [ "$(owned qp "$sp")" -eq "$base_qp" ] && [ "$(owned cq "$sp")" -eq "$base_cq" ] \
  && [ "$(owned cm_id "$sp")" -eq "$base_cm" ]; }
wait_for 10 settled
left_qp=$(owned qp "$sp") left_cq=$(owned cq "$sp") left_cm=$(owned cm_id "$sp")
counts="QPs $base_qp/$conn_qp/$left_qp, CQs $base_cq/$conn_cq/$left_cq, cm ids $base_cm/$conn_cm/$left_cm (listening/connected/after)"
if ! kill -0 "$sp" 2>/dev/null; then
  fail "-P server died with its client"
  show "$logs/s8"
elif [ "$base_qp" -lt 0 ] || [ "$conn_qp" -le "$base_qp" ] || [ "$conn_cm" -le "$base_cm" ]; then
  fail "-P server: the resource tracker did not show the connection ($counts)"
elif [ "$left_qp" -eq "$base_qp" ] && [ "$left_cq" -eq "$base_cq" ] && [ "$left_cm" -eq "$base_cm" ]; then
  ok "-P server alive after a killed client, nothing held for it: $counts"
else
  fail "-P server holds resources of a killed client: $counts"
fi
expect "-P server serves the next Swift client" 0 "ping data: rdma-ping-9:" \
  "$rping" -c -a "$addr" -p 7405 -S 64 -C 10 -V -v
expect "-P server serves the next C client" 0 "ping data: rdma-ping-9:" \
  "$c_rping" -c -a "$addr" -p 7405 -S 64 -C 10 -V -v
wait_for 10 settled
if [ "$(owned qp "$sp")" -eq "$base_qp" ] && [ "$(owned cm_id "$sp")" -eq "$base_cm" ]; then
  ok "-P server: after two clean clients, QPs and cm ids back to $base_qp and $base_cm"
else
  fail "-P server after two clean clients: QPs $(owned qp "$sp") (want $base_qp), cm ids $(owned cm_id "$sp") (want $base_cm)"
fi
kill "$sp" 2>/dev/null
wait "$sp" 2>/dev/null

# 9. -P serves clients concurrently: while a long client is connected and
#    moving data, short clients (Swift and C) are served, and the long
#    client's pings go on during and after them (it was never blocked).
"$rping" -s -P -a "$addr" -p 7406 -S 64 >"$logs/s9" 2>&1 &
sp=$!
listening 7406 || true
"$rping" -c -a "$addr" -p 7406 -S 64 -C 0 -V -v >"$logs/c9long" 2>&1 &
lp=$!
wait_for 60 lines_at_least "$logs/c9long" '^ping data: ' 5 || true
before=$(grep -c '^ping data: ' "$logs/c9long")
expect "-P: a Swift client served while another is connected" 0 "ping data: rdma-ping-4:" \
  "$rping" -c -a "$addr" -p 7406 -S 64 -C 5 -V -v
expect "-P: a C client served while another is connected" 0 "ping data: rdma-ping-4:" \
  "$c_rping" -c -a "$addr" -p 7406 -S 64 -C 5 -V -v
during=$(grep -c '^ping data: ' "$logs/c9long")
wait_for 30 lines_at_least "$logs/c9long" '^ping data: ' $((during + 5)) || true
after=$(grep -c '^ping data: ' "$logs/c9long")
if kill -0 "$lp" 2>/dev/null && [ "$before" -ge 5 ] && [ "$after" -gt "$during" ]; then
  ok "-P: the long client kept pinging throughout ($before pings before the short clients, $during after them, $after later)"
else
  fail "-P: the long client was not served concurrently (alive? $(kill -0 "$lp" 2>/dev/null && echo yes || echo no); pings $before/$during/$after)"
  grep -v 'ping data' "$logs/c9long" | head -n 8 | sed 's/^/     | /'
fi
kill -9 "$lp" 2>/dev/null
wait "$lp" 2>/dev/null
if wait_for 10 eval '[ "$(owned qp "$sp")" -eq 0 ]' && kill -0 "$sp" 2>/dev/null; then
  ok "-P server alive after the killed long client, no QP left for it"
else
  fail "-P server after the killed long client: alive? $(kill -0 "$sp" 2>/dev/null && echo yes || echo no), QPs $(owned qp "$sp")"
  show "$logs/s9"
fi
kill "$sp" 2>/dev/null
wait "$sp" 2>/dev/null

rm -rf "$logs"
echo "31-rping-faults: $failures failure(s)"
[ "$failures" -eq 0 ]
