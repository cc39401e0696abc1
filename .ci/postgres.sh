#!/usr/bin/env bash
# Start the local PostgreSQL 15 server (installing it if missing) and create the test database.
# Idempotent: safe to run when the server already runs and the database exists.
set -euo pipefail
SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
as_postgres() { if [ "$(id -u)" = "0" ]; then runuser -u postgres -- "$@"; else sudo -u postgres "$@"; fi; }
if ! command -v pg_ctlcluster >/dev/null 2>&1 || [ ! -d /usr/lib/postgresql ]; then
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq postgresql
fi
VERSION=$(ls /usr/lib/postgresql | sort -n | tail -1)
if ! pg_lsclusters -h | awk '{print $1" "$2}' | grep -q "^$VERSION main$"; then
  $SUDO pg_createcluster "$VERSION" main
fi
if ! pg_lsclusters -h | grep -q "^$VERSION *main .*online"; then
  $SUDO pg_ctlcluster --skip-systemctl-redirect "$VERSION" main start
fi
for _ in $(seq 1 30); do
  if as_postgres psql -qtAc "select 1" >/dev/null 2>&1; then break; fi
  sleep 1
done
as_postgres psql -qtAc "ALTER USER postgres PASSWORD 'hwnas'" >/dev/null
if ! as_postgres psql -qtAc "SELECT 1 FROM pg_database WHERE datname='hwnas_test'" | grep -q 1; then
  as_postgres createdb hwnas_test
fi
echo "postgres: ready (database hwnas_test)"
