#!/usr/bin/env bash
# README's demo command: set-up, then the demo.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/setup.sh
exec node dist/src/cli/main.js demo "$@"
