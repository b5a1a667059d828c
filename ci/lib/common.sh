# ci/lib/common.sh: shared helpers for the ci/ scripts. Source it; do not run it.
#
#   . "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
#
# Sets UMEM_REPO (the repository root) and puts the tools the scripts need on
# PATH: the Swift toolchain (if it lives in /opt/swift and is not on PATH yet)
# and virtme-ng's `vng` (pip may put it in pyenv shims or ~/.local/bin).

UMEM_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

umem_log() { printf '%s\n' "ci: $*" >&2; }
umem_die() { printf '%s\n' "ci: error: $*" >&2; exit "${UMEM_DIE_STATUS:-2}"; }

umem_path_prepend() {
  # Adds a directory to the front of PATH once, if it exists.
  [ -d "$1" ] || return 0
  case ":$PATH:" in *":$1:"*) ;; *) PATH="$1:$PATH" ;; esac
}

umem_fix_path() {
  if ! command -v vng >/dev/null 2>&1; then
    umem_path_prepend "$HOME/.local/bin"
    umem_path_prepend "${PYENV_ROOT:-$HOME/.pyenv}/shims"
  fi
  if ! command -v swift >/dev/null 2>&1; then
    umem_path_prepend /opt/swift/usr/bin
  fi
  export PATH
}

# Runs a command as root: directly when we are root, else through sudo -n.
umem_as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo -n "$@"; fi
}

# umem_count_tests LOGFILE: reads Swift Testing console output and prints
# "PASSED FAILED SKIPPED TOTAL" where TOTAL is N from the final
# "Test run with N tests ..." line, or -1 when that line is missing (the
# bundle crashed or was killed). Lines it counts (after removing ANSI colour
# codes and carriage returns; the leading glyph is ignored):
#   <glyph> Test NAME passed after S seconds[ with ...].   -> passed
#   <glyph> Test NAME failed after S seconds with N issues. -> failed
#   <glyph> Test NAME skipped[: "reason"].                  -> skipped
#   <glyph> Test NAME was cancelled after S seconds[...]    -> skipped
# Suite lines and "Test run with ..." are not tests and are not counted.
umem_count_tests() {
  sed -e 's/\x1b\[[0-9;]*m//g' -e 's/\r$//' -- "$1" | awk '
    BEGIN { p = 0; f = 0; s = 0; total = -1 }
    / Test run with [0-9]+ tests? / {
      for (i = 1; i <= NF; i++) if ($i == "with") { total = $(i + 1); break }
      next
    }
    / recorded an? (issue|known issue|warning)/ { next }
    /^[^ ]+ Test .* passed after [0-9.]+ seconds/   { p++; next }
    /^[^ ]+ Test .* failed after [0-9.]+ seconds/   { f++; next }
    /^[^ ]+ Test .* was cancelled after /           { s++; next }
    /^[^ ]+ Test .* skipped(\.|:)/                  { s++; next }
    END { print p, f, s, total }
  '
}

# umem_count_results XUNIT LOGFILE: "PASSED FAILED SKIPPED TOTAL" from the
# xUnit report the test bundle wrote, one per testcase element: a failure or
# error child is failed, a skipped child skipped, anything else passed, except
# that a test the console says "was cancelled" (Test.cancel, which Swift
# Testing's xUnit writer records like a pass) counts as skipped. TOTAL is the
# number of testcases. When the report is missing or unreadable (the bundle
# crashed or was killed before writing it), falls back to umem_count_tests on
# the console log, whose TOTAL is -1 when the run did not finish.
umem_count_results() {
  local xml=$1 log=$2 counts
  if [ -s "$xml" ] && counts=$(python3 - "$xml" "$log" 2>/dev/null <<'PY'
import re, sys
import xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
cases = list(root.iter("testcase"))
if root.tag not in ("testsuites", "testsuite"):
    sys.exit(1)
cancelled = set()
try:
    text = open(sys.argv[2], errors="replace").read()
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)
    cancelled = set(re.findall(r"^\S+ Test (.+?) was cancelled after ", text, re.M))
except OSError:
    pass
passed = failed = skipped = 0
for case in cases:
    tags = {child.tag for child in case}
    if tags & {"failure", "error"}:
        failed += 1
    elif "skipped" in tags or case.get("name") in cancelled:
        skipped += 1
    else:
        passed += 1
print(passed, failed, skipped, len(cases))
PY
  ); then
    echo "$counts"
  else
    umem_count_tests "$log"
  fi
}

# umem_expected_minimum STAGE: the fewest tests STAGE may run (ci/expected-counts);
# 1 when the file does not name it.
umem_expected_minimum() {
  local n
  n=$(awk -v s="$1" '$1 == s { print $2 }' "$UMEM_REPO/ci/expected-counts" 2>/dev/null)
  echo "${n:-1}"
}

# umem_count_problem STAGE P F S TOTAL LOG: a reason not to trust STAGE's
# counts, or nothing. Two records of one run must agree: the xUnit report's
# test count (TOTAL; -1 when there is none) with the console's "Test run with
# N tests" and with the number of results the console lists. And the stage
# must have run at least its expected minimum, so a runner that silently
# drops tests (a filter, a suite that no longer registers) cannot pass.
umem_count_problem() {
  local stage=$1 p=$2 f=$3 s=$4 total=$5 log=$6 min cp cf cs ctotal
  min=$(umem_expected_minimum "$stage")
  read -r cp cf cs ctotal < <(umem_count_tests "$log")
  if [ "$total" -ge 0 ] && [ "$ctotal" -ge 0 ] && [ "$ctotal" -ne "$total" ]; then
    echo "the xUnit report lists $total tests, the console's summary $ctotal"
  elif [ "$total" -ge 0 ] && [ $((cp + cf + cs)) -ne "$total" ]; then
    echo "the xUnit report lists $total tests, the console shows $((cp + cf + cs)) results"
  elif [ $((p + f + s)) -lt "$min" ]; then
    echo "$((p + f + s)) tests ran, fewer than the expected minimum of $min (ci/expected-counts)"
  fi
}

umem_fix_path
