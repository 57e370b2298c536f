#!/usr/bin/env bash
# Proves the ACME harness: runs clients.sh against Debian's pebble (the reference test
# server), with pebble-challtestsrv as the mock DNS, all on loopback ports chosen free.
# Pebble requires EAB here (so "EAB missing" and "EAB wrong" are exercised), refuses one
# blocked name (rejectedIdentifier), and validates without its random sleeps.
# Pebble 2.4.0 has neither ARI nor profiles nor OCSP: those cases belong to Keyhold's run.
# Where pebble answers against RFC 8555, ACME_DEVIATIONS below lists it (protocol.py).
# Usage: tests/acme/pebble.sh  (extra environment is passed on to clients.sh, e.g. ACME_ONLY)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/acme/lib.sh
. "$here/lib.sh"
acme_tools_check

work=$(mktemp -d /tmp/keyhold-acme-pebble.XXXXXX)
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work" "$ACME_PORTS_GIVEN"
}
trap cleanup EXIT

# 1. A throwaway CA for pebble's own HTTPS listener (what the clients are told to trust).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=harness-ca \
  -keyout "$work/ca.key" -out "$work/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost \
  -keyout "$work/tls.key" -out "$work/tls.csr" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >"$work/ext"
openssl x509 -req -in "$work/tls.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" -days 2 \
  -extfile "$work/ext" -out "$work/tls.pem" 2>/dev/null

# 2. Ports, all free now on 127.0.0.1.
acme_port=$(free_port) mgmt_port=$(free_port) dns_port=$(free_port) chall_port=$(free_port)
export HTTP01_PORT TLSALPN01_PORT
HTTP01_PORT=$(free_port) TLSALPN01_PORT=$(free_port)

# 3. The mock DNS: answers every A query with 127.0.0.1 and serves the TXT records that
#    dns-hook.sh publishes. Its own http-01/tls-alpn-01 responders are off: the clients answer.
pebble-challtestsrv -dns01 "127.0.0.1:$dns_port" -management "127.0.0.1:$chall_port" \
  -http01 "" -https01 "" -tlsalpn01 "" -defaultIPv6 "" >"$work/challtestsrv.log" 2>&1 &
pids+=($!)

# 4. Pebble, EAB required.
eab_kid=harness-kid
eab_hmac=$("$ACME_PY" -c 'import base64, os; print(base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("="))')
cat >"$work/pebble.json" <<JSON
{
  "pebble": {
    "listenAddress": "127.0.0.1:$acme_port",
    "managementListenAddress": "127.0.0.1:$mgmt_port",
    "certificate": "$work/tls.pem",
    "privateKey": "$work/tls.key",
    "httpPort": $HTTP01_PORT,
    "tlsPort": $TLSALPN01_PORT,
    "ocspResponderURL": "",
    "externalAccountBindingRequired": true,
    "externalAccountMACKeys": { "$eab_kid": "$eab_hmac" },
    "domainBlocklist": ["blocked.acme-test.internal"]
  }
}
JSON
PEBBLE_VA_NOSLEEP=1 PEBBLE_WFE_NONCEREJECT=0 pebble -config "$work/pebble.json" \
  -dnsserver "127.0.0.1:$dns_port" >"$work/pebble.log" 2>&1 &
pids+=($!)
# Pebble makes its keys at start: on a loaded machine that takes a while.
if ! { wait_port "$acme_port" 60 && wait_port "$mgmt_port" 60 && wait_port "$chall_port" 60; }; then
  echo "--- pebble log" >&2
  cat "$work/pebble.log" >&2
  echo "--- pebble-challtestsrv log" >&2
  cat "$work/challtestsrv.log" >&2
  exit 1
fi

# 5. Pebble makes a new root at every start; issued certificates must chain to it.
curl -fsS --cacert "$work/ca.pem" "https://127.0.0.1:$mgmt_port/roots/0" >"$work/issuing-root.pem"

status=0
ACME_DIRECTORY="https://localhost:$acme_port/dir" \
  ACME_CA_BUNDLE="$work/ca.pem" \
  ACME_ISSUING_ROOT="$work/issuing-root.pem" \
  CHALLTESTSRV_MGMT="http://127.0.0.1:$chall_port" \
  DNS_RESOLVER="127.0.0.1:$dns_port" \
  ACME_DOMAIN=acme-test.internal \
  ACME_IP=127.0.0.1 \
  ACME_REJECTED_NAME=blocked.acme-test.internal \
  ACME_EAB_KID=$eab_kid ACME_EAB_HMAC=$eab_hmac ACME_EAB_REQUIRED=1 \
  ACME_EXPECT_OCSP=0 \
  ACME_DEVIATIONS="${ACME_DEVIATIONS:-alg-none=malformed alg-HS256=malformed wrong-url=malformed CSR-with-other-names=unauthorized revocation-by-authorized-account=unauthorized EdDSA-account=badPublicKey}" \
  "$here/clients.sh" || status=$?
if [ "$status" != 0 ]; then
  echo "--- pebble log (last 30 lines)" >&2
  tail -n 30 "$work/pebble.log" >&2
fi
exit "$status"
