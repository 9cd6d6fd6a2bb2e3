#!/usr/bin/env bash
# A local PostgreSQL server for the sweep tests (tests/training/test_sweep_storage.py): Debian's postgresql package,
# a cluster of its own ("c2c", port 5433, so a server already on 5432 is left alone) listening on 127.0.0.1
# only, and a test role that may create databases (each test makes its own and drops it). Idempotent: does
# nothing if the test URL already answers.
#   sudo bash scripts/postgres_local.sh
# The tests connect to $C2C_TEST_POSTGRES_URL, by default the URL below (a throw-away password on loopback).
# Exit status 0: the server is up; 3: it cannot be set up here (not root, or the packages not installable).
set -euo pipefail

port=5433
role=c2c_test
password=c2c_test
database=c2c_test
cluster=c2c
url="postgresql://${role}:${password}@127.0.0.1:${port}/${database}"
shown="postgresql://${role}:***@127.0.0.1:${port}/${database}"

answers() { PGPASSWORD=$password PGCONNECT_TIMEOUT=3 psql -qtA -h 127.0.0.1 -p "$port" -U "$role" -d "$database" \
              -c "select 1" >/dev/null 2>&1; }

if command -v psql >/dev/null && answers; then
  echo "postgres: already running at $shown"; exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "postgres: needs root to install and start the server" >&2; exit 3
fi
if ! command -v pg_createcluster >/dev/null || ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  (apt-get update -qq && apt-get install -y -qq --no-install-recommends postgresql postgresql-client) \
    >/tmp/postgres-apt.log 2>&1 || { echo "postgres: apt-get install failed (see /tmp/postgres-apt.log)" >&2; exit 3; }
fi
version=$(ls /usr/lib/postgresql | sort -V | tail -n 1)

if ! pg_lsclusters -h | awk '{print $1 "/" $2}' | grep -qx "${version}/${cluster}"; then
  pg_createcluster "$version" "$cluster" --port "$port" -- --auth-local=peer --auth-host=scram-sha-256 >/dev/null
fi
conf=/etc/postgresql/${version}/${cluster}/postgresql.conf
sed -i "s/^#\?listen_addresses = .*/listen_addresses = '127.0.0.1'/" "$conf"
# Sweeps keep a pool per worker; a few concurrent workers and test databases fit well within 100.
pg_ctlcluster "$version" "$cluster" start 2>/dev/null || pg_ctlcluster "$version" "$cluster" status >/dev/null

as_postgres() { runuser -u postgres -- psql -qtA -p "$port" "$@"; }
for _ in $(seq 30); do as_postgres -c "select 1" >/dev/null 2>&1 && break; sleep 1; done
if [ "$(as_postgres -c "select 1 from pg_roles where rolname = '$role'")" != 1 ]; then
  as_postgres -c "create role $role login createdb password '$password'"
fi
if [ "$(as_postgres -c "select 1 from pg_database where datname = '$database'")" != 1 ]; then
  as_postgres -c "create database $database owner $role"
fi

if answers; then
  echo "postgres: up at $shown (cluster $version/$cluster; the tests read C2C_TEST_POSTGRES_URL, default $shown)"
  exit 0
fi
echo "postgres: the server started but $shown does not answer:" >&2
tail -5 "/var/log/postgresql/postgresql-${version}-${cluster}.log" >&2 || true
exit 3
