#!/usr/bin/env bash
# Usage: ci/rxe ci/smoke/15-cache.sh   (ci/test runs every ci/smoke/* in order)
#
# Smoke test of the registration cache through `umem cache-bench`: the index
# alone (registration replaced by a counter), then real registrations on rxe
# with the userfaultfd monitor, then an unprivileged process (which needs
# UFFD_USER_MODE_ONLY, or falls back to explicit invalidation and says so).
set -euo pipefail
bin=${UMEM_BIN:-${UMEM_SCRATCH:-.build}/debug}

check() {
  python3 - "$1" "$2" <<'PY'
import json, sys
report, kind = json.loads(sys.argv[1]), sys.argv[2]
stats = report["statistics"]
assert report["hits"] == report["lookups"], report
assert report["misses"] == 0, report
assert report["registrationsAvoided"] >= report["lookups"], report
assert stats["registrations"] == report["regions"], stats
assert stats["liveRegistrations"] == 0, "closed cache left registrations: %s" % stats
assert stats["deregistrations"] == stats["registrations"], stats
monitor = stats["monitor"]
if kind == "unprivileged":
    if "userfaultfd" in monitor:
        assert monitor["userfaultfd"]["userModeOnly"], monitor
    else:
        assert "userfaultfd" in monitor["explicitOnly"]["reason"], monitor
else:
    assert "userfaultfd" in monitor, monitor
print("%s: %d hits at %.0f ns, miss %.1f us, monitor %s"
      % (kind, report["hits"], report["hitNanoseconds"], report["missNanoseconds"] / 1000, monitor))
PY
}

echo "+ umem cache-bench --registrar counter --regions 1000 --lookups 100000 --json"
out=$("$bin/umem" cache-bench --registrar counter --regions 1000 --lookups 100000 --json)
check "$out" counter

echo "+ umem cache-bench --regions 200 --lookups 20000 --threads 2 --json"
out=$("$bin/umem" cache-bench --regions 200 --lookups 20000 --threads 2 --json)
check "$out" verbs

if command -v setpriv >/dev/null && [ "$(id -u)" = 0 ]; then
  echo "+ setpriv (user nobody, no capabilities) umem cache-bench --registrar counter"
  out=$(setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all \
    "$bin/umem" cache-bench --registrar counter --regions 100 --lookups 1000 --json)
  check "$out" unprivileged
else
  echo "(no setpriv or not root: unprivileged check skipped)"
fi
