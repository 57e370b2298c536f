#!/usr/bin/env bash
# Runs real, unmodified ACME clients (certbot and its `acme` library from PyPI, lego from
# Debian, Caddy from PyPI) against one ACME directory, and asserts every result. It knows
# nothing of the server: pebble.sh runs it against Debian's pebble (to prove the harness),
# and the same script runs against Keyhold, so a failure there belongs to Keyhold.
#
# Input (environment):
#   ACME_DIRECTORY       directory URL (https)
#   ACME_CA_BUNDLE       PEM that the clients trust for the directory's HTTPS listener
#   ACME_ISSUING_ROOT    PEM root that issued certificates must chain to (openssl verify)
#   HTTP01_PORT          port the server's validation connects to for http-01
#   TLSALPN01_PORT       port the server's validation connects to for tls-alpn-01
#   CHALLTESTSRV_MGMT    pebble-challtestsrv management URL (dns-01 TXT records)
#   DNS_RESOLVER         host:port of the mock DNS (lego's propagation check is off)
#   ACME_DOMAIN          suffix the server accepts, e.g. acme-test.internal
#   ACME_IP              an IP identifier the server accepts and validates on loopback
#   ACME_REJECTED_NAME   a name the server must refuse with rejectedIdentifier
#   ACME_EAB_KID, ACME_EAB_HMAC   an EAB key (base64url HMAC); ACME_EAB_REQUIRED=1 if the
#                        directory requires one (then "EAB missing" must fail)
#   ACME_EXPECT_OCSP=1   every issued certificate names an OCSP responder that says good
#   ACME_EXPECT_ARI=1    the server offers renewalInfo, profiles and notAfter (protocol.py
#                        checks them; ACME_PROFILE_NAME_OK: an offered profile the harness's
#                        names fit; ACME_PROFILE_NO_WILDCARD: an offered one without wildcards;
#                        ACME_ARI_RETRY_AFTER: the Retry-After renewalInfo must answer)
#   ACME_EAB_LIMITED_KID, ACME_EAB_LIMITED_HMAC   optional: an EAB key bound to the names
#                        ACME_EAB_LIMITED_SUFFIX and .ACME_EAB_LIMITED_SUFFIX only (lego case)
#   ACME_SERVER_HOOK     optional: an executable that asks the server itself, as its operator:
#                        `HOOK count-issued NAME` prints how many certificates name NAME,
#                        `HOOK revoke SERIAL` revokes one (hex serial), `HOOK renewal-info
#                        ID` succeeds if the server's log shows a renewalInfo answer for
#                        the RFC 9773 certificate ID with a window in the past, `HOOK
#                        replaces-ignored ID` if its log shows a newOrder whose `replaces`
#                        named ID, another account's certificate, made a plain order
#   ACME_WORK            scratch directory (default: a fresh temporary one)
#   ACME_ONLY            optional: run only these groups (space separated: certbot lego caddy protocol)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/acme/lib.sh
. "$here/lib.sh"
acme_tools_check

: "${ACME_DIRECTORY:?}" "${ACME_CA_BUNDLE:?}" "${ACME_ISSUING_ROOT:?}" "${HTTP01_PORT:?}"
: "${TLSALPN01_PORT:?}" "${CHALLTESTSRV_MGMT:?}" "${DNS_RESOLVER:?}" "${ACME_DOMAIN:?}"
: "${ACME_IP:=127.0.0.1}" "${ACME_REJECTED_NAME:?}" "${ACME_EAB_REQUIRED:=0}" "${ACME_EXPECT_OCSP:=0}"
: "${ACME_ONLY:=certbot lego caddy protocol}"
export CHALLTESTSRV_MGMT
owned_work=""
if [ -z "${ACME_WORK:-}" ]; then
  ACME_WORK=$(mktemp -d /tmp/keyhold-acme-clients.XXXXXX)
  owned_work=$ACME_WORK
fi
caddy_pid=""
cleanup_clients() {
  if [ -n "$caddy_pid" ]; then kill "$caddy_pid" 2>/dev/null || true; wait "$caddy_pid" 2>/dev/null || true; fi
  if [ -n "$owned_work" ]; then rm -rf "$owned_work"; fi
}
trap cleanup_clients EXIT
export ACME_WORK
D=$ACME_DOMAIN
w=$ACME_WORK
export REQUESTS_CA_BUNDLE=$ACME_CA_BUNDLE LEGO_CA_CERTIFICATES=$ACME_CA_BUNDLE
wants() { [[ " $ACME_ONLY " == *" $1 "* ]]; }

eab_certbot=() eab_lego=()
if [ -n "${ACME_EAB_KID:-}" ]; then
  # `--opt=value`: a base64url key may start with `-`, which would read as an option.
  eab_certbot=("--eab-kid=$ACME_EAB_KID" "--eab-hmac-key=$ACME_EAB_HMAC")
  eab_lego=(--eab "--kid=$ACME_EAB_KID" "--hmac=$ACME_EAB_HMAC")
fi

# verify_cert LEAF CHAIN NAME...: the leaf chains to the issuing root through CHAIN (the
# intermediates the server sent), names exactly NAME... (as openssl prints them, e.g.
# DNS:a.b, IP Address:127.0.0.1), and, if expected, its OCSP responder says good.
verify_cert() {
  local leaf=$1 chain=$2
  shift 2
  local out want got
  out=$(openssl verify -CAfile "$ACME_ISSUING_ROOT" -untrusted "$chain" "$leaf" 2>&1) ||
    fail "openssl verify $leaf: $out"
  want=$(printf '%s\n' "$@" | sort | paste -sd,)
  got=$(openssl x509 -in "$leaf" -noout -ext subjectAltName | tail -n +2 | tr -d ' ' | tr ',' '\n' | sort | paste -sd,)
  [ "$got" = "$(tr -d ' ' <<<"$want")" ] || fail "$leaf names $got, expected $want"
  if [ "$ACME_EXPECT_OCSP" = 1 ]; then
    local url
    url=$(openssl x509 -in "$leaf" -noout -ocsp_uri)
    [ -n "$url" ] || fail "$leaf names no OCSP responder"
    out=$(openssl ocsp -issuer "$chain" -cert "$leaf" -url "$url" -CAfile "$ACME_ISSUING_ROOT" -no_nonce 2>&1) ||
      fail "openssl ocsp $leaf: $out"
    grep -q ": good" <<<"$out" || fail "OCSP for $leaf is not good: $out"
  fi
}

# Splits a PEM chain file into leaf.pem and rest.pem in directory $2.
split_chain() {
  mkdir -p "$2"
  awk -v d="$2" '/BEGIN CERT/ { n++ } { print > (n == 1 ? d "/leaf.pem" : d "/rest.pem") }' "$1"
  [ -s "$2/rest.pem" ] || fail "$1 holds no intermediate (a chain is leaf then intermediates)"
  ! openssl x509 -in "$2/leaf.pem" -noout -ext basicConstraints 2>/dev/null | grep -q 'CA:TRUE' ||
    fail "$1 starts with a CA certificate, not the leaf"
}

serial_of() { openssl x509 -in "$1" -noout -serial; }

# expect_failure WHAT PATTERN CMD...: CMD must fail and its output must match PATTERN (ERE).
# certbot prints only the problem's detail; its debug log (named by $expect_log, read only
# when set) holds the problem document with its type.
expect_log=""
expect_failure() {
  local what=$1 pattern=$2 out
  shift 2
  if out=$("$@" 2>&1); then fail "$what: succeeded, expected a refusal matching /$pattern/"; fi
  if [ -n "$expect_log" ] && [ -f "$expect_log" ]; then out+=$'\n'$(grep -h 'urn:ietf:params:acme:error' "$expect_log" || true); fi
  grep -Eqi -- "$pattern" <<<"$out" || fail "$what: failed, but not with /$pattern/: $(tail -n 15 <<<"$out")"
}

certbot_in() { # certbot_in DIR ARGS...: certbot with its own config, work and log directories
  local dir=$1
  shift
  "$CERTBOT" --non-interactive --agree-tos -m acme-test@example.org --server "$ACME_DIRECTORY" \
    --config-dir "$dir/config" --work-dir "$dir/work" --logs-dir "$dir/logs" "$@"
}
standalone=(--standalone --http-01-port "$HTTP01_PORT" --http-01-address 127.0.0.1)
dns_manual=(--manual --preferred-challenges dns --manual-auth-hook "$here/dns-hook.sh certbot-auth"
  --manual-cleanup-hook "$here/dns-hook.sh certbot-cleanup")

if wants certbot; then
  section "certbot $("$CERTBOT" --version 2>&1 | cut -d' ' -f2)"
  cb=$w/certbot
  certbot_in "$cb" register "${eab_certbot[@]}" >"$w/log" 2>&1 || fail "certbot register: $(tail -n 15 "$w/log")"
  pass "certbot: new account${ACME_EAB_KID:+ with EAB}"

  certbot_in "$cb" certonly "${standalone[@]}" -d "cb1.$D" --cert-name cb1 >"$w/log" 2>&1 ||
    fail "certbot http-01: $(tail -n 15 "$w/log")"
  split_chain "$cb/config/live/cb1/fullchain.pem" "$w/cb1"
  verify_cert "$w/cb1/leaf.pem" "$w/cb1/rest.pem" "DNS:cb1.$D"
  pass "certbot: http-01 issues cb1.$D, chain verifies"

  certbot_in "$cb" certonly "${dns_manual[@]}" -d "*.wc.$D" -d "wc.$D" --cert-name wc >"$w/log" 2>&1 ||
    fail "certbot dns-01 wildcard: $(tail -n 15 "$w/log")"
  split_chain "$cb/config/live/wc/fullchain.pem" "$w/wc"
  verify_cert "$w/wc/leaf.pem" "$w/wc/rest.pem" "DNS:*.wc.$D" "DNS:wc.$D"
  pass "certbot: dns-01 issues *.wc.$D and wc.$D"

  before=$(serial_of "$w/cb1/leaf.pem")
  certbot_in "$cb" renew --cert-name cb1 --force-renewal --no-random-sleep-on-renew "${standalone[@]}" >"$w/log" 2>&1 ||
    fail "certbot renew: $(tail -n 15 "$w/log")"
  split_chain "$cb/config/live/cb1/fullchain.pem" "$w/cb1r"
  verify_cert "$w/cb1r/leaf.pem" "$w/cb1r/rest.pem" "DNS:cb1.$D"
  [ "$(serial_of "$w/cb1r/leaf.pem")" != "$before" ] || fail "certbot renew returned the same certificate"
  pass "certbot: renew gives a new certificate for cb1.$D"

  certbot_in "$cb" revoke --cert-name cb1 --no-delete-after-revoke >"$w/log" 2>&1 ||
    fail "certbot revoke (account key): $(tail -n 15 "$w/log")"
  pass "certbot: revoke by account key"
  expect_log=$cb/logs/letsencrypt.log
  expect_failure "certbot second revoke" 'alreadyRevoked|already revoked' \
    certbot_in "$cb" revoke --cert-name cb1 --no-delete-after-revoke
  pass "certbot: a second revocation is refused (alreadyRevoked)"

  mkdir -p "$w/keyonly"
  cp -L "$cb/config/live/wc/cert.pem" "$cb/config/live/wc/privkey.pem" "$w/keyonly/"
  certbot_in "$w/certbot-keyonly" revoke --cert-path "$w/keyonly/cert.pem" \
    --key-path "$w/keyonly/privkey.pem" --no-delete-after-revoke >"$w/log" 2>&1 ||
    fail "certbot revoke (certificate key): $(tail -n 15 "$w/log")"
  pass "certbot: revoke signed by the certificate's own key, no account"

  expect_failure "certbot name outside the profile" 'rejectedIdentifier' \
    certbot_in "$cb" certonly "${standalone[@]}" -d "$ACME_REJECTED_NAME" --cert-name rejected
  pass "certbot: $ACME_REJECTED_NAME refused with rejectedIdentifier"

  if [ "$ACME_EAB_REQUIRED" = 1 ]; then
    expect_log=$w/certbot-noeab/logs/letsencrypt.log
    expect_failure "certbot without EAB" 'externalAccountRequired|external account' \
      certbot_in "$w/certbot-noeab" register
    pass "certbot: EAB missing is refused (externalAccountRequired)"
  fi
  if [ -n "${ACME_EAB_KID:-}" ]; then
    wrong=$("$ACME_PY" -c 'import base64, os; print(base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("="))')
    expect_log=$w/certbot-wrongeab/logs/letsencrypt.log
    expect_failure "certbot with a wrong EAB HMAC" 'unauthorized|malformed|verification|external account' \
      certbot_in "$w/certbot-wrongeab" register "--eab-kid=$ACME_EAB_KID" "--eab-hmac-key=$wrong"
    pass "certbot: EAB with a wrong HMAC key is refused"
  fi

  # ARI (RFC 9773) and profiles, where the server offers them (pebble 2.4 has neither).
  if [ "${ACME_EXPECT_ARI:-0}" = 1 ]; then
    # certbot 5.x asks renewalInfo on `renew` and stores the answer's Retry-After (so a
    # lineage is asked once): one lineage shows "not due", another, revoked, renews early
    # because ARI says so (certbot asks ARI first, and OCSP only when ARI does not say renew).
    for n in cb3 cb4; do
      certbot_in "$cb" certonly "${standalone[@]}" -d "$n.$D" --cert-name "$n" >"$w/log" 2>&1 ||
        fail "certbot http-01 $n: $(tail -n 15 "$w/log")"
    done
    before=$(serial_of "$cb/config/live/cb3/cert.pem")
    certbot_in "$cb" renew --cert-name cb3 --no-random-sleep-on-renew "${standalone[@]}" >"$w/log" 2>&1 ||
      fail "certbot renew cb3: $(tail -n 15 "$w/log")"
    grep -q "renewal-info/" "$cb/logs/letsencrypt.log" || fail "certbot renew did not ask renewalInfo"
    [ "$(serial_of "$cb/config/live/cb3/cert.pem")" = "$before" ] ||
      fail "certbot renewed cb3 although its renewal window is ahead"
    certbot_in "$cb" revoke --cert-name cb4 --no-delete-after-revoke >"$w/log" 2>&1 ||
      fail "certbot revoke cb4: $(tail -n 15 "$w/log")"
    before=$(serial_of "$cb/config/live/cb4/cert.pem")
    certbot_in "$cb" renew --cert-name cb4 --no-random-sleep-on-renew "${standalone[@]}" >"$w/log" 2>&1 ||
      fail "certbot renew cb4: $(tail -n 15 "$w/log")"
    grep -q "renewal-info/" "$cb/logs/letsencrypt.log" || fail "certbot renew did not ask renewalInfo"
    ! grep -q "certificate is revoked" "$cb/logs/letsencrypt.log" ||
      fail "certbot renewed cb4 because OCSP said revoked, not because of ARI"
    split_chain "$cb/config/live/cb4/fullchain.pem" "$w/cb4r"
    verify_cert "$w/cb4r/leaf.pem" "$w/cb4r/rest.pem" "DNS:cb4.$D"
    [ "$(serial_of "$w/cb4r/leaf.pem")" != "$before" ] || fail "certbot renew kept the revoked cb4"
    pass "certbot: renew asks ARI; a live certificate is not due, a revoked one renews at once"

    if [ -n "${ACME_PROFILE_NO_WILDCARD:-}" ]; then
      # The profile's own rules apply: this one allows no wildcard (the default profile
      # issued *.wc.$D above).
      certbot_in "$cb" certonly "${standalone[@]}" --required-profile "$ACME_PROFILE_NO_WILDCARD" \
        -d "cp.$D" --cert-name cp >"$w/log" 2>&1 || fail "certbot --required-profile: $(tail -n 15 "$w/log")"
      split_chain "$cb/config/live/cp/fullchain.pem" "$w/cp"
      verify_cert "$w/cp/leaf.pem" "$w/cp/rest.pem" "DNS:cp.$D"
      expect_log=$cb/logs/letsencrypt.log
      expect_failure "certbot wildcard under --required-profile $ACME_PROFILE_NO_WILDCARD" 'rejectedIdentifier' \
        certbot_in "$cb" certonly "${dns_manual[@]}" --required-profile "$ACME_PROFILE_NO_WILDCARD" \
        -d "*.cp.$D" --cert-name cpw
      expect_log=""
      pass "certbot: --required-profile $ACME_PROFILE_NO_WILDCARD issues cp.$D and applies that profile's rules"
    fi
  fi

  # Deactivation: keep a copy of the account, deactivate it, put the copy back and ask
  # for a certificate with it: the server must refuse the deactivated account.
  cp -a "$cb/config" "$w/certbot-config-copy"
  certbot_in "$cb" unregister >"$w/log" 2>&1 || fail "certbot unregister: $(tail -n 15 "$w/log")"
  rm -rf "$cb/config" && mv "$w/certbot-config-copy" "$cb/config"
  expect_log=$cb/logs/letsencrypt.log
  expect_failure "certbot with a deactivated account" 'unauthorized|deactivated' \
    certbot_in "$cb" certonly "${standalone[@]}" -d "cb2.$D" --cert-name cb2
  pass "certbot: a deactivated account is refused"
  expect_log=""
fi

lego_in() { # lego_in DIR ARGS...
  local dir=$1
  shift
  lego --accept-tos --email acme-test@example.org --server "$ACME_DIRECTORY" --path "$dir" \
    "${eab_lego[@]}" "$@"
}
http_lego=(--http --http.port "127.0.0.1:$HTTP01_PORT")
if wants lego; then
  section "lego $(lego --version | awk '{print $3}')"
  lg=$w/lego
  lego_in "$lg" "${http_lego[@]}" -d "lg1.$D" run >"$w/log" 2>&1 || fail "lego http-01: $(tail -n 15 "$w/log")"
  split_chain "$lg/certificates/lg1.$D.crt" "$w/lg1"
  verify_cert "$w/lg1/leaf.pem" "$w/lg1/rest.pem" "DNS:lg1.$D"
  pass "lego: http-01 issues lg1.$D, chain verifies"

  lego_in "$lg" --tls --tls.port "127.0.0.1:$TLSALPN01_PORT" -d "lg2.$D" run >"$w/log" 2>&1 ||
    fail "lego tls-alpn-01: $(tail -n 15 "$w/log")"
  split_chain "$lg/certificates/lg2.$D.crt" "$w/lg2"
  verify_cert "$w/lg2/leaf.pem" "$w/lg2/rest.pem" "DNS:lg2.$D"
  pass "lego: tls-alpn-01 issues lg2.$D (RFC 8737)"

  # The apex and its wildcard share one TXT name, so lego solves them one after the other,
  # waiting EXEC_SEQUENCE_INTERVAL (60 s unless told) between them.
  EXEC_PATH="$here/dns-hook.sh" EXEC_SEQUENCE_INTERVAL=1 EXEC_POLLING_INTERVAL=1 lego_in "$lg" --dns exec --dns.resolvers "$DNS_RESOLVER" \
    --dns.disable-cp -d "lg3.$D" -d "*.lg3.$D" run >"$w/log" 2>&1 ||
    fail "lego dns-01: $(tail -n 15 "$w/log")"
  split_chain "$lg/certificates/lg3.$D.crt" "$w/lg3"
  verify_cert "$w/lg3/leaf.pem" "$w/lg3/rest.pem" "DNS:lg3.$D" "DNS:*.lg3.$D"
  pass "lego: dns-01 issues lg3.$D and *.lg3.$D"

  expect_failure "lego wildcard over http-01" 'solver|challenge|unsupported|dns' \
    lego_in "$lg" "${http_lego[@]}" -d "*.lg4.$D" run
  pass "lego: a wildcard cannot be validated over http-01"

  before=$(serial_of "$w/lg1/leaf.pem")
  lego_in "$lg" "${http_lego[@]}" -d "lg1.$D" renew --days 100000 --no-random-sleep >"$w/log" 2>&1 ||
    fail "lego renew: $(tail -n 15 "$w/log")"
  split_chain "$lg/certificates/lg1.$D.crt" "$w/lg1r"
  verify_cert "$w/lg1r/leaf.pem" "$w/lg1r/rest.pem" "DNS:lg1.$D"
  [ "$(serial_of "$w/lg1r/leaf.pem")" != "$before" ] || fail "lego renew returned the same certificate"
  pass "lego: renew gives a new certificate"

  lego_in "$lg" -d "lg1.$D" revoke >"$w/log" 2>&1 || fail "lego revoke: $(tail -n 15 "$w/log")"
  pass "lego: revoke"

  # An EAB key bound to names (the server's own feature, e.g. Keyhold's `acme eab create
  # --allow-name`): an account bound to it gets the names the key allows, and an order
  # naming one outside them, although the profile allows it, is refused whole with
  # rejectedIdentifier, and nothing is issued.
  if [ -n "${ACME_EAB_LIMITED_KID:-}" ]; then
    lim=${ACME_EAB_LIMITED_SUFFIX:?}
    ll=$w/lego-limited
    lego_lim() {
      lego --accept-tos --email acme-test@example.org --server "$ACME_DIRECTORY" --path "$ll" \
        --eab "--kid=$ACME_EAB_LIMITED_KID" "--hmac=$ACME_EAB_LIMITED_HMAC" "${http_lego[@]}" "$@"
    }
    lego_lim -d "$lim" -d "a.$lim" run >"$w/log" 2>&1 || fail "lego with the name-bound EAB key: $(tail -n 15 "$w/log")"
    split_chain "$ll/certificates/$lim.crt" "$w/lim"
    verify_cert "$w/lim/leaf.pem" "$w/lim/rest.pem" "DNS:$lim" "DNS:a.$lim"
    pass "lego: an EAB key bound to $lim and .$lim issues $lim and a.$lim"
    expect_failure "lego order outside the EAB key's names" "rejectedIdentifier.*lg5\.$D" \
      lego_lim -d "b.$lim" -d "lg5.$D" run
    [ ! -e "$ll/certificates/b.$lim.crt" ] || fail "lego stored a certificate for b.$lim although the order was refused"
    if [ -n "${ACME_SERVER_HOOK:-}" ]; then
      got=$("$ACME_SERVER_HOOK" count-issued "a.$lim") || fail "server hook count-issued a.$lim"
      [ "$got" = 1 ] || fail "the server holds $got certificates naming a.$lim, not 1"
      for n in "b.$lim" "lg5.$D"; do
        got=$("$ACME_SERVER_HOOK" count-issued "$n") || fail "server hook count-issued $n"
        [ "$got" = 0 ] || fail "the server holds $got certificates naming $n after the refused order"
      done
    fi
    pass "lego: lg5.$D, outside the EAB key's names, is refused with rejectedIdentifier and nothing is issued"
  fi
fi

if wants caddy; then
  section "Caddy $("$CADDY" version | cut -d' ' -f1)"
  cd_dir=$w/caddy
  mkdir -p "$cd_dir"
  eab_caddy=""
  if [ -n "${ACME_EAB_KID:-}" ]; then
    eab_caddy="eab $ACME_EAB_KID $ACME_EAB_HMAC"
  fi
  cat >"$cd_dir/Caddyfile" <<CADDY
{
	admin off
	storage file_system $cd_dir/data
	http_port $HTTP01_PORT
	https_port $TLSALPN01_PORT
	default_bind 127.0.0.1
	skip_install_trust
	ocsp_stapling off
}
kd1.$D {
	tls {
		issuer acme $ACME_DIRECTORY {
			email acme-test@example.org
			trusted_roots $ACME_CA_BUNDLE
			disable_tlsalpn_challenge
			$eab_caddy
		}
	}
	respond "kd1"
}
kd2.$D {
	tls {
		issuer acme $ACME_DIRECTORY {
			email acme-test@example.org
			trusted_roots $ACME_CA_BUNDLE
			disable_http_challenge
			$eab_caddy
		}
	}
	respond "kd2"
}
# certbot 5.8 cannot store an IP certificate whose subject CN holds the address (pebble
# 2.4 writes one: certbot reads every CN as a DNS name), and lego 4.9.1 sends IPs as dns
# identifiers; Caddy speaks RFC 8738, so the IP identifier case is Caddy's.
$ACME_IP {
	tls {
		issuer acme $ACME_DIRECTORY {
			email acme-test@example.org
			trusted_roots $ACME_CA_BUNDLE
			disable_tlsalpn_challenge
			$eab_caddy
		}
	}
	respond "ip"
}
CADDY
  HOME=$cd_dir XDG_CONFIG_HOME=$cd_dir/config "$CADDY" run --config "$cd_dir/Caddyfile" --adapter caddyfile \
    >"$cd_dir/caddy.log" 2>&1 &
  caddy_pid=$!
  for n in "kd1.$D" "kd2.$D" "$ACME_IP"; do
    crt=""
    for _ in $(seq 1 300); do
      crt=$(find "$cd_dir/data/certificates" -name "$n.crt" 2>/dev/null | head -n 1 || true)
      [ -n "$crt" ] && break
      kill -0 "$caddy_pid" 2>/dev/null || fail "Caddy exited: $(tail -n 20 "$cd_dir/caddy.log")"
      sleep 0.1
    done
    [ -n "$crt" ] || fail "Caddy got no certificate for $n in 30 s: $(grep -i error "$cd_dir/caddy.log" | tail -n 5)"
    split_chain "$crt" "$w/caddy-$n"
    if [ "$n" = "$ACME_IP" ]; then
      verify_cert "$w/caddy-$n/leaf.pem" "$w/caddy-$n/rest.pem" "IP Address:$n"
    else
      verify_cert "$w/caddy-$n/leaf.pem" "$w/caddy-$n/rest.pem" "DNS:$n"
    fi
  done
  # Caddy serves what it got: its TLS listener presents the kd1 certificate.
  served=$(curl -fsS --cacert "$ACME_ISSUING_ROOT" --resolve "kd1.$D:$TLSALPN01_PORT:127.0.0.1" "https://kd1.$D:$TLSALPN01_PORT/") ||
    fail "Caddy does not serve kd1.$D with the certificate it obtained"
  [ "$served" = kd1 ] || fail "Caddy served '$served' for kd1.$D"
  kill "$caddy_pid"
  wait "$caddy_pid" 2>/dev/null || true
  caddy_pid=""
  pass "Caddy: http-01 issues kd1.$D, tls-alpn-01 issues kd2.$D, and Caddy serves them"
  pass "Caddy: http-01 issues IP identifier $ACME_IP (RFC 8738)"

  # Renewal by Caddy itself, where the server honours notAfter (Keyhold; pebble 2.4 issues
  # five-year certificates whatever is asked): a one-day certificate (`lifetime`), renewed
  # once less than renewal_window_ratio of its lifetime is left, looked at every second.
  if [ "${ACME_EXPECT_ARI:-0}" = 1 ]; then
    cat >"$cd_dir/Caddyfile.renew" <<CADDY
{
	admin off
	storage file_system $cd_dir/data
	http_port $HTTP01_PORT
	https_port $TLSALPN01_PORT
	default_bind 127.0.0.1
	skip_install_trust
	ocsp_stapling off
	renew_interval 1s
	renewal_window_ratio 0.9999
}
kd3.$D {
	tls {
		issuer acme $ACME_DIRECTORY {
			email acme-test@example.org
			trusted_roots $ACME_CA_BUNDLE
			disable_tlsalpn_challenge
			lifetime 1d
			$eab_caddy
		}
	}
	respond "kd3"
}
CADDY
    HOME=$cd_dir XDG_CONFIG_HOME=$cd_dir/config "$CADDY" run --config "$cd_dir/Caddyfile.renew" --adapter caddyfile \
      >"$cd_dir/caddy-renew.log" 2>&1 &
    caddy_pid=$!
    first="" now=""
    for _ in $(seq 1 600); do
      crt=$(find "$cd_dir/data/certificates" -name "kd3.$D.crt" 2>/dev/null | head -n 1 || true)
      if [ -n "$crt" ]; then
        now=$(serial_of "$crt" 2>/dev/null || true)
        [ -z "$first" ] && first=$now
        [ -n "$now" ] && [ "$now" != "$first" ] && break
      fi
      kill -0 "$caddy_pid" 2>/dev/null || fail "Caddy exited: $(tail -n 20 "$cd_dir/caddy-renew.log")"
      sleep 0.1
    done
    [ -n "$first" ] || fail "Caddy got no certificate for kd3.$D: $(grep -i error "$cd_dir/caddy-renew.log" | tail -n 5)"
    [ "$now" != "$first" ] || fail "Caddy did not renew kd3.$D in 60 s: $(grep -i -E 'error|renew' "$cd_dir/caddy-renew.log" | tail -n 5)"
    split_chain "$crt" "$w/caddy-kd3"
    verify_cert "$w/caddy-kd3/leaf.pem" "$w/caddy-kd3/rest.pem" "DNS:kd3.$D"
    ! openssl x509 -in "$w/caddy-kd3/leaf.pem" -noout -checkend 90000 >/dev/null ||
      fail "Caddy's kd3.$D certificate outlives the one day it asked for"
    kill "$caddy_pid"
    wait "$caddy_pid" 2>/dev/null || true
    caddy_pid=""
    pass "Caddy: renews kd3.$D by itself (a one-day certificate, lifetime honoured)"
  fi

  # Renewal because ARI says so (RFC 9773): Caddy (CertMagic) asks renewalInfo when it
  # downloads a certificate and again once that answer's Retry-After has passed, at its next
  # maintenance tick (renew_interval). The server revokes kd4 (as its operator, through
  # ACME_SERVER_HOOK); its next renewalInfo window is in the past, and Caddy renews by itself
  # and serves the new certificate. Nothing else could make it renew: the certificate has
  # its profile's full lifetime (its renewal_window_ratio window is weeks away) and OCSP
  # stapling, CertMagic's other revocation check, is off. Needs a server whose renewalInfo
  # Retry-After is seconds (Keyhold: `[acme] ari_retry_after_seconds`).
  if [ "${ACME_EXPECT_ARI:-0}" = 1 ] && [ -n "${ACME_SERVER_HOOK:-}" ]; then
    cat >"$cd_dir/Caddyfile.ari" <<CADDY
{
	admin off
	storage file_system $cd_dir/data
	http_port $HTTP01_PORT
	https_port $TLSALPN01_PORT
	default_bind 127.0.0.1
	skip_install_trust
	ocsp_stapling off
	renew_interval 1s
}
kd4.$D {
	tls {
		issuer acme $ACME_DIRECTORY {
			email acme-test@example.org
			trusted_roots $ACME_CA_BUNDLE
			disable_tlsalpn_challenge
			$eab_caddy
		}
	}
	respond "kd4"
}
CADDY
    served_serial() { # the serial Caddy's TLS listener presents for $1
      timeout 10 openssl s_client -connect "127.0.0.1:$TLSALPN01_PORT" -servername "$1" </dev/null 2>/dev/null |
        openssl x509 -noout -serial 2>/dev/null || true
    }
    HOME=$cd_dir XDG_CONFIG_HOME=$cd_dir/config "$CADDY" run --config "$cd_dir/Caddyfile.ari" --adapter caddyfile \
      >"$cd_dir/caddy-ari.log" 2>&1 &
    caddy_pid=$!
    crt=""
    for _ in $(seq 1 300); do
      crt=$(find "$cd_dir/data/certificates" -name "kd4.$D.crt" 2>/dev/null | head -n 1 || true)
      [ -n "$crt" ] && [ "$(served_serial "kd4.$D")" = "$(serial_of "$crt" 2>/dev/null)" ] && break
      kill -0 "$caddy_pid" 2>/dev/null || fail "Caddy exited: $(tail -n 20 "$cd_dir/caddy-ari.log")"
      sleep 0.1
    done
    [ -n "$crt" ] || fail "Caddy got no certificate for kd4.$D: $(grep -i error "$cd_dir/caddy-ari.log" | tail -n 5)"
    first=$(serial_of "$crt")
    [ "$(served_serial "kd4.$D")" = "$first" ] || fail "Caddy does not serve the kd4.$D certificate it stored"
    ari_id=$("$ACME_PY" - "$crt" <<'PY'
import base64, sys
from cryptography import x509
cert = x509.load_pem_x509_certificate(open(sys.argv[1], "rb").read())
aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
n = cert.serial_number
b64 = lambda b: base64.urlsafe_b64encode(b).decode().rstrip("=")
# RFC 9773 4.1: base64url(AKI keyIdentifier) "." base64url(DER INTEGER bytes of the serial)
print(b64(aki) + "." + b64(n.to_bytes((n.bit_length() + 8) // 8, "big")))
PY
    )
    "$ACME_SERVER_HOOK" revoke "${first#serial=}" >"$w/log" 2>&1 || fail "server hook revoke kd4.$D: $(tail -n 5 "$w/log")"
    revoked_at=$SECONDS
    now=$first
    while ((SECONDS - revoked_at < 60)); do
      now=$(served_serial "kd4.$D")
      [ -n "$now" ] && [ "$now" != "$first" ] && break
      kill -0 "$caddy_pid" 2>/dev/null || fail "Caddy exited: $(tail -n 20 "$cd_dir/caddy-ari.log")"
      sleep 0.1
    done
    took=$((SECONDS - revoked_at))
    [ -n "$now" ] && [ "$now" != "$first" ] ||
      fail "Caddy still serves the revoked kd4.$D 60 s after the revocation: $(grep -i -E 'ari|renew|error' "$cd_dir/caddy-ari.log" | tail -n 5)"
    grep -q "needs renewal based on ARI window" "$cd_dir/caddy-ari.log" ||
      fail "Caddy renewed kd4.$D, but its log does not say ARI made it: $(grep -i renew "$cd_dir/caddy-ari.log" | tail -n 5)"
    crt=$(find "$cd_dir/data/certificates" -name "kd4.$D.crt" | head -n 1)
    [ "$(serial_of "$crt")" = "$now" ] || fail "Caddy serves $now for kd4.$D but stored $(serial_of "$crt")"
    split_chain "$crt" "$w/caddy-kd4"
    verify_cert "$w/caddy-kd4/leaf.pem" "$w/caddy-kd4/rest.pem" "DNS:kd4.$D"
    "$ACME_SERVER_HOOK" renewal-info "$ari_id" >"$w/log" 2>&1 ||
      fail "the server's log shows no renewalInfo answer for the revoked kd4.$D ($ari_id): $(tail -n 5 "$w/log")"
    kill "$caddy_pid"
    wait "$caddy_pid" 2>/dev/null || true
    caddy_pid=""
    pass "Caddy: renews kd4.$D by itself because renewalInfo said so after the server revoked it (new certificate served ${took} s after the revocation)"
  fi
fi

if wants protocol; then
  section "protocol cases (raw RFC 8555 requests, tests/acme/protocol.py)"
  "$ACME_PY" "$here/protocol.py" || fail "protocol cases"
  acme_passed=$((${acme_passed:-0} + $(cat "$w/protocol.passed" 2>/dev/null || echo 0)))
fi

printf '\nACME clients: %d cases passed against %s\n' "${acme_passed:-0}" "$ACME_DIRECTORY"
