"""A dead node's pending validation is finished by a live node, without any restart.

Node A and node B are two `keyhold serve` processes on one data directory. A client answers
an http-01 challenge on node A; A starts validating against a responder that holds the
connection open without answering. A is then killed (SIGKILL), the responder starts
answering, and the client polls the authorization through node B: B must take the
challenge over (A's heartbeat is 20 s old) and validate it. Run by failover.sh, which sets
ACME_DIRECTORY (node A), NODE_B_ACME (node B's https://HOST:PORT/acme), NODE_A_PID,
HTTP01_PORT and the variables protocol.py reads.
"""

import os
import signal
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import protocol as p  # noqa: E402  (reads the directory named by ACME_DIRECTORY)

ENV = os.environ
A_BASE = ENV["ACME_DIRECTORY"].rsplit("/directory", 1)[0]
B_BASE = ENV["NODE_B_ACME"]
answer = {"body": None}
seen = threading.Event()


def on_b(url):
    return url.replace(A_BASE, B_BASE)


def respond(conn):
    with conn:
        try:
            conn.recv(4096)
            seen.set()
            while answer["body"] is None:  # hold the validation open
                time.sleep(0.05)
            body = answer["body"].encode()
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        except OSError:
            pass  # node A died holding this connection


def responder():
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", int(ENV["HTTP01_PORT"])))
    s.listen(16)
    while True:
        conn, _ = s.accept()
        threading.Thread(target=respond, args=(conn,), daemon=True).start()


def main():
    threading.Thread(target=responder, daemon=True).start()
    key = p.ec.generate_private_key(p.ec.SECP256R1())
    kid = p.new_account(key)
    new_order = p.directory["newOrder"]
    r = p.post(new_order, p.jws(key, new_order, {"identifiers": [{"type": "ip", "value": "127.0.0.1"}]}, kid=kid))
    if r.status_code != 201:
        raise p.CaseFailed(f"newOrder: HTTP {r.status_code}: {r.text[:300]}")
    authz_url = r.json()["authorizations"][0]
    authz = p.post(authz_url, p.jws(key, authz_url, None, kid=kid)).json()
    chall = next(c for c in authz["challenges"] if c["type"] == "http-01")
    r = p.post(chall["url"], p.jws(key, chall["url"], {}, kid=kid))
    if r.status_code != 200 or r.json().get("status") != "processing":
        raise p.CaseFailed(f"challenge answer on node A: HTTP {r.status_code}: {r.text[:300]}")
    if not seen.wait(20):
        raise p.CaseFailed("node A never connected to the http-01 responder")
    os.kill(int(ENV["NODE_A_PID"]), signal.SIGKILL)
    killed = time.monotonic()
    answer["body"] = f"{chall['token']}.{p.thumbprint(key)}"
    p.directory = p.http.get(B_BASE + "/directory").json()  # nonces from node B from now on
    r = p.post(on_b(authz_url), p.jws(key, on_b(authz_url), None, kid=on_b(kid)))
    if r.json().get("status") != "pending":
        raise p.CaseFailed(f"authorization through node B right after the kill: {r.text[:300]}")
    p.poll(key, on_b(kid), on_b(authz_url), "valid", seconds=60)
    took = time.monotonic() - killed
    # Node B takes a node for dead after 20 s without heartbeat, and looks every 5 s.
    if took > 40:
        raise p.CaseFailed(f"node B took {took:.1f} s to finish node A's validation")
    print(f"ok   failover: node B validated the challenge node A was validating when killed, {took:.1f} s after the kill", flush=True)


if __name__ == "__main__":
    try:
        main()
    except (p.CaseFailed, p.requests.RequestException, KeyError) as e:
        print(f"FAIL failover: {e!r}", file=sys.stderr)
        sys.exit(1)
