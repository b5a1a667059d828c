#!/usr/bin/env bash
# Usage: ci/rxe --hosts 2 ci/smoke2/30-rping.sh ci/smoke2/30-rping.sh
#
# rping across the wire, at -S 64, 4096 and 65535 with -V: Swift server on A
# with C client on B, C server on A with Swift client on B, Swift server on
# B with Swift client on A. Each host checks its own side (exit status and
# one -v line per ping) and prints one line per run. The three pairs of one
# size run at the same time (on their own ports).
# Environment: UMEM_LAB2_RPING_COUNT (pings per run, default 10), UMEM_BIN
# (folder with the Swift rping, default $UMEM_SCRATCH/debug).
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 125
. ci/lib/lab2.sh
swift_rping=${UMEM_BIN:-${UMEM_SCRATCH:-.build}/debug}/rping
c_rping=$(command -v rping || echo /usr/bin/rping)
count=${UMEM_LAB2_RPING_COUNT:-10}
logs=$(mktemp -d)
run=0

impl() { if [ "$1" = swift ]; then echo "$swift_rping"; else echo "$c_rping"; fi; }

# pair RUN SERVER_IMPL SERVER_HOST CLIENT_IMPL CLIENT_HOST SIZE: one run;
# this host plays its part (or none) and checks it.
pair() {
  local run=$1 s_impl=$2 s_host=$3 c_impl=$4 c_host=$5 size=$6
  local port=$((7300 + run)) tag=rping.$run
  local name="$s_impl server@$s_host + $c_impl client@$c_host -S $size -C $count"
  local out=$logs/$run limit=$((60 + count))
  local lines
  if [ "$lab_self" = "$s_host" ]; then
    lab_serve "$tag" "$port" $((limit + 60)) "$out" \
      "$(impl "$s_impl")" -s -a "$UMEM_SELF_ADDR" -p "$port" -S "$size" -v
    lines=$(grep -c '^server ping data: rdma-ping-' "$out")
    if [ "$lab_status" -eq 0 ] && [ "$lines" -eq "$count" ]; then
      ok "$name (server side): exit 0, $lines -v lines"
    else
      fail "$name (server side): exit $lab_status, $lines/$count -v lines"
      cat "$out" "$out.err" | sed 's/^/     server| /' | grep -v 'ping data' | head -n 10
    fi
  elif [ "$lab_self" = "$c_host" ]; then
    lab_connect "$tag" "$limit" "$out" \
      "$(impl "$c_impl")" -c -a "$UMEM_PEER_ADDR" -p "$port" -S "$size" -C "$count" -V -v
    lines=$(grep -c '^ping data: rdma-ping-' "$out")
    if [ "$lab_status" -eq 0 ] && [ "$lines" -eq "$count" ]; then
      ok "$name (client side): exit 0, $lines -v lines, ${lab_seconds}s"
    elif [ "$c_impl" = c ] && [ "$lab_status" -eq 255 ] && [ "$lines" -eq "$count" ] \
      && c_rping_teardown_race "$out"; then
      ok "$name (client side): exit 255 from C rping's teardown race (rdma_get_cm_event" \
        "after its channel closed), $lines -v lines, ${lab_seconds}s"
    else
      fail "$name (client side): exit $lab_status, $lines/$count -v lines"
      cat "$out" "$out.err" | sed 's/^/     client| /' | grep -v 'ping data' | head -n 10
    fi
  fi
}

for size in 64 4096 65535; do
  lab_spawn pair $((run += 1)) swift a c b "$size"
  lab_spawn pair $((run += 1)) c a swift b "$size"
  lab_spawn pair $((run += 1)) swift b swift a "$size"
  lab_join
done

rm -rf "$logs"
echo "30-rping (host $lab_self): $failures failure(s)"
[ "$failures" -eq 0 ]
