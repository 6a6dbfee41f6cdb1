#!/usr/bin/env bash
# The whole test suite: installs what is missing, checks lint and formatting, builds, and runs every
# test (unit tests and the real-QEMU system tests) with node's test runner. The database tests run on
# SQLite and on PostgreSQL: scripts/test-postgres.sh starts the local PostgreSQL and makes the test role,
# and RAMPART_TEST_POSTGRES_URL points the tests at it (set it yourself to use another server). As root
# (CI) a PostgreSQL that cannot be started fails the run; otherwise its tests skip, saying why.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [[ -z "${RAMPART_TEST_POSTGRES_URL:-}" ]]; then
  if [[ $(id -u) -eq 0 ]]; then
    RAMPART_TEST_POSTGRES_URL=$(bash scripts/test-postgres.sh)
    export RAMPART_TEST_POSTGRES_URL
  else
    echo "test: not root, so PostgreSQL is not started: its tests skip (set RAMPART_TEST_POSTGRES_URL)" >&2
  fi
fi
npm run --silent lint
npm test
