#!/usr/bin/env bash
# The PostgreSQL of the database tests (RAMPART_TEST_POSTGRES_URL): starts Debian's local cluster if it is
# not running (pg_ctlcluster, without systemd; `service` otherwise; creates the cluster if there is none),
# creates the test role (CREATEDB: each test file makes and drops databases of its own) and its database,
# idempotently and quietly, and prints the URL on stdout. Needs root (runs psql as the postgres user).
set -euo pipefail

ROLE=rampart_test
DATABASE=rampart_test
# Another port (RAMPART_TEST_POSTGRES_PORT) gets a cluster of its own, named after it, when none listens there.
PORT=${RAMPART_TEST_POSTGRES_PORT:-5432}

# Only the URL goes to stdout (the caller captures it): everything the PostgreSQL tools print on stdout
# (pg_ctlcluster's "Removed stale pid file.", systemd warnings) goes to stderr. The captured stdout is kept
# as fd 3, and every command that may start the server runs with fd 3 closed: a postmaster that inherited
# it would hold the caller's $(...) open for as long as it runs (a CI run waited 90 min on it).
exec 3>&1 1>&2

if [[ $(id -u) -ne 0 ]]; then
  echo "test-postgres: needs root to start PostgreSQL and create the test role" >&2
  exit 1
fi
if ! command -v pg_lsclusters >/dev/null; then
  echo "test-postgres: PostgreSQL is not installed (scripts/setup.sh installs it)" >&2
  exit 1
fi

as_postgres() { (cd / && runuser -u postgres -- "$@"); }

if ! pg_isready -q -h 127.0.0.1 -p "$PORT"; then
  cluster=$(pg_lsclusters --no-header | awk -v port="$PORT" '$3 == port { print $1, $2; exit }')
  if [[ -z "$cluster" ]]; then
    version=$(find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' | sort -V | tail -n 1)
    name=main
    [[ $PORT == 5432 ]] || name="rampart-$PORT"
    pg_createcluster --port "$PORT" "$version" "$name" >/dev/null 3>&-
    cluster="$version $name"
  fi
  # shellcheck disable=SC2086 # "<version> <name>"
  if ! pg_ctlcluster $cluster start 2>/dev/null 3>&-; then
    service postgresql start >/dev/null 2>&1 3>&- || true
  fi
  for _ in $(seq 1 60); do
    pg_isready -q -h 127.0.0.1 -p "$PORT" && break
    sleep 0.5
  done
  if ! pg_isready -q -h 127.0.0.1 -p "$PORT"; then
    echo "test-postgres: PostgreSQL did not start on port $PORT" >&2
    exit 1
  fi
fi

as_postgres psql -qAtX -v ON_ERROR_STOP=1 -p "$PORT" >/dev/null <<SQL
SELECT 'CREATE ROLE $ROLE LOGIN CREATEDB PASSWORD ''$ROLE'''
  WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$ROLE')\gexec
SELECT 'CREATE DATABASE $DATABASE OWNER $ROLE'
  WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$DATABASE')\gexec
-- DROP DATABASE ... WITH (FORCE) of a test database must also end an autovacuum worker busy in it
-- (a backend of no role the test role belongs to): without this it fails on a loaded machine.
SELECT 'GRANT pg_signal_backend TO $ROLE'
  WHERE NOT pg_has_role('$ROLE', 'pg_signal_backend', 'MEMBER')\gexec
SQL

echo "postgres://$ROLE:$ROLE@127.0.0.1:$PORT/$DATABASE" >&3
