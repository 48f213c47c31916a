#!/usr/bin/env bash
# `npm test`: set-up (quick when done), type check, then every test file with node's test runner.
# Extra arguments narrow the run to files or folders: `npm test -- test/model test/training`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
npx tsc --noEmit -p .
paths=("$@")
[ ${#paths[@]} -gt 0 ] || paths=(test)
mapfile -t files < <(find "${paths[@]}" -name '*.test.ts' -not -path '*/fixtures/*' | sort)
if [ ${#files[@]} -eq 0 ]; then
  echo "no test files under: ${paths[*]}" >&2
  exit 1
fi
# One file at a time: each test process uses every core through libtorch.
exec node --import tsx --test --test-concurrency=1 "${files[@]}"
