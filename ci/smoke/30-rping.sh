#!/usr/bin/env bash
# Usage: ci/rxe ci/smoke/30-rping.sh
#
# rping interop matrix on rxe: Swift server + C client (-V), C server + Swift
# client (-V), Swift + Swift, at -S 23, 64, 4096 and 65535. Each run checks
# both exit codes and that both sides printed one -v line per ping.
# Then a long run, -C 2000 at -S 64, in both directions (UMEM_RPING_LONG_COUNT;
# 10000 gives the longest interop run, which Samples/bench/run-samples-compare
# also makes; 0 skips it).
# Environment: UMEM_RPING_COUNT (pings per run, default 50), UMEM_RPING_ADDR
# (default 198.18.0.1), UMEM_SCRATCH (build folder with debug/rping).
set -uo pipefail
swift_rping=${UMEM_BIN:-${UMEM_SCRATCH:-.build}/debug}/rping
c_rping=$(command -v rping || echo /usr/bin/rping)
addr=${UMEM_RPING_ADDR:-198.18.0.1}
count=${UMEM_RPING_COUNT:-50}
logs=$(mktemp -d)
port=7300
. "$(dirname "$0")/../lib/smoke.sh"
failures=0

# pair NAME SERVER CLIENT SIZE [COUNT]: runs one server and one client,
# checks both.
pair() {
  local name=$1 server=$2 client=$3 size=$4 count=${5:-$count}
  port=$((port + 1))
  local s_out=$logs/$name.server c_out=$logs/$name.client
  local limit=$((100 + count / 50))
  timeout $((limit + 20)) "$server" -s -a "$addr" -p "$port" -S "$size" -v >"$s_out" 2>"$s_out.err" &
  local sp=$!
  listening "$port" || true
  timeout "$limit" "$client" -c -a "$addr" -p "$port" -S "$size" -C "$count" -V -v >"$c_out" 2>"$c_out.err"
  local cs=$?
  wait "$sp"
  local ss=$?
  local c_lines s_lines
  c_lines=$(grep -c '^ping data: rdma-ping-' "$c_out")
  s_lines=$(grep -c '^server ping data: rdma-ping-' "$s_out")
  local race=""
  if [ "$client" = "$c_rping" ] && [ "$cs" -eq 255 ] && c_rping_teardown_race "$c_out"; then
    race=" (C rping's exit 255 is its teardown race: rdma_get_cm_event after its channel closed)"
    cs=0
  fi
  if [ "$cs" -eq 0 ] && [ "$ss" -eq 0 ] && [ "$c_lines" -eq "$count" ] && [ "$s_lines" -eq "$count" ]; then
    echo "ok   $name -S $size -C $count: client 0, server 0, $c_lines/$s_lines -v lines$race"
  else
    echo "FAIL $name -S $size -C $count: client exit $cs, server exit $ss, -v lines $c_lines/$s_lines"
    # stdout and stderr stay apart: a 4 KiB stdout flush can end mid-line,
    # and an unbuffered stderr line would land inside a -v line.
    cat "$c_out" "$c_out.err" | sed 's/^/     client| /' | grep -v 'ping data' | head -n 10
    cat "$s_out" "$s_out.err" | sed 's/^/     server| /' | grep -v 'ping data' | head -n 10
    failures=$((failures + 1))
  fi
}

for size in 23 64 4096 65535; do
  pair swift-server+c-client "$swift_rping" "$c_rping" "$size"
  pair c-server+swift-client "$c_rping" "$swift_rping" "$size"
  pair swift+swift "$swift_rping" "$swift_rping" "$size"
done
# The issue's longest interop runs, at the smallest common size.
long=${UMEM_RPING_LONG_COUNT:-2000}
if [ "$long" -gt 0 ]; then
  pair swift-server+c-client "$swift_rping" "$c_rping" 64 "$long"
  pair c-server+swift-client "$c_rping" "$swift_rping" 64 "$long"
fi

# The first -v lines of both implementations must be byte-identical: both
# runs must succeed and print three lines on each side, so two empty or
# failed runs cannot compare equal.
# ref IMPL PORT PREFIX: one 3-ping run of IMPL with itself; sets ref_status.
ref() {
  local impl=$1 p=$2 prefix=$3 ss cs
  timeout 120 "$impl" -s -a "$addr" -p "$p" -S 64 -v >"$logs/$prefix.server" 2>&1 &
  local sp=$!
  listening "$p" || true
  timeout 100 "$impl" -c -a "$addr" -p "$p" -S 64 -C 3 -v >"$logs/$prefix.client" 2>&1
  cs=$?
  wait "$sp"
  ss=$?
  ref_status="client $cs, server $ss"
  [ "$cs" -eq 0 ] && [ "$ss" -eq 0 ]
}
lines() { grep -E '^(server )?ping data: rdma-ping-' "$1"; }
ref "$c_rping" 7399 ref && c_ok=1 || c_ok=0
c_status=$ref_status
ref "$swift_rping" 7398 swift && s_ok=1 || s_ok=0
s_status=$ref_status
n_ref_c=$(lines "$logs/ref.client" | grep -c .)
n_ref_s=$(lines "$logs/ref.server" | grep -c .)
if [ "$c_ok" -ne 1 ] || [ "$s_ok" -ne 1 ]; then
  fail "-v comparison runs did not succeed (C rping: $c_status; Swift rping: $s_status)"
elif [ "$n_ref_c" -ne 3 ] || [ "$n_ref_s" -ne 3 ]; then
  fail "-v comparison: C rping printed $n_ref_c client and $n_ref_s server lines, not 3 and 3"
elif diff <(lines "$logs/ref.client") <(lines "$logs/swift.client") >/dev/null \
  && diff <(lines "$logs/ref.server") <(lines "$logs/swift.server") >/dev/null; then
  ok "-v output of Swift rping equals C rping's (client and server, 3 pings each, both exit 0)"
else
  fail "-v output differs from C rping's"
  diff <(lines "$logs/ref.client") <(lines "$logs/swift.client") | head -n 6
  diff <(lines "$logs/ref.server") <(lines "$logs/swift.server") | head -n 6
fi

rm -rf "$logs"
echo "30-rping: $failures failure(s)"
[ "$failures" -eq 0 ]
