"""Python `cryptography` path validation (RFC 5280 + CA/B-style policy) of Keyhold's chains.

usage: validate.py ROOT.pem server|client LEAF.pem INTERMEDIATES.pem NAME...
Each NAME is a DNS name or an IP address the leaf must be valid for (server: every name is
checked as the server identity; client: the validated leaf's SANs must hold every name).
Exits 1 naming what failed.
"""

import datetime
import ipaddress
import sys

from cryptography import x509
from cryptography.x509 import DNSName, IPAddress
from cryptography.x509.verification import PolicyBuilder, Store


def main() -> int:
    root_pem, kind, leaf_pem, inter_pem, *names = sys.argv[1:]
    roots = x509.load_pem_x509_certificates(open(root_pem, "rb").read())
    leaf = x509.load_pem_x509_certificate(open(leaf_pem, "rb").read())
    inters = x509.load_pem_x509_certificates(open(inter_pem, "rb").read())
    builder = PolicyBuilder().store(Store(roots)).time(datetime.datetime.now(datetime.timezone.utc))
    if kind == "server":
        for name in names:
            try:
                subject = IPAddress(ipaddress.ip_address(name))
            except ValueError:
                subject = DNSName(name)
            chain = builder.build_server_verifier(subject).verify(leaf, inters)
            print(f"server {leaf_pem} valid for {name}: chain of {len(chain)}")
    elif kind == "client":
        verified = builder.build_client_verifier().verify(leaf, inters)
        sans = verified.subjects or []
        have = {str(s.value) for s in sans}
        missing = [n for n in names if n not in have]
        if missing:
            print(f"client {leaf_pem}: names {missing} not in {sorted(have)}", file=sys.stderr)
            return 1
        print(f"client {leaf_pem} valid for {names}: chain of {len(verified.chain)}")
    else:
        print(f"unknown kind {kind}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as e:  # every failure names the file and the reason
        print(f"validation failed for {sys.argv[3:]}: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
