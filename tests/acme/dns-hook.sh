#!/usr/bin/env bash
# Publishes and removes dns-01 TXT records through pebble-challtestsrv's management API
# ($CHALLTESTSRV_MGMT, e.g. http://127.0.0.1:8055), the mock DNS the server under test asks.
#   dns-hook.sh certbot-auth | certbot-cleanup      (certbot --manual hooks: CERTBOT_DOMAIN, CERTBOT_VALIDATION)
#   dns-hook.sh present|cleanup FQDN VALUE          (lego's `exec` DNS provider)
set -euo pipefail
: "${CHALLTESTSRV_MGMT:?set CHALLTESTSRV_MGMT to the pebble-challtestsrv management URL}"
post() { curl -fsS -o /dev/null -X POST -d "$2" "$CHALLTESTSRV_MGMT/$1"; }
case "$1" in
  certbot-auth) post set-txt "{\"host\":\"_acme-challenge.${CERTBOT_DOMAIN#\*.}.\",\"value\":\"$CERTBOT_VALIDATION\"}" ;;
  certbot-cleanup) post clear-txt "{\"host\":\"_acme-challenge.${CERTBOT_DOMAIN#\*.}.\"}" ;;
  present) post set-txt "{\"host\":\"$2\",\"value\":\"$3\"}" ;;
  cleanup) post clear-txt "{\"host\":\"$2\"}" ;;
  *) echo "dns-hook.sh: unknown mode $1" >&2; exit 2 ;;
esac
