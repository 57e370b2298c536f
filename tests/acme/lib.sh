# Shared by the ACME harness scripts (sourced, not run). Loopback only, no network.
#   acme_tools_check      fails unless every client and fixture is installed
#   free_port             prints a free TCP port on 127.0.0.1, never one it printed before
#                         in this script (two servers given one port fail to start)
#   wait_port PORT [S]    waits up to S s (default 20) for a listener on 127.0.0.1:PORT
#   pass/fail/section     the report lines; fail exits non-zero

KEYHOLD_ACME_VENV=${KEYHOLD_ACME_VENV:-/opt/keyhold-acme/venv}
CERTBOT=$KEYHOLD_ACME_VENV/bin/certbot
CADDY=$KEYHOLD_ACME_VENV/bin/caddy
ACME_PY=$KEYHOLD_ACME_VENV/bin/python3

acme_tools_check() {
  local missing=()
  command -v pebble >/dev/null || missing+=(pebble)
  command -v pebble-challtestsrv >/dev/null || missing+=(pebble-challtestsrv)
  command -v lego >/dev/null || missing+=(lego)
  command -v openssl >/dev/null || missing+=(openssl)
  command -v curl >/dev/null || missing+=(curl)
  [ -x "$CERTBOT" ] || missing+=("$CERTBOT")
  [ -x "$CADDY" ] || missing+=("$CADDY")
  if ((${#missing[@]})); then
    echo "FAIL: ACME harness tools missing: ${missing[*]} (run .ci/setup)" >&2
    exit 1
  fi
}

# The ports handed out so far, per script ($$ is the script's own shell, also in $(...)).
ACME_PORTS_GIVEN=${TMPDIR:-/tmp}/keyhold-acme-ports.$$
free_port() {
  "$ACME_PY" - "$ACME_PORTS_GIVEN" <<'PY'
import socket, sys
path = sys.argv[1]
try:
    given = set(open(path).read().split())
except FileNotFoundError:
    given = set()
held = []
while True:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    held.append(s)
    port = str(s.getsockname()[1])
    if port not in given:
        break
with open(path, "a") as f:
    f.write(port + "\n")
print(port)
PY
}

wait_port() {
  local i seconds=${2:-20}
  for i in $(seq 1 $((seconds * 10))); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "FAIL: nothing listens on 127.0.0.1:$1 after $seconds s" >&2
  return 1
}

section() { printf '\n== %s\n' "$*"; }
pass() { printf 'ok   %s (%ss)\n' "$*" "$SECONDS"; acme_passed=$((${acme_passed:-0} + 1)); }
fail() {
  printf 'FAIL %s\n' "$*" >&2
  exit 1
}
