#!/usr/bin/env bash
# A dead node's pending ACME validation is taken over by a live node (issue 17): two
# `keyhold serve` processes (node A, node B) on one data directory; a client answers an
# http-01 challenge on A, A is killed while validating, and B must finish the validation
# within 40 s, with no restart (failover.py). Also checks that B's audit log says so.
# Usage: tests/acme/failover.sh  (KEYHOLD_BIN: the binary, default target/debug/keyhold)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
# shellcheck source=tests/acme/lib.sh
. "$here/lib.sh"
acme_tools_check
KEYHOLD_BIN=${KEYHOLD_BIN:-$root/target/debug/keyhold}
[ -x "$KEYHOLD_BIN" ] || fail "no keyhold binary at $KEYHOLD_BIN (cargo build -p ca-web)"

work=$(mktemp -d /tmp/keyhold-acme-failover.XXXXXX)
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work" "$ACME_PORTS_GIVEN"
}
trap cleanup EXIT

a_plain=$(free_port) a_tls=$(free_port) b_plain=$(free_port) b_tls=$(free_port)
HTTP01_PORT=$(free_port)
data=$work/data
(umask 077; printf 'acme-failover-passphrase\n' >"$work/pass")
"$KEYHOLD_BIN" init --data-dir "$data" --passphrase-file "$work/pass" \
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

section "ACME failover: two nodes, one killed mid-validation"
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
fi
if [ "$status" != 0 ]; then
  echo "--- node B log (last 30 lines)" >&2
  tail -n 30 "$work/node-b.log" >&2
  exit "$status"
fi
pass "failover: the audit log shows node B reclaiming and validating the challenge"
