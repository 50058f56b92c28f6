#!/usr/bin/env bash
# `npm run bench -- <suite> [--json]`: set-up, then the benchmark runner.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/setup.sh >&2
exec node --expose-gc dist/bench/run.js "$@"
