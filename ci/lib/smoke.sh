# Helpers for ci/smoke/* scripts (sourced). Each check prints one line:
# "ok   ..." or "FAIL ..."; $failures counts the failures.
failures=0
ok() { echo "ok   $*"; }
fail() { echo "FAIL $*"; failures=$((failures + 1)); }

# c_rping_teardown_race OUT: whether rdma-core's rping client (stderr in
# OUT.err) exited 255 only through its own teardown race: its disconnect
# completed ("client DISCONNECT EVENT..."), main went on to tear down, and
# the connection-manager thread, which it does not stop first, read the
# closed event channel and exited (the last line is "rdma_get_cm_event:
# Bad file descriptor"). Seen once, in a fresh clone's two-host stage,
# after every ping was validated. The caller still requires every ping.
c_rping_teardown_race() {
  grep -q '^client DISCONNECT EVENT' "$1.err" \
    && [ "$(tail -n 1 "$1.err")" = "rdma_get_cm_event: Bad file descriptor" ]
}
# show FILE: the first lines of a log, indented, without -v ping lines.
show() { sed 's/^/     | /' "$1" | grep -v 'ping data' | head -n 8; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# json_check FILE [JQ_ARGS...] FILTER: runs jq's FILTER on the JSON in FILE
# ("-" for standard input) and prints its output (raw strings). FILTER may
# use `need(CONDITION; MESSAGE)`, which passes its input on when CONDITION
# holds and stops with MESSAGE when it does not, and `hex`, which reads a
# "0x..." string as a number. Exit status non-zero when a need fails, the
# input is empty, the JSON does not parse or the filter's last output is false
# or null. jq, not python3: a python3 start took 12 s inside the emulated VM,
# jq's 0.2 s.
json_check() {
  local file=$1 filter=${!#} json
  set -- "${@:2:$# - 2}"
  json=$(cat -- "$file") || return 1
  # jq 1.6 exits 0 on empty input, even with -e.
  if [ -z "${json//[[:space:]]/}" ]; then
    echo "json_check: no JSON in ${file/#-/standard input}" >&2
    return 1
  fi
  printf '%s\n' "$json" | jq -r -e "$@" "
    def need(c; m): if c then . else error(m) end;
    def hex: ltrimstr(\"0x\") | ascii_downcase | explode
      | reduce .[] as \$c (0; . * 16 + (if \$c >= 97 then \$c - 87 else \$c - 48 end));
    $filter"
}

# perf_report_check FILE ITERATIONS: checks an rdma-perf client's JSON report
# of the default run (all four tests at 64 B, 4 KiB and 64 KiB): 12 results,
# bandwidth runs of ITERATIONS messages at a positive rate, latency figures
# in order (min <= median <= max, min <= p99 <= max), both sides' regions
# planned, an rxe device. Prints one line of figures; shared by ci/smoke/40
# (one host) and ci/smoke2/40 (across the wire).
perf_report_check() {
  json_check "$1" --argjson iterations "$2" '
    .results as $res
    | def one(t; b): [$res[] | select(.test == t and .bytes == b)][0];
    need(($res | length) == 12; "\($res | length) results, not 12")
    | need(all($res[] | select(.test | endswith("bw"));
               .mibPerSecond > 0 and .iterations == $iterations); "a bandwidth result: \($res)")
    | need(all($res[] | select(.test | endswith("lat")) | .latency;
               0 < .min and .min <= .typical and .typical <= .max and .min <= .p99 and .p99 <= .max);
           "a latency result out of order: \($res)")
    | need(all(.clientRegion, .serverRegion; .planned and .hcaPageSize >= 4096 and .blocks >= 1);
           "a region was not planned: \(.clientRegion), \(.serverRegion)")
    | need(.device | startswith("rxe"); "device \(.device)")
    | "12 results; write-bw 64K \(one("write-bw"; 65536).mibPerSecond * 10 | floor / 10) MiB/s; write-lat 64 B \(one("write-lat"; 64).latency.typical * 10 | floor / 10) us; server plan: HCA page \(.serverRegion.hcaPageSize), \(.serverRegion.blocks) blocks"'
}

# ends_within PID SECONDS: waits up to SECONDS for the background process
# PID to exit. Sets $status (its exit status) and $took (seconds waited) and
# returns 0; if it is still running then, kills it and returns 1.
ends_within() {
  local pid=$1 limit=$2 t
  t=$(now)
  wait_for "$limit" eval "! kill -0 $pid 2>/dev/null" || true
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
  if wait_for "$limit" eval "rdma resource show cm_id 2>/dev/null | grep -Eq 'state LISTEN .*:${port}( |\$)'"; then
    return 0
  fi
  echo "note: nothing listened on port $port within $(since "$t")s" >&2
  return 1
}

# owned KIND PID [STATE]: how many KIND objects (qp, cq, mr, pd, cm_id) the
# kernel's resource tracker lists for the live process PID, optionally only
# those in STATE (RTS, LISTEN, ...). The tracker records the id of the thread
# that created each object, so every thread of PID counts, not just PID
# itself (a -P server makes each client's QP on its own thread); a user entry
# whose creating thread has exited has no pid at all and counts too (in the
# lab nothing else runs beside a smoke script). Prints -1 when the tracker
# cannot be read.
owned() {
  local kind=$1 pid=$2 state=${3:-} out
  out=$(rdma resource show "$kind" 2>/dev/null) || { echo -1; return; }
  # awk, not python: under emulation a python start costs seconds per check.
  printf '%s\n' "$out" | awk -v tids=" $(ls /proc/"$pid"/task 2>/dev/null | tr '\n' ' ')" -v state="$state" '
    NF == 0 { next }
    state != "" && $0 !~ (" state " state " ") { next }
    {
      for (i = 1; i < NF; i++) if ($i == "pid") { if (index(tids, " " $(i + 1) " ")) n++; next }
      # No pid: a kernel entry ("comm [ib_core]") or a user entry whose
      # creating thread has exited, which counts.
      if ($0 !~ / comm \[/) n++
    }
    END { print n + 0 }'
}

# wait_for SECONDS CMD...: runs CMD every 0.1 s until it succeeds, for up to
# SECONDS of wall time (by the clock: a starved VM can take seconds per
# check, so counting iterations would overrun). Returns 1 if it never did.
wait_for() {
  local limit=$1 deadline
  shift
  deadline=$(($(date +%s%3N) + limit * 1000))
  while :; do
    if "$@"; then return 0; fi
    [ "$(date +%s%3N)" -lt "$deadline" ] || return 1
    sleep 0.1
  done
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
