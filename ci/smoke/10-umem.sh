#!/usr/bin/env bash
# Usage: ci/rxe ci/smoke/10-umem.sh   (ci/test runs every ci/smoke/* in order)
#
# Smoke test of the umem sample on a real rxe device: list devices, then
# register and deregister a 64 KiB buffer. Passes when both exit 0.
# Smoke scripts run from the repository root, inside the same VM boot as the
# device tests, with UMEM_SCRATCH (build folder), UMEM_BIN ($UMEM_SCRATCH/debug)
# and UMEM_OUT (writable) set; exit 0 means passed, anything else failed.
set -euo pipefail
. "$(dirname "$0")/../lib/smoke.sh"
bin=${UMEM_BIN:-${UMEM_SCRATCH:-.build}/debug}

echo "+ umem devices"
devices=$("$bin/umem" devices)
echo "$devices"
# The device's header line comes first, then its ports.
echo "$devices" | head -n 1 | grep -Eq '^[a-z0-9_]+: ' \
  || { echo "umem devices: the first line is not a device header" >&2; exit 1; }
echo "+ umem register --size 64K --access local-write,remote-read"
"$bin/umem" register --size 64K --access local-write,remote-read
echo "+ umem register --size 64K --check-rdma --cycles 20 --iova 0x7f0000000000 --device rxe0"
out=$("$bin/umem" register --size 64K --check-rdma --cycles 20 --iova 0x7f0000000000 --device rxe0)
echo "$out"
echo "$out" | grep -q "^iova        0x7f0000000000$" || { echo "--iova not applied" >&2; exit 1; }
echo "$out" | grep -q "RDMA WRITE+READ of 4 KiB through rkey 0x[0-9a-f]* verified" \
  || { echo "--check-rdma did not verify" >&2; exit 1; }
echo "+ umem devices --json"
"$bin/umem" devices --json | json_check - '
  (if type == "array" then . else .devices end) as $d
  | need(($d | length) > 0; "devices --json lists no device")
  | "devices --json: \([$d[].name] | join(", "))"'

# The owned tier from the command line: 4 threads on one shared domain, and
# the pinned bytes and open regions back where they started.
echo "+ umem register --size 4K --threads 4 --cycles 200 --json"
out=$("$bin/umem" register --size 4K --threads 4 --cycles 200 --json)
echo "$out"
echo "$out" | json_check - '
  need(.tier == "owned"; "tier \(.tier), not owned")
  | need(.threads == 4 and .cycles == 200; "threads \(.threads), cycles \(.cycles)")
  | need(.registrationsPerSecond > 0; "no registrations per second")
  | need(.pinnedBytesBefore == .pinnedBytesAfter; "pinned \(.pinnedBytesBefore) B before, \(.pinnedBytesAfter) B after")
  | need(.openRegionsBefore != null; "rdma resource show mr did not answer")
  | need(.openRegionsBefore == .openRegionsAfter; "open MRs \(.openRegionsBefore) before, \(.openRegionsAfter) after")
  | "owned tier: \(.registrationsPerSecond | floor) registrations/s on 4 threads, nothing left pinned or registered"'
echo "+ umem register --threads 2 --tier scoped (must be a usage error, exit 64)"
set +e
"$bin/umem" register --size 4K --threads 2 --tier scoped 2>/dev/null
status=$?
set -e
[ "$status" -eq 64 ] || { echo "expected exit 64, got $status" >&2; exit 1; }
