#!/usr/bin/env bash
# The whole test suite: installs what is missing, checks lint and formatting, builds, and runs every
# test (unit tests and the real-QEMU system tests) with node's test runner.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
npm run --silent lint
npm test
