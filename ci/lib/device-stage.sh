#!/usr/bin/env bash
# Usage: ci/rxe ci/lib/device-stage.sh
#
# The device part of ci/test, run once where an rxe device exists (usually one
# VM boot): the test bundle's OnDevice suites, then every executable script in
# ci/smoke/ in name order. Writes its results for ci/test to $UMEM_CI_RESULTS
# (default $UMEM_OUT/ci-test):
#   guest-start       "EPOCH UPTIME" when this script started
#   kernel            the running kernel's release (uname -r)
#   device.log        Swift Testing output;  device.xml  its xUnit report
#   device.status     the bundle's exit status;  device.seconds
#   smoke.log         all smoke output;  smoke.results  "NAME STATUS SECONDS" lines
# Environment: UMEM_SCRATCH (build folder, default .build),
# UMEM_DEVICE_TEST_TIMEOUT (default 900 s), UMEM_SMOKE_TIMEOUT (default 600 s
# per script), UMEM_DEVICE_SMOKE (default 1; 0 runs the device tests only and
# leaves smoke.results empty), UMEM_SMOKE_ONLY (script names, e.g.
# "30-rping.sh 31-rping-faults.sh": run just these) and UMEM_SMOKE_SKIP
# (script names to leave out), UMEM_CI_RESULTS (the results folder; give each
# kernel its own, e.g. $UMEM_OUT/ci-test/kernel-7, to keep runs apart).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.." || exit 125
res=${UMEM_CI_RESULTS:-${UMEM_OUT:-ci/out}/ci-test}
mkdir -p "$res"
echo "$(date +%s.%N) $(cut -d' ' -f1 /proc/uptime 2>/dev/null || echo 0)" >"$res/guest-start"
uname -r >"$res/kernel"

scratch=${UMEM_SCRATCH:-.build}
bundle=$(ls -d "$scratch"/debug/*PackageTests.xctest 2>/dev/null | head -n 1)

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# The kernel oracle (ci/oracle, built on the host by ci/oracle/build for
# this kernel): KernelOracleOnDevice asks it through /dev/umem_oracle.
oracle=${UMEM_OUT:-ci/out}/oracle/$(uname -r)/umem_oracle.ko
if [ -f "$oracle" ]; then
  if insmod "$oracle" 2>"$res/oracle-insmod.log" || grep -q "File exists" "$res/oracle-insmod.log"; then
    echo "==> kernel oracle: loaded $oracle"
  else
    echo "==> kernel oracle: insmod $oracle failed: $(cat "$res/oracle-insmod.log")"
  fi
else
  echo "==> kernel oracle: $oracle not built (run ci/oracle/build on the host)"
fi

# One test at a time: device suites in different modules would otherwise run
# side by side, and their leak checks count process-wide pins, MRs and PDs.
echo "==> device tests: ${bundle:-<no test bundle>} --filter OnDevice --no-parallel (UMEM_REQUIRE_DEVICE=${UMEM_REQUIRE_DEVICE:-})"
t=$(now)
if [ -n "$bundle" ] && [ -x "$bundle" ]; then
  timeout -k 20 "${UMEM_DEVICE_TEST_TIMEOUT:-900}" \
    "$bundle" --testing-library swift-testing --filter OnDevice --no-parallel \
    --xunit-output "$res/device.xml" 2>&1 | tee "$res/device.log"
  echo "${PIPESTATUS[0]}" >"$res/device.status"
else
  echo "device-stage: no test bundle under $scratch/debug (build first)" | tee "$res/device.log"
  echo 127 >"$res/device.status"
fi
elapsed "$t" >"$res/device.seconds"

: >"$res/smoke.results"
: >"$res/smoke.log"
if [ "${UMEM_DEVICE_SMOKE:-1}" = 0 ]; then
  echo "==> smoke tests: not run (UMEM_DEVICE_SMOKE=0)" | tee -a "$res/smoke.log"
  sync
  exit 0
fi
echo "==> smoke tests: ci/smoke/*"
export UMEM_SCRATCH=$scratch UMEM_BIN=$scratch/debug
for script in ci/smoke/*; do
  [ -f "$script" ] || continue
  name=$(basename "$script")
  if [ -n "${UMEM_SMOKE_ONLY:-}" ] && [[ " $UMEM_SMOKE_ONLY " != *" $name "* ]]; then continue; fi
  if [[ " ${UMEM_SMOKE_SKIP:-} " == *" $name "* ]]; then continue; fi
  if [ ! -x "$script" ]; then
    # A smoke test that cannot run is a failure, not a silent skip.
    echo "<-- smoke $name FAILED: not executable (chmod +x $script)" | tee -a "$res/smoke.log"
    echo "$name 126 0" >>"$res/smoke.results"
    continue
  fi
  echo "--> smoke $name" | tee -a "$res/smoke.log"
  t=$(now)
  timeout -k 20 "${UMEM_SMOKE_TIMEOUT:-600}" "$script" 2>&1 | tee -a "$res/smoke.log"
  status=${PIPESTATUS[0]}
  secs=$(elapsed "$t")
  if [ "$status" -eq 0 ]; then word=passed; else word="FAILED (exit $status)"; fi
  echo "<-- smoke $name $word after ${secs}s" | tee -a "$res/smoke.log"
  echo "$name $status $secs" >>"$res/smoke.results"
done
sync
exit 0
