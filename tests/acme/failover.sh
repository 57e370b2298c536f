#!/usr/bin/env bash
# A dead node's pending ACME validation is taken over by a live node (issue 17): two
# `keyhold serve` processes (node A, node B) on one data directory and one database; a
# client answers an http-01 challenge on A, A is killed while validating, and B must finish
# the validation within 40 s, with no restart (failover.py). Also checks that the audit log
# says B reclaimed and validated it.
# Usage: tests/acme/failover.sh [--database sqlite|postgres]
#   sqlite (default): the data directory's SQLite file, shared by both processes;
#   postgres: a throwaway PostgreSQL server on a unix socket in its own directory (initdb,
#   run as the postgres user when root), both nodes pointed at it by `keyhold init
#   --database-url`, stopped and deleted on exit.
#   KEYHOLD_BIN: the binary, default target/debug/keyhold.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
# shellcheck source=tests/acme/lib.sh
. "$here/lib.sh"
database=sqlite
case "${1:-}" in
  "") ;;
  --database) database=${2:-} ;;
  *) fail "usage: tests/acme/failover.sh [--database sqlite|postgres]" ;;
esac
case "$database" in
  sqlite | postgres) ;;
  *) fail "--database takes sqlite or postgres, not '$database'" ;;
esac
acme_tools_check
# The database is the one this script sets up: an inherited URL would override it.
unset KEYHOLD_DATABASE_URL
KEYHOLD_BIN=${KEYHOLD_BIN:-$root/target/debug/keyhold}
[ -x "$KEYHOLD_BIN" ] || fail "no keyhold binary at $KEYHOLD_BIN (cargo build -p ca-web)"

# PostgreSQL refuses to run as root: as root, run it as the user the postgresql package made.
pg_as() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
work=$(mktemp -d /tmp/keyhold-acme-failover.XXXXXX)
pg_dir="" pg_bin=""
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ -n "$pg_dir" ]; then
    pg_as "$pg_bin/pg_ctl" -D "$pg_dir/data" -m immediate -w stop >/dev/null 2>&1 || true
    rm -rf "$pg_dir"
  fi
  rm -rf "$work" "$ACME_PORTS_GIVEN"
}
trap cleanup EXIT

db_args=()
if [ "$database" = postgres ]; then
  pg_bin=$(dirname "$(compgen -G '/usr/lib/postgresql/*/bin/initdb' | sort -V | tail -n 1)")
  [ -x "$pg_bin/initdb" ] && command -v psql >/dev/null || fail "PostgreSQL is not installed (run .ci/setup)"
  pg_dir=$(mktemp -d /tmp/keyhold-acme-failover-pg.XXXXXX)
  if [ "$(id -u)" = 0 ]; then chown postgres: "$pg_dir"; fi
  pg_as "$pg_bin/initdb" -D "$pg_dir/data" -U keyhold -A trust -E UTF8 --no-instructions >"$work/initdb.log" 2>&1 ||
    { cat "$work/initdb.log" >&2; fail "initdb"; }
  # No TCP port (nothing to collide with); fsync on, as in production.
  pg_as "$pg_bin/pg_ctl" -D "$pg_dir/data" -l "$pg_dir/server.log" -w \
    -o "-c listen_addresses='' -c unix_socket_directories='$pg_dir'" start >/dev/null ||
    { cat "$pg_dir/server.log" >&2; fail "PostgreSQL did not start"; }
  pg_as "$pg_bin/createdb" -h "$pg_dir" -U keyhold keyhold
  db_args=(--database-url "postgres://keyhold@/keyhold?host=$pg_dir")
fi

a_plain=$(free_port) a_tls=$(free_port) b_plain=$(free_port) b_tls=$(free_port)
HTTP01_PORT=$(free_port)
data=$work/data
(umask 077; printf 'acme-failover-passphrase\n' >"$work/pass")
"$KEYHOLD_BIN" init --data-dir "$data" --passphrase-file "$work/pass" "${db_args[@]}" \
  --base-url "http://127.0.0.1:$a_plain" >"$work/init.log" 2>&1 || { cat "$work/init.log" >&2; fail "keyhold init"; }
cat >"$data/policies/acme-test.toml" <<'TOML'
# The failover test's one identifier: 127.0.0.1, over ACME only.
version = 1
description = "ACME failover test: 127.0.0.0/8, 30 days"
issuer = "issuing-ca"
acme = true
[validity]
max_days = 30
[keys]
allowed = ["p256"]
[names]
ip_ranges = ["127.0.0.0/8"]
[subject]
from_csr = ["CN"]
[usage]
key_usage = ["digitalSignature"]
extended_key_usage = ["serverAuth"]
TOML
# IP identifiers only: no name is resolved, so the resolver is never asked.
cat >>"$data/keyhold.toml" <<TOML

[acme]
enabled = true
require_eab = false
http01_port = $HTTP01_PORT
dns_resolver = "127.0.0.1:9"
default_profile = "acme-test"
TOML

serve() { # serve NAME PLAIN TLS: a node on this data directory
  "$KEYHOLD_BIN" serve --data-dir "$data" --passphrase-file "$work/pass" \
    --listen "127.0.0.1:$2" --tls-listen "127.0.0.1:$3" >"$work/$1.log" 2>&1 &
  pids+=($!)
  wait_port "$2"
  wait_port "$3"
}
serve node-a "$a_plain" "$a_tls"
a_pid=${pids[-1]}
serve node-b "$b_plain" "$b_tls"
curl -fsS "http://127.0.0.1:$a_plain/ca/root.pem" >"$work/root.pem"

section "ACME failover on $database: two nodes, one killed mid-validation"
status=0
ACME_DIRECTORY="https://localhost:$a_tls/acme/directory" NODE_B_ACME="https://localhost:$b_tls/acme" \
  NODE_A_PID=$a_pid HTTP01_PORT=$HTTP01_PORT ACME_CA_BUNDLE="$work/root.pem" REQUESTS_CA_BUNDLE="$work/root.pem" \
  ACME_DOMAIN=unused.internal \
  CHALLTESTSRV_MGMT=http://127.0.0.1:9 ACME_WORK="$work" \
  "$ACME_PY" "$here/failover.py" || status=$?
if [ "$status" = 0 ]; then
  audit=$("$KEYHOLD_BIN" --data-dir "$data" --passphrase-file "$work/pass" audit list 2>&1) ||
    fail "keyhold audit list: $audit"
  grep -q "acme.challenge_reclaimed" <<<"$audit" || { status=1; echo "FAIL no acme.challenge_reclaimed in the audit log" >&2; }
  grep -q "acme.validated" <<<"$audit" || { status=1; echo "FAIL no acme.validated in the audit log" >&2; }
  if [ "$database" = postgres ]; then
    # The nodes really shared PostgreSQL: the challenge row there names node B's claim.
    rows=$(pg_as psql -qtA -h "$pg_dir" -U keyhold -d keyhold \
      -c "SELECT count(*) FROM acme_challenges WHERE status = 'valid' AND claimed_by IS NOT NULL") ||
      fail "psql on the throwaway PostgreSQL"
    [ "$rows" = 1 ] || { status=1; echo "FAIL PostgreSQL holds $rows valid claimed challenges, not 1" >&2; }
    [ ! -e "$data/keyhold.db" ] || { status=1; echo "FAIL a SQLite file appeared in the data directory" >&2; }
  fi
fi
if [ "$status" != 0 ]; then
  echo "--- node B log (last 30 lines)" >&2
  tail -n 30 "$work/node-b.log" >&2
  exit "$status"
fi
pass "failover on $database: the audit log shows node B reclaiming and validating the challenge"
