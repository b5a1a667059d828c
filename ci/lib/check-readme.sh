#!/usr/bin/env bash
# Usage: ci/lib/check-readme.sh
# Fails unless README.md's API tour (its first ```swift block) is exactly the
# code between the README-BEGIN and README-END markers of
# Tests/VerbsTests/ReadmeExample.swift, which the test suite compiles and runs.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
readme=$(awk '/^```swift$/ {on=1; next} on && /^```$/ {exit} on' README.md)
source=$(awk '/\/\/ README-END/ {on=0} on; /\/\/ README-BEGIN/ {on=1}' Tests/VerbsTests/ReadmeExample.swift)
if [ "$readme" != "$source" ]; then
  echo "README.md's swift example differs from Tests/VerbsTests/ReadmeExample.swift:" >&2
  diff <(printf '%s\n' "$source") <(printf '%s\n' "$readme") >&2 || true
  exit 1
fi
echo "README example matches Tests/VerbsTests/ReadmeExample.swift"
