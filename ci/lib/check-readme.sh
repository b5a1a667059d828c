#!/usr/bin/env bash
# Usage: ci/lib/check-readme.sh
# Fails unless each of README.md's API tours (its ```swift blocks, in order)
# is exactly the code between the README-BEGIN and README-END markers of the
# test file that compiles and runs it:
#   1st block: Tests/VerbsTests/ReadmeExample.swift   (the scoped tier)
#   2nd block: Tests/OwnedTierTests/ReadmeOwnedTour.swift (the owned tier)
#   3rd block: Tests/RegistrationCacheTests/ReadmeCacheTour.swift (the cache)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
sources=(Tests/VerbsTests/ReadmeExample.swift Tests/OwnedTierTests/ReadmeOwnedTour.swift
  Tests/RegistrationCacheTests/ReadmeCacheTour.swift)
status=0
for i in "${!sources[@]}"; do
  file=${sources[$i]}
  readme=$(awk -v want=$((i + 1)) '/^```swift$/ {n++; on = (n == want); next} on && /^```$/ {exit} on' README.md)
  source=$(awk '/\/\/ README-END/ {on=0} on; /\/\/ README-BEGIN/ {on=1}' "$file")
  if [ -z "$readme" ] || [ "$readme" != "$source" ]; then
    echo "README.md's swift block $((i + 1)) differs from $file:" >&2
    diff <(printf '%s\n' "$source") <(printf '%s\n' "$readme") >&2 || true
    status=1
  else
    echo "README block $((i + 1)) matches $file"
  fi
done
exit $status
