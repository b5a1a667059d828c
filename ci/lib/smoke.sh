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
