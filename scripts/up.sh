#!/usr/bin/env bash
# Quick start: installs what is missing, then runs the all-in-one Rampart server (with its local
# agent) in the foreground. Prints the URL and, on first start, the admin token.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec node dist/src/cli/main.js server "$@"
