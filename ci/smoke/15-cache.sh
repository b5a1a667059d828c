#!/usr/bin/env bash
# Usage: ci/rxe ci/smoke/15-cache.sh   (ci/test runs every ci/smoke/* in order)
#
# Smoke test of the registration cache through `umem cache-bench`: the index
# alone (registration replaced by a counter), then real registrations on rxe
# with the userfaultfd monitor, then an unprivileged process (which needs
# UFFD_USER_MODE_ONLY, or falls back to explicit invalidation and says so),
# then the two C anchors the benchmarks compare with (Samples/bench/C: built
# by ci/test's lint stage into $UMEM_SCRATCH/anchors, else here), each
# pairing its misses with plain registrations as cache-bench does.
set -euo pipefail
. "$(dirname "$0")/../lib/smoke.sh"
bin=${UMEM_BIN:-${UMEM_SCRATCH:-.build}/debug}

check() {
  echo "$1" | json_check - --arg kind "$2" '
    .statistics as $s | $s.monitor as $m
    | need(.hits == .lookups; "\(.hits) hits of \(.lookups) lookups")
    | need(.misses == 0; "\(.misses) misses in the timed loop")
    | need(.registrationsAvoided >= .lookups; "registrationsAvoided \(.registrationsAvoided)")
    | need($s.registrations == .regions + .warmup; "\($s.registrations) registrations for \(.regions) regions and \(.warmup) warm-up misses")
    | need(.coldMissNanoseconds > 0; "no cold miss reported")
    | need($kind != "verbs" or (.missRegistrationNanoseconds > 0 and .missRegistrationNanoseconds < .missNanoseconds and .plainSamples == .regions and .coldPlainRegisterNanoseconds > 0); "miss split \(.missRegistrationNanoseconds) of \(.missNanoseconds), \(.plainSamples) plain samples")
    | need($kind != "verbs" or (.missOverPlainMedian > 0 and (.missMinusPlainMedianNanoseconds | type) == "number"); "pairs: median ratio \(.missOverPlainMedian), added \(.missMinusPlainMedianNanoseconds)")
    | need($kind != "verbs" or (.missOwnMedianNanoseconds > 0 and .missOwnMedianNanoseconds < .missNanoseconds and .missOwnOverPlainMedian > 1 and .plainRegisterMedianNanoseconds > 0); "own part of a miss \(.missOwnMedianNanoseconds), 1 + own/plain \(.missOwnOverPlainMedian)")
    | need($kind != "verbs" or (.splitOverheadMedianNanoseconds > 0 and .plainInnerMedianNanoseconds > 0 and .plainInnerMedianNanoseconds <= .plainRegisterMedianNanoseconds and .missOwnNetMedianNanoseconds < .missOwnMedianNanoseconds and (.missOwnNetOverPlainMedian | type) == "number" and .missRegistrationMedianNanoseconds > 0); "split overhead \(.splitOverheadMedianNanoseconds), plain inner \(.plainInnerMedianNanoseconds) of \(.plainRegisterMedianNanoseconds), own net \(.missOwnNetMedianNanoseconds), registration inside a miss \(.missRegistrationMedianNanoseconds)")
    | need($s.liveRegistrations == 0; "closed cache left registrations: \($s)")
    | need($s.deregistrations == $s.registrations; "\($s.deregistrations) deregistrations of \($s.registrations)")
    | need(if $kind != "unprivileged" then $m | has("userfaultfd")
           elif $m | has("userfaultfd") then $m.userfaultfd.userModeOnly
           else $m.explicitOnly.reason | test("userfaultfd") end; "monitor \($m)")
    | "\($kind): \(.hits) hits at \(.hitNanoseconds | floor) ns, miss \(.missNanoseconds / 100 | floor / 10) us, monitor \($m | tojson)"'
}

echo "+ umem cache-bench --registrar counter --regions 1000 --lookups 100000 --json"
out=$("$bin/umem" cache-bench --registrar counter --regions 1000 --lookups 100000 --json)
check "$out" counter

# Without per-thread slots (the path a kernel that refuses membarrier gets):
# every reader on the hashed stripes, with atomic adds.
echo "+ UMEM_CACHE_THREAD_SLOTS=0 umem cache-bench --registrar counter --threads 2 --json"
out=$(UMEM_CACHE_THREAD_SLOTS=0 "$bin/umem" cache-bench --registrar counter --regions 300 \
  --lookups 20000 --threads 2 --json)
check "$out" counter

echo "+ umem cache-bench --regions 200 --lookups 20000 --threads 2 --split-miss --json"
out=$("$bin/umem" cache-bench --regions 200 --lookups 20000 --threads 2 --split-miss --json)
check "$out" verbs

if command -v setpriv >/dev/null && [ "$(id -u)" = 0 ]; then
  echo "+ setpriv (user nobody, no capabilities) umem cache-bench --registrar counter"
  out=$(setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all \
    "$bin/umem" cache-bench --registrar counter --regions 100 --lookups 1000 --json)
  check "$out" unprivileged
else
  echo "(no setpriv or not root: unprivileged check skipped)"
fi

anchors=${UMEM_SCRATCH:-.build}/anchors
[ -x "$anchors/fabric_mr_cache" ] && [ -x "$anchors/ucx_rcache" ] \
  || Samples/bench/build-anchors "$anchors"
for anchor in fabric_mr_cache ucx_rcache; do
  echo "+ Samples/bench/C anchor $anchor --regions 50 --lookups 2000 --warmup 4"
  "$anchors/$anchor" --regions 50 --lookups 2000 --warmup 4 | json_check - '
    need(.hits == .lookups; "\(.hits) hits of \(.lookups) lookups")
    | need(.plainSamples == .regions; "\(.plainSamples) plain samples for \(.regions) regions")
    | need(.plainRegisterNanoseconds > 0 and .missOverPlainMedian > 0
           and (.missMinusPlainMedianNanoseconds | type) == "number"; "no pairs: \(.)")
    | "\(.registrar): \(.hits) hits at \(.hitNanoseconds | floor) ns, miss/plain median of pairs \(.missOverPlainMedian)"'
done
