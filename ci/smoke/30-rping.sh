#!/usr/bin/env bash
# Usage: ci/rxe ci/smoke/30-rping.sh
#
# rping interop matrix on rxe: Swift server + C client (-V), C server + Swift
# client (-V), Swift + Swift, at -S 23, 64, 4096 and 65535. Each run checks
# both exit codes and that both sides printed one -v line per ping.
# Then -C 10000 at -S 64 in both directions (RPING_LONG_COUNT; 0 skips it).
# Environment: RPING_COUNT (pings per run, default 50), RPING_ADDR
# (default 198.18.0.1), UMEM_SCRATCH (build folder with debug/rping).
set -uo pipefail
swift_rping=${UMEM_BIN:-${UMEM_SCRATCH:-.build}/debug}/rping
c_rping=$(command -v rping || echo /usr/bin/rping)
addr=${RPING_ADDR:-198.18.0.1}
count=${RPING_COUNT:-50}
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
  if [ "$cs" -eq 0 ] && [ "$ss" -eq 0 ] && [ "$c_lines" -eq "$count" ] && [ "$s_lines" -eq "$count" ]; then
    echo "ok   $name -S $size -C $count: client 0, server 0, $c_lines/$s_lines -v lines"
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
long=${RPING_LONG_COUNT:-10000}
if [ "$long" -gt 0 ]; then
  pair swift-server+c-client "$swift_rping" "$c_rping" 64 "$long"
  pair c-server+swift-client "$c_rping" "$swift_rping" 64 "$long"
fi

# The first -v lines of both implementations must be byte-identical.
"$c_rping" -s -a "$addr" -p 7399 -S 64 -v >"$logs/ref.server" 2>&1 &
sp=$!
listening 7399 || true
"$c_rping" -c -a "$addr" -p 7399 -S 64 -C 3 -v >"$logs/ref.client" 2>&1
wait "$sp"
"$swift_rping" -s -a "$addr" -p 7398 -S 64 -v >"$logs/swift.server" 2>&1 &
sp=$!
listening 7398 || true
"$swift_rping" -c -a "$addr" -p 7398 -S 64 -C 3 -v >"$logs/swift.client" 2>&1
wait "$sp"
if diff <(grep 'ping data' "$logs/ref.client") <(grep 'ping data' "$logs/swift.client") >/dev/null \
  && diff <(grep 'ping data' "$logs/ref.server") <(grep 'ping data' "$logs/swift.server") >/dev/null; then
  echo "ok   -v output of Swift rping equals C rping's (client and server, 3 pings)"
else
  echo "FAIL -v output differs from C rping's"
  diff <(grep 'ping data' "$logs/ref.client") <(grep 'ping data' "$logs/swift.client") | head -n 6
  failures=$((failures + 1))
fi

rm -rf "$logs"
echo "30-rping: $failures failure(s)"
[ "$failures" -eq 0 ]
