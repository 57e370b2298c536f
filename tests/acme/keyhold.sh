#!/usr/bin/env bash
# Runs the ACME client harness (clients.sh) against Keyhold: `keyhold serve` with [acme]
# enabled and EAB required, on free loopback ports, pebble-challtestsrv as the mock DNS,
# no deviations from RFC 8555 allowed, and every certificate checked with openssl verify
# and an OCSP answer of good.
# Usage: tests/acme/keyhold.sh  (KEYHOLD_BIN: the binary, default target/debug/keyhold;
#        extra environment is passed on to clients.sh, e.g. ACME_ONLY)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
# shellcheck source=tests/acme/lib.sh
. "$here/lib.sh"
acme_tools_check
KEYHOLD_BIN=${KEYHOLD_BIN:-$root/target/debug/keyhold}
[ -x "$KEYHOLD_BIN" ] || fail "no keyhold binary at $KEYHOLD_BIN (cargo build -p ca-web)"

work=$(mktemp -d /tmp/keyhold-acme-keyhold.XXXXXX)
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work" "$ACME_PORTS_GIVEN"
}
trap cleanup EXIT

# 1. Ports, all free now on 127.0.0.1.
plain_port=$(free_port) tls_port=$(free_port) dns_port=$(free_port) chall_port=$(free_port)
export HTTP01_PORT TLSALPN01_PORT
HTTP01_PORT=$(free_port) TLSALPN01_PORT=$(free_port)

# 2. The mock DNS (every A query: 127.0.0.1; TXT records from dns-hook.sh).
pebble-challtestsrv -dns01 "127.0.0.1:$dns_port" -management "127.0.0.1:$chall_port" \
  -http01 "" -https01 "" -tlsalpn01 "" -defaultIPv6 "" >"$work/challtestsrv.log" 2>&1 &
pids+=($!)

# 3. A CA, with a profile for the harness's names open to ACME and EAB required.
data=$work/data
(umask 077; printf 'acme-harness-passphrase\n' >"$work/pass")
"$KEYHOLD_BIN" init --data-dir "$data" --passphrase-file "$work/pass" \
  --base-url "http://127.0.0.1:$plain_port" >"$work/init.log" 2>&1 || { cat "$work/init.log" >&2; fail "keyhold init"; }
cat >"$data/policies/acme-test.toml" <<'TOML'
# The ACME harness's names: acme-test.internal and loopback, issued over ACME only.
version = 1
description = "ACME harness: *.acme-test.internal and 127.0.0.0/8, 30 days"
issuer = "issuing-ca"
acme = true
[validity]
max_days = 30
[keys]
allowed = ["p256", "p384", "rsa"]
[names]
dns_suffixes = [".acme-test.internal"]
ip_ranges = ["127.0.0.0/8"]
allow_wildcards = true
deny = ["blocked.acme-test.internal"]
[subject]
from_csr = ["CN"]
[usage]
key_usage = ["digitalSignature", "keyEncipherment"]
extended_key_usage = ["serverAuth"]
TOML
cat >>"$data/keyhold.toml" <<TOML

[acme]
enabled = true
require_eab = true
http01_port = $HTTP01_PORT
tls_alpn01_port = $TLSALPN01_PORT
dns_resolver = "127.0.0.1:$dns_port"
default_profile = "acme-test"
orders_per_hour = 1000
orders_per_identifier_per_hour = 8
# Clients ask renewalInfo again after 2 s, so Caddy notices a revocation within the test.
ari_retry_after_seconds = 2
TOML
eab_out=$("$KEYHOLD_BIN" --data-dir "$data" --passphrase-file "$work/pass" acme eab create \
  --name harness --profile acme-test --profile tls-server)
eab_kid=$(sed -n 's/^kid: *//p' <<<"$eab_out")
eab_hmac=$(sed -n 's/^hmac: *//p' <<<"$eab_out")
[ -n "$eab_kid" ] && [ -n "$eab_hmac" ] || fail "keyhold acme eab create printed no kid and key: $eab_out"
# A second key, bound to one name and its subdomains (`--allow-name`).
lim_out=$("$KEYHOLD_BIN" --data-dir "$data" --passphrase-file "$work/pass" acme eab create \
  --name harness-limited --profile acme-test --allow-name lim.acme-test.internal --allow-name .lim.acme-test.internal)
lim_kid=$(sed -n 's/^kid: *//p' <<<"$lim_out")
lim_hmac=$(sed -n 's/^hmac: *//p' <<<"$lim_out")
[ -n "$lim_kid" ] && [ -n "$lim_hmac" ] || fail "keyhold acme eab create --allow-name printed no kid and key: $lim_out"

# What clients.sh asks the server itself, as its operator would (ACME_SERVER_HOOK).
cat >"$work/server-hook" <<HOOK
#!/usr/bin/env bash
set -euo pipefail
kh() { "$KEYHOLD_BIN" --data-dir "$data" --passphrase-file "$work/pass" "\$@"; }
case "\$1" in
  count-issued) out=\$(kh certs list --search "\$2" --limit 1000); tail -n +2 <<<"\$out" | grep -vc '^more:' || true ;;
  revoke) kh revoke --reason superseded "\$2" ;;
  renewal-info) # a renewalInfo answer for ID whose window ends before the answer was logged
    "$ACME_PY" - "$work/keyhold.log" "\$2" <<'PY'
import re, sys
from datetime import datetime
pat = re.compile(r"^(\S+) .*acme: renewalInfo answered.* id=(\S+) start=(\S+) end=(\S+)")
for line in open(sys.argv[1], errors="replace"):
    m = pat.search(re.sub(r"\x1b\[[0-9;]*m", "", line))
    if m and m.group(2) == sys.argv[2]:
        at, end = (datetime.fromisoformat(t.replace("Z", "+00:00")) for t in (m.group(1), m.group(4)))
        if end < at:
            print(line.strip())
            sys.exit(0)
sys.exit("no renewalInfo answer with a past window for " + sys.argv[2])
PY
    ;;
  replaces-ignored) # Keyhold logged a newOrder replaces naming another account's certificate
    sed 's/\x1b\[[0-9;]*m//g' "$work/keyhold.log" |
      grep -F "replaces names another account's certificate; a plain new order" |
      grep -E "replaces=\"?\$2\"?( |\$)" ;;
  *) echo "server-hook: unknown command \$1" >&2; exit 2 ;;
esac
HOOK
chmod +x "$work/server-hook"

# 4. Keyhold.
# Debug for renewalInfo answers: the harness checks that Keyhold answered the one Caddy asked.
KEYHOLD_LOG=info,ca_web::http::acme::directory=debug "$KEYHOLD_BIN" serve --data-dir "$data" --passphrase-file "$work/pass" \
  --listen "127.0.0.1:$plain_port" --tls-listen "127.0.0.1:$tls_port" >"$work/keyhold.log" 2>&1 &
pids+=($!)
wait_port "$plain_port"
wait_port "$tls_port"
wait_port "$chall_port"
curl -fsS "http://127.0.0.1:$plain_port/ca/root.pem" >"$work/root.pem"

status=0
ACME_DIRECTORY="https://localhost:$tls_port/acme/directory" \
  ACME_CA_BUNDLE="$work/root.pem" \
  ACME_ISSUING_ROOT="$work/root.pem" \
  CHALLTESTSRV_MGMT="http://127.0.0.1:$chall_port" \
  DNS_RESOLVER="127.0.0.1:$dns_port" \
  ACME_DOMAIN=acme-test.internal \
  ACME_IP=127.0.0.1 \
  ACME_REJECTED_NAME=blocked.acme-test.internal \
  ACME_EAB_KID=$eab_kid ACME_EAB_HMAC=$eab_hmac ACME_EAB_REQUIRED=1 \
  ACME_EAB_LIMITED_KID=$lim_kid ACME_EAB_LIMITED_HMAC=$lim_hmac ACME_EAB_LIMITED_SUFFIX=lim.acme-test.internal \
  ACME_SERVER_HOOK="$work/server-hook" \
  ACME_EXPECT_OCSP=1 ACME_MAX_BODY=65536 ACME_DEVIATIONS="" \
  ACME_EXPECT_ARI=1 ACME_ARI_RETRY_AFTER=2 ACME_PROFILE_NAME_OK=acme-test ACME_PROFILE_NO_WILDCARD=tls-server \
  ACME_RATE_LIMIT_PER_NAME=8 \
  "$here/clients.sh" || status=$?
if [ "$status" != 0 ]; then
  echo "--- keyhold log (last 40 lines)" >&2
  tail -n 40 "$work/keyhold.log" >&2
  exit "$status"
fi

# 5. ARI after a CA rotation (RFC 9773, issue 17): once acme-test issues from a new issuing
# CA, a certificate from the old one gets a renewal window in the past, so clients renew at
# once. The rotation as an operator makes it: `keyhold ca add-issuing`, the profile's
# `issuer` changed, a node started on that configuration.
kh() { "$KEYHOLD_BIN" --data-dir "$data" --passphrase-file "$work/pass" "$@"; }
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout /dev/null \
  -subj "/CN=rot.acme-test.internal" -addext "subjectAltName=DNS:rot.acme-test.internal" \
  -out "$work/rot.csr" 2>/dev/null
kh issue --profile acme-test --csr "$work/rot.csr" --out "$work/rot.pem" >/dev/null ||
  fail "keyhold issue under acme-test"
# renewalInfo's window for rot.pem from the node on PORT: "future" or "past" (its end).
window() {
  curl -fsS --cacert "$work/root.pem" "https://localhost:$1/acme/renewal-info/$ari_id" |
    "$ACME_PY" -c '
import json, sys
from datetime import datetime, timezone
end = json.load(sys.stdin)["suggestedWindow"]["end"]
print("past" if datetime.fromisoformat(end.replace("Z", "+00:00")) < datetime.now(timezone.utc) else "future")'
}
ari_id=$("$ACME_PY" - "$work/rot.pem" <<'PY'
import base64, sys
from cryptography import x509
cert = x509.load_pem_x509_certificates(open(sys.argv[1], "rb").read())[0]
aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
serial = cert.serial_number.to_bytes((cert.serial_number.bit_length() + 8) // 8, "big")
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
print(f"{b64(aki)}.{b64(serial)}")
PY
)
[ "$(window "$tls_port")" = future ] || fail "renewalInfo before the rotation: not a window ahead"
kh ca add-issuing --id issuing-ca-2 --subject "CN=Keyhold ACME Harness Issuing CA 2" \
  --eku serverAuth >"$work/rotate.log" 2>&1 || { cat "$work/rotate.log" >&2; fail "keyhold ca add-issuing"; }
sed -i 's/^issuer = "issuing-ca"$/issuer = "issuing-ca-2"/' "$data/policies/acme-test.toml"
grep -q '^issuer = "issuing-ca-2"$' "$data/policies/acme-test.toml" || fail "the profile names the new CA"
plain2=$(free_port) tls2=$(free_port)
"$KEYHOLD_BIN" serve --data-dir "$data" --passphrase-file "$work/pass" \
  --listen "127.0.0.1:$plain2" --tls-listen "127.0.0.1:$tls2" >"$work/keyhold2.log" 2>&1 &
pids+=($!)
wait_port "$tls2" 60 || { tail -n 20 "$work/keyhold2.log" >&2; fail "the node on the rotated configuration"; }
[ "$(window "$tls2")" = past ] ||
  fail "renewalInfo after the rotation: a certificate from the old issuing CA must get a window in the past"
echo "ok    ARI after a CA rotation: the old issuing CA's certificate gets a window in the past (before: ahead)"
