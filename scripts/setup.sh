#!/usr/bin/env bash
# Shared set-up for README's commands: installs npm dependencies when they are missing or stale
# and builds the TypeScript sources. Sourced by test.sh, demo.sh and bench.sh.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

stamp=node_modules/.dvs-installed
if [ ! -f "$stamp" ] || [ package-lock.json -nt "$stamp" ] || [ package.json -nt "$stamp" ]; then
  echo "dvs: installing npm dependencies" >&2
  npm ci --no-audit --no-fund >&2
  touch "$stamp"
fi

echo "dvs: building" >&2
npx tsc -p tsconfig.build.json
