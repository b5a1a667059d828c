#!/usr/bin/env bash
# Usage (inside the virtme-ng guest, started by ci/rxe): guest-rxe.sh RUN_DIR [MAC CIDR]
#
# Creates soft-RoCE device rxe0 on dummy netdev rxdummy (198.18.0.1/24 and
# fd00:198:18::1/64), or, given MAC and CIDR (the two-host lab, 198.18.0.N/24),
# on the network device with that MAC addressed CIDR and fd00:198:18::N/64;
# creates RUN_DIR/ready, then runs RUN_DIR/cmd.sh with the environment from
# RUN_DIR/env.sh and writes its exit status to RUN_DIR/status (ci/rxe reads
# it back: vng's own exit status cannot tell a failed command from a failed
# VM).
set -uo pipefail
run=$1
mac=${2:-}
cidr=${3:-}
t0=$(cut -d' ' -f1 /proc/uptime)

fail_setup() {
  echo "guest-rxe: $*" >&2
  exit 125
}

modprobe rdma_rxe || fail_setup "modprobe rdma_rxe failed"
if [ -z "$mac" ]; then
  netdev=rxdummy cidr=198.18.0.1/24
  ip link add rxdummy type dummy || fail_setup "cannot create dummy netdev rxdummy"
else
  # vng names the wire's NIC as udev likes (enp0s9, ...): find it by its MAC.
  netdev=""
  for dev in /sys/class/net/*; do
    if [ "$(cat "$dev/address" 2>/dev/null)" = "$mac" ]; then netdev=${dev##*/}; fi
  done
  [ -n "$netdev" ] || fail_setup "no network device with MAC $mac (have: $(cat /sys/class/net/*/address | tr '\n' ' '))"
fi
ip addr add "$cidr" dev "$netdev" || fail_setup "cannot address $netdev"
ip link set "$netdev" up || fail_setup "cannot bring $netdev up"
# An IPv6 address too, for rdma_cm over IPv6 (RoCE v2 GIDs follow the netdev).
host_part=${cidr%/*}
ip -6 addr add "fd00:198:18::${host_part##*.}/64" dev "$netdev" nodad \
  || fail_setup "cannot give $netdev its IPv6 address"
rdma link add rxe0 type rxe netdev "$netdev" || fail_setup "rdma link add rxe0 failed"
ibv_devices || fail_setup "ibv_devices failed"
echo "guest-rxe: kernel $(uname -r), booted in ${t0}s, rxe0 on $netdev ($cidr) ready at $(cut -d' ' -f1 /proc/uptime)s" >&2
: >"$run/ready"

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
