#!/usr/bin/env bash
# Usage: ci/rxe ci/smoke/20-umem-inspect.sh   (ci/test runs every ci/smoke/* in order)
#
# Smoke test of `umem inspect` on a real rxe device: pin, resolve, plan and
# register an 8 MiB buffer of plain pages and one of THP, as JSON. Passes when
# both exit 0 and each JSON object carries a non-empty phyr list whose lengths
# add up to the buffer, plus the plan and the registration's keys, and when
# `umem plan --phyrs-file` given that JSON (through standard input) plans it
# the same way, under the same kernel rule set.
set -euo pipefail
. "$(dirname "$0")/../lib/smoke.sh"
bin=${UMEM_BIN:-${UMEM_SCRATCH:-.build}/debug}
out=${UMEM_OUT:-/tmp}

for backing in plain thp; do
  echo "+ umem inspect --size 8M --backing $backing --register --json"
  "$bin/umem" inspect --size 8M --backing "$backing" --register --json > "$out/inspect-$backing.json"
  json_check "$out/inspect-$backing.json" '
    .register as $reg
    | need(.physicalAddressesAvailable == true; "no physical addresses: \(.unavailableReason)")
    | need((.phyrs | length) > 0 and all(.phyrs[]; length == 2); "no phyr list")
    | need(([.phyrs[][1] | hex] | add) == (.length | hex); "phyr lengths do not add up")
    | . as $r
    | need(all("pageSize", "blockCount", "iova", "dmaOffset", "firstBlock", "lastBlock", "pageSizes";
               $r[.] != null); "a plan field is missing")
    | need($reg.iova == .iova and ($reg.lkey | length) > 0 and ($reg.rkey | length) > 0; "register: \($reg)")
    | "  \(.phyrs | length) runs, largest \(.largestRun), page size \(.pageSize), \(.blockCount) blocks, table \(.tableBytes) B vs \(.tableBytes4K) B at 4K, THP \(.obtained.transparentHugeBytes / 1048576 | floor) MiB, register \($reg.registerNanoseconds / 10000 | floor / 100) ms, plan +\($reg.planOverheadPercent * 10 | floor / 10)%"'
  echo "+ umem plan --iova auto --phyrs-file - --json < inspect-$backing.json"
  "$bin/umem" plan --iova auto --phyrs-file - --json <"$out/inspect-$backing.json" >"$out/plan-$backing.json"
  json_check "$out/plan-$backing.json" --slurpfile inspect "$out/inspect-$backing.json" '
    ["pageSize", "blockCount", "firstBlock", "lastBlock", "iova", "dmaOffset",
     "rules", "runningKernel", "maxSegmentSize"] as $keys
    | . as $plan | $inspect[0] as $i
    | need(all($keys[]; $i[.] == $plan[.]); "plan and inspect differ: \([$keys[] | select($i[.] != $plan[.]) | {key: ., inspect: $i[.], plan: $plan[.]}])")
    | "  umem plan from the phyrs file: the same page size, blocks and iova, rules \(.rules) (running kernel \(.runningKernel))"'
done
