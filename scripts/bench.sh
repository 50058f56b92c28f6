#!/usr/bin/env bash
# `npm run bench -- <suite> [--json]`: set-up, then the benchmark runner.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/setup.sh >&2
# The web suite loads NWEB with Debian's wrk.
if ! command -v wrk >/dev/null 2>&1; then
  echo "dvs: installing wrk" >&2
  (apt-get install -y wrk >&2 || (apt-get update >&2 && apt-get install -y wrk >&2))
fi
exec node --expose-gc dist/bench/run.js "$@"
