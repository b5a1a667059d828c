#!/usr/bin/env bash
# Usage: ci/rxe --hosts 2 ci/lib/lab2-stage.sh ci/lib/lab2-stage.sh
#
# The cross-host smoke stage, run on both hosts of one two-host boot: every
# executable script in ci/smoke2/ in name order, each started on both hosts
# together (a handshake per script) and told which host it is on by
# UMEM_HOST. Each host keeps its output in $UMEM_CI_RESULTS/lab2-HOST.log
# (default results folder $UMEM_OUT/ci-test); host A writes
#   lab2.results  "NAME STATUS SECONDS" lines: STATUS is host A's exit
#                 status, or host B's when A's is 0 (a host killed on purpose
#                 counts as 0); SECONDS the longer of the two
#   lab2.seconds  seconds from this script's start to its end on host A
# A script that kills a host must come last (ci/smoke2/90-*). Exit status: 1
# when any script failed on this host, else 0.
# Environment: UMEM_SCRATCH (build folder, default .build), UMEM_LAB2_TIMEOUT
# (seconds per script, default 300: a limit for a loaded machine).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.." || exit 125
. ci/lib/lab2.sh
res=${UMEM_CI_RESULTS:-${UMEM_OUT:-ci/out}/ci-test}
mkdir -p "$res"
log=$res/lab2-$lab_self.log
: >"$log"
if [ "$lab_self" = a ]; then : >"$res/lab2.results"; fi
limit=${UMEM_LAB2_TIMEOUT:-300}
export UMEM_SCRATCH=${UMEM_SCRATCH:-.build}
export UMEM_BIN=${UMEM_BIN:-$UMEM_SCRATCH/debug}

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
say() { echo "$*" | tee -a "$log"; }
start=$(now)
failed=0

for script in ci/smoke2/*; do
  [ -f "$script" ] || continue
  name=$(basename "$script")
  if [ ! -x "$script" ]; then
    say "<-- lab2 $name FAILED: not executable (chmod +x $script)"
    [ "$lab_self" = b ] || echo "$name 126 0" >>"$res/lab2.results"
    failed=1
    continue
  fi
  # Both hosts start each script together; a peer that is gone fails it.
  lab_mark "stage.$name.start"
  if ! lab_wait "stage.$name.start" "$limit" >/dev/null 2>>"$log"; then
    say "<-- lab2 $name FAILED: host $lab_peer never started it ($(tail -n 1 "$log"))"
    [ "$lab_self" = b ] || echo "$name 125 0" >>"$res/lab2.results"
    failed=1
    continue
  fi
  say "--> lab2 $name (host $lab_self)"
  t=$(now)
  timeout -k 20 "$limit" "$script" 2>&1 | tee -a "$log"
  status=${PIPESTATUS[0]}
  secs=$(since "$t")
  if [ "$status" -eq 0 ]; then word=passed; else word="FAILED (exit $status)"; failed=1; fi
  say "<-- lab2 $name on host $lab_self $word after ${secs}s"
  lab_mark "stage.$name.done" "$status $secs"
  [ "$lab_self" = a ] || continue
  # Host A records both sides.
  if peer=$(lab_wait "stage.$name.done" 60 2>/dev/null); then
    read -r peer_status peer_secs <<<"$peer"
  elif lab_gone b && [ -e "$lab_dir/b.killed" ]; then
    peer_status=0 peer_secs=$secs
  else
    peer_status=125 peer_secs=$secs
    say "<-- lab2 $name: host b did not report"
  fi
  total=$status
  [ "$total" -ne 0 ] || total=$peer_status
  echo "$name $total $(awk -v a="$secs" -v b="$peer_secs" 'BEGIN { print (a > b ? a : b) }')" >>"$res/lab2.results"
done

if [ "$lab_self" = a ]; then
  since "$start" >"$res/lab2.seconds"
  say "==> lab2: $(awk '$2 == 0' "$res/lab2.results" | wc -l) passed, $(awk '$2 != 0' "$res/lab2.results" | wc -l) failed in $(cat "$res/lab2.seconds")s"
fi
sync
exit "$failed"
