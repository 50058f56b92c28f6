#!/usr/bin/env bash
# README's test command: set-up, type-check, lint, then every test. Ends with one plain
# "tests: N passed, N failed" line read by CI.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/install-etcd.sh
bash scripts/install-test-tools.sh
source scripts/setup.sh

echo "dvs: type-checking" >&2
npx tsc -p tsconfig.json --noEmit
echo "dvs: linting" >&2
npx eslint .

mkdir -p .tmp
report=.tmp/vitest-report.json
rm -f "$report"
status=0
npx vitest run --reporter=default --reporter=json --outputFile.json="$report" "$@" || status=$?
node scripts/summarize-tests.mjs "$report" || status=1
exit "$status"
