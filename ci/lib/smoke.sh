# Helpers for ci/smoke/* scripts (sourced). Each check prints one line:
# "ok   ..." or "FAIL ..."; $failures counts the failures.
failures=0
ok() { echo "ok   $*"; }
fail() { echo "FAIL $*"; failures=$((failures + 1)); }
# show FILE: the first lines of a log, indented, without -v ping lines.
show() { sed 's/^/     | /' "$1" | grep -v 'ping data' | head -n 8; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# ends_within PID SECONDS: waits up to SECONDS for the background process
# PID to exit. Sets $status (its exit status) and $took (seconds waited) and
# returns 0; if it is still running then, kills it and returns 1.
ends_within() {
  local pid=$1 limit=$2 t
  t=$(now)
  for _ in $(seq $((limit * 10))); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  took=$(since "$t")
  if kill -0 "$pid" 2>/dev/null; then
    kill -9 "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    status=137
    return 1
  fi
  wait "$pid"
  status=$?
  return 0
}

# listening PORT [SECONDS]: waits until an rdma_cm listener on PORT shows in
# the kernel's resource tracker (rdma resource show cm_id, state LISTEN), up
# to SECONDS (default 60), instead of sleeping a fixed time: under emulation a
# server can take 20x longer to start on a busy machine. Returns 1 (and says
# so) if it never appears.
listening() {
  local port=$1 limit=${2:-60} t
  t=$(now)
  for _ in $(seq $((limit * 10))); do
    if rdma resource show cm_id 2>/dev/null | grep -Eq "state LISTEN .*:${port}( |$)"; then
      return 0
    fi
    sleep 0.1
  done
  echo "note: nothing listened on port $port within ${limit}s" >&2
  return 1
}

# owned KIND PID [STATE]: how many KIND objects (qp, cq, mr, pd, cm_id) the
# kernel's resource tracker lists for the live process PID, optionally only
# those in STATE (RTS, LISTEN, ...). The tracker records the id of the thread
# that created each object, so every thread of PID counts, not just PID
# itself (a -P server makes each client's QP on its own thread). Prints -1
# when the tracker cannot be read.
owned() {
  local kind=$1 pid=$2 state=${3:-}
  local tids
  tids=$(ls /proc/"$pid"/task 2>/dev/null | tr '\n' ' ')
  rdma -j resource show "$kind" 2>/dev/null | python3 -c '
import json, sys
tids = {int(t) for t in sys.argv[1].split()}
state = sys.argv[2]
try:
    rows = json.load(sys.stdin)
except ValueError:
    print(-1); sys.exit()
print(sum(1 for r in rows if r.get("pid") in tids and (not state or r.get("state") == state)))
' "$tids" "$state" || echo -1
}

# wait_for SECONDS CMD...: runs CMD every 0.1 s until it succeeds, for up to
# SECONDS. Returns 1 if it never did.
wait_for() {
  local limit=$1
  shift
  for _ in $(seq $((limit * 10))); do
    if "$@"; then return 0; fi
    sleep 0.1
  done
  return 1
}

# has_connected_qp PID: the process holds at least one QP in state RTS (a
# connection that moves data).
has_connected_qp() { [ "$(owned qp "$1" RTS)" -ge 1 ]; }

# lines_at_least FILE PATTERN N: FILE has at least N lines matching PATTERN.
lines_at_least() {
  local n
  n=$(grep -c -- "$2" "$1" 2>/dev/null)
  [ "${n:-0}" -ge "$3" ]
}
