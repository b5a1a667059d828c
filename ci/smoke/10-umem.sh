#!/usr/bin/env bash
# Usage: ci/rxe ci/smoke/10-umem.sh   (ci/test runs every ci/smoke/* in order)
#
# Smoke test of the umem sample on a real rxe device: list devices, then
# register and deregister a 64 KiB buffer. Passes when both exit 0.
# Smoke scripts run from the repository root, inside the same VM boot as the
# device tests, with UMEM_SCRATCH (build folder), UMEM_BIN ($UMEM_SCRATCH/debug)
# and UMEM_OUT (writable) set; exit 0 means passed, anything else failed.
set -euo pipefail
bin=${UMEM_BIN:-${UMEM_SCRATCH:-.build}/debug}

echo "+ umem devices"
"$bin/umem" devices
echo "+ umem register --size 64K --access local-write,remote-read"
"$bin/umem" register --size 64K --access local-write,remote-read
