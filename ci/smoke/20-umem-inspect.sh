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
bin=${UMEM_BIN:-${UMEM_SCRATCH:-.build}/debug}
out=${UMEM_OUT:-/tmp}

for backing in plain thp; do
  echo "+ umem inspect --size 8M --backing $backing --register --json"
  "$bin/umem" inspect --size 8M --backing "$backing" --register --json > "$out/inspect-$backing.json"
  python3 - "$out/inspect-$backing.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
phyrs = r["phyrs"]
assert r["physicalAddressesAvailable"] is True, r.get("unavailableReason")
assert phyrs and all(len(p) == 2 for p in phyrs), "no phyr list"
assert sum(int(l, 16) for _, l in phyrs) == int(r["length"], 16), "phyr lengths do not add up"
for key in ("pageSize", "blockCount", "iova", "dmaOffset", "firstBlock", "lastBlock", "pageSizes"):
    assert r.get(key) is not None, key
reg = r["register"]
assert reg["iova"] == r["iova"] and reg["lkey"] and reg["rkey"], reg
print(f"  {len(phyrs)} runs, largest {r['largestRun']}, page size {r['pageSize']}, "
      f"{r['blockCount']} blocks, table {r['tableBytes']} B vs {r['tableBytes4K']} B at 4K, "
      f"THP {r['obtained']['transparentHugeBytes'] >> 20} MiB, "
      f"register {reg['registerNanoseconds'] / 1e6:.2f} ms, plan +{reg['planOverheadPercent']:.1f}%")
PY
  echo "+ umem plan --iova auto --phyrs-file - --json < inspect-$backing.json"
  "$bin/umem" plan --iova auto --phyrs-file - --json <"$out/inspect-$backing.json" >"$out/plan-$backing.json"
  python3 - "$out/inspect-$backing.json" "$out/plan-$backing.json" <<'PY'
import json, sys
inspect, plan = (json.load(open(p)) for p in sys.argv[1:3])
keys = ("pageSize", "blockCount", "firstBlock", "lastBlock", "iova", "dmaOffset",
        "rules", "runningKernel", "maxSegmentSize")
assert all(inspect[k] == plan[k] for k in keys), (inspect, plan)
print(f"  umem plan from the phyrs file: the same page size, blocks and iova, "
      f"rules {plan['rules']} (running kernel {plan['runningKernel']})")
PY
done
