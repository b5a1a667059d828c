#!/usr/bin/env bash
# Usage: ci/rxe --hosts 2 ci/smoke2/90-faults.sh ci/smoke2/90-faults.sh
#
# Host B's VM killed (a power cut) in the middle of four runs at once:
#   - a Swift rping client on A pinging a Swift rping server on B,
#   - rdma-core's rping client on A pinging its server on B (for comparison:
#     the kernel's transport retries, not the tools, decide how long a dead
#     peer takes to notice),
#   - an rdma-perf client on A in write-bw against an rdma-perf server on B,
#   - a Swift rping client on B pinging a persistent (-P) Swift rping server
#     on A.
# Host A checks that its Swift clients end with an error message and a failure
# status within 10 s of the kill (it waits up to UMEM_LAB2_FAULT_WAIT, default
# 20 s, to say how long they took), reports when the C rping client ended,
# and checks that the -P server goes on serving: it is alive, and a new client
# from A itself gets 10 validated pings.
# It kills host B, so it runs last in the stage (ci/lib/lab2-stage.sh).
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 125
. ci/lib/lab2.sh
bin=${UMEM_BIN:-${UMEM_SCRATCH:-.build}/debug}
rping=$bin/rping
perf=$bin/rdma-perf
c_rping=$(command -v rping || echo /usr/bin/rping)
logs=$(mktemp -d)

# count_at_least N LIMIT CMD...: waits (up to LIMIT s) until CMD prints a
# number >= N; returns 1 if it never does.
count_at_least() {
  local want=$1 deadline=$((SECONDS + $2)) n
  shift 2
  while [ "$SECONDS" -lt "$deadline" ]; do
    n=$("$@" 2>/dev/null)
    [ "${n:-0}" -ge "$want" ] && return 0
    sleep 0.2
  done
  return 1
}

if [ "$lab_self" = b ]; then
  # B: a client of A's -P server, then two servers for A's clients.
  [ "$(lab_wait fault.pserver 120)" = yes ] || { fail "host A's -P server never listened"; exit 1; }
  "$rping" -c -a "$UMEM_PEER_ADDR" -p 7501 -S 64 -C 0 -V >"$logs/pclient" 2>&1 &
  "$rping" -s -a "$UMEM_SELF_ADDR" -p 7502 -S 64 >"$logs/rserver" 2>&1 &
  "$perf" server -a "$UMEM_SELF_ADDR" -p 7503 >"$logs/pserver" 2>&1 &
  "$c_rping" -s -a "$UMEM_SELF_ADDR" -p 7504 -S 64 >"$logs/cserver" 2>&1 &
  if listening 7502 120 && listening 7503 120 && listening 7504 120; then lab_mark fault.servers yes; else lab_mark fault.servers no; fi
  # Now wait to be killed; if A gives up instead, say so and end.
  lab_wait fault.end 300 >/dev/null
  fail "host B was not killed (A said: $(cat "$lab_dir/marks/a.fault.end" 2>/dev/null))"
  kill -9 $(jobs -p) 2>/dev/null
  exit 1
fi

# A: the persistent server, then two clients of B's servers.
stdbuf -oL "$rping" -s -P -a "$UMEM_SELF_ADDR" -p 7501 -S 64 -v >"$logs/pserver" 2>&1 &
psp=$!
if listening 7501 120; then lab_mark fault.pserver yes; else lab_mark fault.pserver no; fi
if [ "$(lab_wait fault.servers 180)" != yes ]; then
  fail "host B's servers never listened"
  lab_mark fault.end "no servers"
  kill "$psp" 2>/dev/null
  exit 1
fi
stdbuf -oL "$rping" -c -a "$UMEM_PEER_ADDR" -p 7502 -S 64 -C 0 -V -v >"$logs/rclient" 2>&1 &
rcp=$!
"$perf" client -a "$UMEM_PEER_ADDR" -p 7503 --tests write-bw --sizes 4K --iterations 100000000 \
  >"$logs/perf" 2>&1 &
pcp=$!
stdbuf -oL "$c_rping" -c -a "$UMEM_PEER_ADDR" -p 7504 -S 64 -C 0 -V -v >"$logs/cclient" 2>&1 &
ccp=$!

# (Line-buffered -v output, so the counts below are current.)
# In the middle: A's rping client has pinged, the -P server has served B's
# client, and rdma-perf's QP is connected.
in_middle=yes
count_at_least 5 120 grep -c '^ping data: rdma-ping-' "$logs/rclient" \
  || { in_middle=no; fail "A's rping client never pinged B's server"; show "$logs/rclient"; }
count_at_least 5 120 grep -c '^ping data: rdma-ping-' "$logs/cclient" \
  || { in_middle=no; fail "A's C rping client never pinged B's C server"; show "$logs/cclient"; }
count_at_least 5 120 grep -c '^server ping data: rdma-ping-' "$logs/pserver" \
  || { in_middle=no; fail "A's -P server never served B's client"; show "$logs/pserver"; }
perf_qp() { rdma resource show qp 2>/dev/null | grep 'comm rdma-perf' | grep -c 'state RTS'; }
count_at_least 1 120 perf_qp \
  || { in_middle=no; fail "A's rdma-perf client never connected"; show "$logs/perf"; }
# ... and in its write-bw loop, not still exchanging control messages: its
# QP's send PSN has moved on by a few hundred packets since it connected
# (a handful of control messages move it by one each).
perf_psn() { rdma resource show qp 2>/dev/null | grep 'comm rdma-perf' | grep -o 'sq-psn [0-9]*' | head -n 1 | cut -d' ' -f2; }
psn0=$(perf_psn)
perf_sent() { echo $(($(perf_psn || echo 0) - ${psn0:-0})); }
count_at_least 300 120 perf_sent \
  || { in_middle=no; fail "A's rdma-perf client never got into its write-bw loop"; show "$logs/perf"; }
pings=$(grep -c '^ping data: rdma-ping-' "$logs/rclient")

# Timed from the kill request (so a slow machine's delays count against us).
t=$EPOCHREALTIME
if ! lab_kill b; then
  fail "host B's VM could not be killed"
  lab_mark fault.end "kill failed"
  kill -9 "$rcp" "$pcp" "$ccp" "$psp" 2>/dev/null
  exit 1
fi

# The clients must end by themselves: the Swift ones within 10 s of the kill.
# (Bounded by the clock; the end times use bash's own clock, no forks.)
wait_s=${UMEM_LAB2_FAULT_WAIT:-20}
deadline=$((SECONDS + wait_s))
declare -A ended=()
while [ "${#ended[@]}" -lt 3 ] && [ "$SECONDS" -lt "$deadline" ]; do
  for pid in "$rcp" "$pcp" "$ccp"; do
    if [ -z "${ended[$pid]:-}" ] && ! kill -0 "$pid" 2>/dev/null; then ended[$pid]=$EPOCHREALTIME; fi
  done
  sleep 0.1
done
for job in "Swift rping client:$rcp:$logs/rclient:10" "rdma-perf client:$pcp:$logs/perf:10" \
  "C rping client:$ccp:$logs/cclient:"; do
  IFS=: read -r what pid log limit <<<"$job"
  if [ -z "${ended[$pid]:-}" ]; then
    kill -9 "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    if [ -z "$limit" ]; then
      echo "info $what on A: still running ${wait_s} s after host B's death"
    else
      fail "$what on A still running ${wait_s} s after host B died"
      show "$log"
    fi
    continue
  fi
  wait "$pid"
  st=$?
  message=$(grep -v 'ping data' "$log" | grep -m1 -i 'error\|status\|rping:\|rdma-perf\|event' | cut -c1-200)
  took=$(awk -v a="$t" -v b="${ended[$pid]}" 'BEGIN { printf "%.1f", b - a }')
  if [ -z "$limit" ]; then
    echo "info $what on A: exit $st ${took}s after host B's death: $message"
  elif [ "$st" -ne 0 ] && [ -n "$message" ] && awk -v t="$took" -v l="$limit" 'BEGIN { exit !(t <= l) }'; then
    ok "$what on A: exit $st ${took}s after host B's death ($in_middle mid-run): $message"
  else
    fail "$what on A: exit $st ${took}s after host B's death (want a failure with a message within ${limit}s): $message"
    show "$log"
  fi
done
echo "     (A's rping client had $pings pings before the kill)"

# The -P server goes on serving: a new client from A itself.
if kill -0 "$psp" 2>/dev/null; then
  ok "-P server on A alive after its client on B died"
  timeout 60 "$rping" -c -a "$UMEM_SELF_ADDR" -p 7501 -S 64 -C 10 -V -v >"$logs/next" 2>&1
  st=$?
  lines=$(grep -c '^ping data: rdma-ping-' "$logs/next")
  if [ "$st" -eq 0 ] && [ "$lines" -eq 10 ]; then
    ok "-P server on A serves a new client from A: exit 0, 10 validated pings"
  else
    fail "-P server on A, new client from A: exit $st, $lines/10 pings"
    show "$logs/next"
  fi
else
  fail "-P server on A died with its client on B"
  show "$logs/pserver"
fi
kill "$psp" 2>/dev/null
wait "$psp" 2>/dev/null
lab_mark fault.end done

rm -rf "$logs"
echo "90-faults (host $lab_self): $failures failure(s)"
[ "$failures" -eq 0 ]
