# ci/lib/lab2.sh: handshakes between the two hosts of `ci/rxe --hosts 2`,
# for the scripts run there (sourced). A host leaves a mark as a file in
# $UMEM_LAB_DIR/marks, which both VMs and the machine see (9p, no cache); the
# other host waits for it. Every wait is bounded and says what it waited for.
#
#   lab_mark NAME [TEXT]    leave mark NAME (holding TEXT) for the peer
#   lab_wait NAME [SECONDS] wait for the peer's mark NAME (default 120 s) and
#                           print its text; returns 1 when it does not come
#                           or the peer is gone (its script ended or its VM
#                           died or was killed)
#   lab_kill HOST           have the machine kill HOST's VM (a power cut) and
#                           wait until it is done; returns 1 if it is not
#                           within 30 s
#   lab_gone HOST           true when HOST's VM was killed or died
# Sets lab_self (a or b), lab_peer, lab_dir.

lab_self=${UMEM_HOST:?lab2.sh: UMEM_HOST is not set (run under ci/rxe --hosts 2)}
lab_dir=${UMEM_LAB_DIR:?lab2.sh: UMEM_LAB_DIR is not set (run under ci/rxe --hosts 2)}
if [ "$lab_self" = a ]; then lab_peer=b; else lab_peer=a; fi
mkdir -p "$lab_dir/marks"

lab_mark() {
  local file=$lab_dir/marks/$lab_self.$1
  printf '%s\n' "${2:-}" >"$file.tmp" && mv -f "$file.tmp" "$file"
}

lab_gone() { [ -e "$lab_dir/$1.killed" ] || [ -e "$lab_dir/$1.died" ]; }

lab_wait() {
  local file=$lab_dir/marks/$lab_peer.$1 limit=${2:-120} i
  for ((i = 0; i < limit * 10; i++)); do
    if [ -e "$file" ]; then
      cat "$file"
      return 0
    fi
    if lab_gone "$lab_peer" || [ -e "$lab_dir/$lab_peer/status" ]; then
      echo "lab2: host $lab_peer is gone (its script ended or its VM died) before its mark '$1'" >&2
      return 1
    fi
    sleep 0.1
  done
  echo "lab2: host $lab_peer did not leave mark '$1' within ${limit}s" >&2
  return 1
}

lab_kill() {
  local i
  : >"$lab_dir/kill-$1"
  for ((i = 0; i < 300; i++)); do
    [ -e "$lab_dir/$1.killed" ] && return 0
    sleep 0.1
  done
  echo "lab2: the machine did not kill host $1's VM within 30 s" >&2
  return 1
}
