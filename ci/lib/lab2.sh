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
#   lab_serve TAG PORT LIMIT OUT CMD...
#                           runs server CMD here (stdout to OUT, stderr to
#                           OUT.err, killed after LIMIT s), leaves mark
#                           TAG.listening once an rdma_cm listener is on PORT
#                           ("yes", or "no" after 120 s), and waits for CMD to
#                           end: by itself, or within 30 s of the peer's mark
#                           TAG.client; sets lab_status (137: killed)
#   lab_connect TAG LIMIT OUT CMD...
#                           waits for the peer's TAG.listening (180 s), runs client
#                           CMD (stdout to OUT, stderr to OUT.err, killed
#                           after LIMIT s), leaves TAG.client holding its exit
#                           status; sets lab_status (125: no server) and
#                           lab_seconds (CMD's wall time)
#   lab_spawn CMD...        runs CMD (a check that prints ok/FAIL lines) in
#   lab_join                the background; lab_join waits for all of them,
#                           prints their output in order and adds their FAIL
#                           lines to $failures
# Sets lab_self (a or b), lab_peer, lab_dir; sources ci/lib/smoke.sh (ok,
# fail, listening, ends_within, ...).

lab_self=${UMEM_HOST:?lab2.sh: UMEM_HOST is not set (run under ci/rxe --hosts 2)}
lab_dir=${UMEM_LAB_DIR:?lab2.sh: UMEM_LAB_DIR is not set (run under ci/rxe --hosts 2)}
if [ "$lab_self" = a ]; then lab_peer=b; else lab_peer=a; fi
mkdir -p "$lab_dir/marks"
. "$(dirname "${BASH_SOURCE[0]}")/smoke.sh"

lab_mark() {
  local file=$lab_dir/marks/$lab_self.$1
  printf '%s\n' "${2:-}" >"$file.tmp" && mv -f "$file.tmp" "$file"
}

lab_gone() { [ -e "$lab_dir/$1.killed" ] || [ -e "$lab_dir/$1.died" ]; }

# Waits are bounded by the clock ($SECONDS), not by counting sleeps: on a
# loaded machine each round of a polling loop can take far longer than its
# sleep.
lab_wait() {
  local file=$lab_dir/marks/$lab_peer.$1 limit=${2:-120}
  local deadline=$((SECONDS + limit))
  while :; do
    if [ -e "$file" ]; then
      cat "$file"
      return 0
    fi
    if lab_gone "$lab_peer" || [ -e "$lab_dir/$lab_peer/status" ]; then
      echo "lab2: host $lab_peer is gone (its script ended or its VM died) before its mark '$1'" >&2
      return 1
    fi
    [ "$SECONDS" -lt "$deadline" ] || break
    sleep 0.1
  done
  echo "lab2: host $lab_peer did not leave mark '$1' within ${limit}s" >&2
  return 1
}

lab_kill() {
  local deadline=$((SECONDS + 30))
  : >"$lab_dir/kill-$1"
  while [ "$SECONDS" -lt "$deadline" ]; do
    [ -e "$lab_dir/$1.killed" ] && return 0
    sleep 0.1
  done
  echo "lab2: the machine did not kill host $1's VM within 30 s" >&2
  return 1
}

lab_serve() {
  local tag=$1 port=$2 limit=$3 out=$4
  shift 4
  timeout -k 5 "$limit" "$@" >"$out" 2>"$out.err" &
  local sp=$!
  if listening "$port" 120; then lab_mark "$tag.listening" yes; else lab_mark "$tag.listening" no; fi
  lab_status=""
  while kill -0 "$sp" 2>/dev/null; do
    if lab_wait "$tag.client" 0 >/dev/null 2>&1; then
      # SIGTERM goes to timeout, which passes it on to the server (a SIGKILL
      # would leave the server running without it).
      if ends_within_term "$sp" 30; then lab_status=$status; else lab_status=137; fi
      break
    fi
    sleep 0.2
  done
  if [ -z "$lab_status" ]; then
    wait "$sp"
    lab_status=$?
  fi
}

# ends_within_term PID SECONDS: like ends_within, but asks PID (a timeout
# process) to stop with SIGTERM first, and kills its children only if that
# does not work within 5 s.
ends_within_term() {
  ends_within_quietly "$1" "$2" && return 0
  kill -TERM "$1" 2>/dev/null
  ends_within_quietly "$1" 5 && { status=137; return 1; }
  pkill -KILL -P "$1" 2>/dev/null
  kill -KILL "$1" 2>/dev/null
  wait "$1" 2>/dev/null
  status=137
  return 1
}
ends_within_quietly() {
  local deadline=$((SECONDS + $2))
  while :; do
    kill -0 "$1" 2>/dev/null || { wait "$1"; status=$?; return 0; }
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.1
  done
}

lab_connect() {
  local tag=$1 limit=$2 out=$3
  shift 3
  if [ "$(lab_wait "$tag.listening" 180)" != yes ]; then
    : >"$out"
    echo "lab2: the server on host $lab_peer never listened ($tag)" >"$out.err"
    lab_status=125 lab_seconds=0
  else
    local t
    t=$(now)
    timeout -k 5 "$limit" "$@" >"$out" 2>"$out.err"
    lab_status=$?
    lab_seconds=$(awk -v a="$t" -v b="$(now)" 'BEGIN { printf "%.3f", b - a }')
  fi
  lab_mark "$tag.client" "$lab_status"
}

lab_jobs=()
lab_spawn() {
  local out
  out=$(mktemp)
  "$@" >"$out" 2>&1 &
  lab_jobs+=("$out")
}

lab_join() {
  wait
  local out
  for out in "${lab_jobs[@]}"; do
    cat "$out"
    failures=$((failures + $(grep -c '^FAIL' "$out")))
    rm -f "$out"
  done
  lab_jobs=()
}
