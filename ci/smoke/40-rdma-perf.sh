#!/usr/bin/env bash
# Usage: ci/rxe ci/smoke/40-rdma-perf.sh
#
# rdma-perf on rxe: every test at 64 B, 4 KiB and 64 KiB with few iterations,
# checked through its JSON report (results, both sides' registration plans);
# then fault cases: nothing listening, server killed mid-run, bad arguments;
# write-bw with --reuse (per-message registration through the cache); and
# no QPs left behind. Each check prints one line.
set -uo pipefail
perf=${UMEM_BIN:-${UMEM_SCRATCH:-.build}/debug}/rdma-perf
addr=${UMEM_RPING_ADDR:-198.18.0.1}
logs=$(mktemp -d)
. "$(dirname "$0")/../lib/smoke.sh"
# What a side says when its peer dies: the disconnect event, or a work
# completion that fails (rxe's retries running out, a flushed queue).
killed_peer='(DISCONNECTED|RETRY_EXC|retry|flush|disconnect|went away)'

# 1. All four tests at three sizes; the report must hold 12 results with
#    sane figures and a plan for each side.
"$perf" server -a "$addr" -p 7480 -v >"$logs/s1" 2>&1 &
sp=$!
listening 7480 || true
timeout 300 "$perf" client -a "$addr" -p 7480 --iterations 100 --json >"$logs/r1.json" 2>"$logs/c1"
cs=$?
wait "$sp"
ss=$?
check=$(perf_report_check "$logs/r1.json" 100)
if [ "$cs" -eq 0 ] && [ "$ss" -eq 0 ] && [ -n "$check" ]; then
  ok "all tests at 64 B, 4 KiB, 64 KiB: client 0, server 0, $check"
else
  fail "full run: client $cs, server $ss"
  show "$logs/c1"
  show "$logs/s1"
fi

# 2. Text output names both plans.
"$perf" server -a "$addr" -p 7481 >"$logs/s2" 2>&1 &
sp=$!
listening 7481 || true
timeout 120 "$perf" client -a "$addr" -p 7481 --tests write-lat --sizes 23 --iterations 50 \
  --backing thp --iova keep >"$logs/c2" 2>&1
cs=$?
wait "$sp"
if [ "$cs" -eq 0 ] && grep -q "^write-lat .* 23 B" "$logs/c2" && grep -q "^server region: .*HCA page" "$logs/c2"; then
  ok "text report: $(grep -m1 '^write-lat' "$logs/c2" | tr -s ' ')"
else
  fail "text report, client $cs"
  show "$logs/c2"
fi

# 3. Nothing listening: a clear error and a failure exit.
timeout 40 "$perf" client -a "$addr" -p 7489 --iterations 10 >"$logs/c3" 2>&1
cs=$?
if [ "$cs" -eq 1 ] && grep -q "RDMA_CM_EVENT_REJECTED" "$logs/c3"; then
  ok "nothing listening: exit $cs, $(head -c 120 "$logs/c3")"
else
  fail "nothing listening: exit $cs"
  show "$logs/c3"
fi

# 4. Server killed in the middle of a long run: the client fails within 10 s.
#    The kill comes once the client holds a connected QP (state RTS in the
#    kernel's resource tracker), so a client that never connected cannot pass.
"$perf" server -a "$addr" -p 7482 >"$logs/s4" 2>&1 &
sp=$!
listening 7482 || true
"$perf" client -a "$addr" -p 7482 --tests write-bw --sizes 4K --iterations 100000000 >"$logs/c4" 2>&1 &
cp=$!
if ! wait_for 60 has_connected_qp "$cp"; then
  fail "server killed: the client never connected"
  show "$logs/c4"
  kill -9 "$sp" "$cp" 2>/dev/null
else
  kill -9 "$sp"
  if ! ends_within "$cp" 10; then
    fail "server killed: client still running after 10 s"
  elif [ "$status" -eq 1 ] && grep -Eq "$killed_peer" "$logs/c4"; then
    ok "server killed mid-run: client exit $status after ${took}s: $(grep -m1 -E "$killed_peer" "$logs/c4" | head -c 160)"
  else
    fail "server killed: client exit $status (want 1 and a disconnect or failed completion)"
    show "$logs/c4"
  fi
fi
wait "$cp" 2>/dev/null
wait "$sp" 2>/dev/null

# 5. Client killed mid-ping-pong: the server fails within 10 s.
"$perf" server -a "$addr" -p 7483 >"$logs/s5" 2>&1 &
sp=$!
listening 7483 || true
"$perf" client -a "$addr" -p 7483 --tests write-lat --sizes 64 --iterations 100000000 >"$logs/c5" 2>&1 &
cp=$!
if ! wait_for 60 has_connected_qp "$sp"; then
  fail "client killed: the server never connected"
  show "$logs/s5"
  kill -9 "$sp" "$cp" 2>/dev/null
else
  kill -9 "$cp"
  if ! ends_within "$sp" 10; then
    fail "client killed: server still running after 10 s"
  elif [ "$status" -eq 1 ] && grep -Eq "$killed_peer" "$logs/s5"; then
    ok "client killed mid-run: server exit $status after ${took}s: $(grep -m1 -E "$killed_peer" "$logs/s5" | head -c 160)"
  else
    fail "client killed: server exit $status (want 1 and a disconnect or failed completion)"
    show "$logs/s5"
  fi
fi
wait "$cp" 2>/dev/null
wait "$sp" 2>/dev/null

# 6. Bad arguments exit 64 (usage) before touching the device.
for args in "--tests write-bandwidth" "--sizes 0" "--iterations 1" "--backing huge" "--queue-depth 0" \
  "--reuse --register-per-message" "--message-buffers 0"; do
  # shellcheck disable=SC2086
  timeout 20 "$perf" client -a "$addr" $args >"$logs/c6" 2>&1
  cs=$?
  if [ "$cs" -eq 64 ]; then ok "client $args: exit 64, $(grep -m1 -i 'error' "$logs/c6")"
  else fail "client $args: exit $cs (want 64)"; show "$logs/c6"; fi
done

# 7. A persistent server: a client's report also written with --output
#    (the same JSON as on stdout); a killed client leaves nothing held in the
#    server (QPs, CQs, MRs, cm ids over all its threads, counted while it
#    lives and compared with the counts while connected), and the next client
#    is served.
"$perf" server --persistent -a "$addr" -p 7484 >"$logs/s7" 2>&1 &
sp=$!
listening 7484 || true
snapshot() { echo "$(owned qp "$sp") $(owned cq "$sp") $(owned mr "$sp") $(owned cm_id "$sp")"; }
base=$(snapshot)
timeout 120 "$perf" client -a "$addr" -p 7484 --tests write-bw --sizes 4K --iterations 50 --json \
  --output "$logs/r7.json" >"$logs/c7.json" 2>"$logs/c7"
cs=$?
if [ "$cs" -eq 0 ] && json_check "$logs/r7.json" --slurpfile stdout "$logs/c7.json" '
  need(. == $stdout[0]; "the file differs from stdout") | need((.results | length) == 1; "\(.results | length) results")' >/dev/null; then
  ok "--output wrote the same report as stdout (client exit 0)"
else
  fail "--output: client exit $cs, or the file differs from stdout"
  show "$logs/c7"
fi
"$perf" client -a "$addr" -p 7484 --tests write-bw --sizes 4K --iterations 100000000 >"$logs/c7b" 2>&1 &
cp=$!
wait_for 60 has_connected_qp "$sp" || true
connected=$(snapshot)
kill -9 "$cp"
wait "$cp" 2>/dev/null
wait_for 15 eval '[ "$(snapshot)" = "$base" ]' || true
after=$(snapshot)
read -r bq _ _ bcm <<<"$base"
read -r cq_ _ _ ccm <<<"$connected"
if ! kill -0 "$sp" 2>/dev/null; then
  fail "--persistent server died with a killed client"
  show "$logs/s7"
elif [ "$bq" -lt 0 ] || [ "$cq_" -le "$bq" ] || [ "$ccm" -le "$bcm" ]; then
  fail "--persistent: the resource tracker did not show the connection (QP CQ MR cm_id: listening $base, connected $connected)"
elif [ "$after" = "$base" ]; then
  ok "--persistent server alive after a killed client, nothing held for it (QP CQ MR cm_id: listening $base, connected $connected, after $after)"
else
  fail "--persistent server holds resources of a killed client (QP CQ MR cm_id: listening $base, connected $connected, after $after)"
fi
if timeout 120 "$perf" client -a "$addr" -p 7484 --tests write-lat --sizes 64 --iterations 20 >"$logs/c7c" 2>&1; then
  ok "--persistent server served the next client"
else
  fail "--persistent server did not serve the next client"
  show "$logs/c7c"
fi
kill "$sp" 2>/dev/null
wait "$sp" 2>/dev/null

# 8. --reuse: write-bw whose messages register through the registration
#    cache, rotating over 4 buffers: 4 misses, the rest hits.
"$perf" server -a "$addr" -p 7485 >"$logs/s8" 2>&1 &
sp=$!
listening 7485 || true
timeout 120 "$perf" client -a "$addr" -p 7485 --tests write-bw --sizes 4K --iterations 200 \
  --reuse --message-buffers 4 --json >"$logs/r8.json" 2>"$logs/c8"
cs=$?
wait "$sp"
check=$(json_check "$logs/r8.json" '.results[0]
  | need(.registration == "cached" and .messageBuffers == 4; "registration \(.registration), \(.messageBuffers) buffers")
  | need(.cacheMisses == 4 and .cacheHits == 196; "\(.cacheHits) hits, \(.cacheMisses) misses (expected 196 and 4)")
  | need(.mibPerSecond > 0; "no bandwidth")
  | "\(.cacheHits) hits, \(.cacheMisses) misses, \(.mibPerSecond * 10 | floor / 10) MiB/s, monitor \(.cacheMonitor)"')
if [ "$cs" -eq 0 ] && [ -n "$check" ]; then
  ok "write-bw --reuse: $check"
else
  fail "write-bw --reuse: client $cs"
  show "$logs/c8"
  show "$logs/s8"
fi

rm -rf "$logs"
echo "40-rdma-perf: $failures failure(s)"
[ "$failures" -eq 0 ]
