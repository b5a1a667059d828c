#!/usr/bin/env bash
# Usage (inside the virtme-ng guest, started by ci/rxe): guest-rxe.sh RUN_DIR
#
# Creates soft-RoCE device rxe0 on dummy netdev rxdummy (198.18.0.1/24 and
# fd00:198:18::1/64),
# then runs RUN_DIR/cmd.sh with the environment from RUN_DIR/env.sh and
# writes its exit status to RUN_DIR/status (ci/rxe reads it back: vng's own
# exit status cannot tell a failed command from a failed VM).
set -uo pipefail
run=$1
t0=$(cut -d' ' -f1 /proc/uptime)

fail_setup() {
  echo "guest-rxe: $*" >&2
  exit 125
}

modprobe rdma_rxe || fail_setup "modprobe rdma_rxe failed"
ip link add rxdummy type dummy || fail_setup "cannot create dummy netdev rxdummy"
ip addr add 198.18.0.1/24 dev rxdummy || fail_setup "cannot address rxdummy"
ip link set rxdummy up || fail_setup "cannot bring rxdummy up"
# An IPv6 address too, for rdma_cm over IPv6 (RoCE v2 GIDs follow the netdev).
ip -6 addr add fd00:198:18::1/64 dev rxdummy nodad || fail_setup "cannot give rxdummy its IPv6 address"
rdma link add rxe0 type rxe netdev rxdummy || fail_setup "rdma link add rxe0 failed"
ibv_devices || fail_setup "ibv_devices failed"
echo "guest-rxe: kernel $(uname -r), booted in ${t0}s, rxe0 ready at $(cut -d' ' -f1 /proc/uptime)s" >&2

# shellcheck source=/dev/null
. "$run/env.sh"
ulimit -l unlimited || echo "guest-rxe: warning: cannot raise the memlock limit" >&2

if [ "${UMEM_RXE_TIMEOUT:-0}" -gt 0 ]; then
  timeout -k 30 "$UMEM_RXE_TIMEOUT" bash "$run/cmd.sh"
else
  bash "$run/cmd.sh"
fi
status=$?
echo "$status" >"$run/status"
sync
exit "$status"
