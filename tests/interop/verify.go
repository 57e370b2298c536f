// Go's crypto/x509 checks Keyhold's chains and CRLs. Standard library only (GO111MODULE=off).
//
//	go run verify.go chain ROOT.pem LEAF.pem INTERMEDIATES.pem server|client|codesign|any [NAME]
//	go run verify.go crl ISSUER.pem CRL.der [REVOKED_SERIAL_HEX]
package main

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"strings"
	"time"
)

func certs(path string) []*x509.Certificate {
	data, err := os.ReadFile(path)
	if err != nil {
		fail("%v", err)
	}
	var out []*x509.Certificate
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			fail("%s: %v", path, err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		fail("%s: no certificate", path)
	}
	return out
}

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "go verify: "+format+"\n", args...)
	os.Exit(1)
}

func main() {
	if len(os.Args) < 2 {
		fail("usage: chain|crl ...")
	}
	switch os.Args[1] {
	case "chain":
		chain(os.Args[2:])
	case "crl":
		crl(os.Args[2:])
	default:
		fail("unknown command %s", os.Args[1])
	}
}

func chain(args []string) {
	if len(args) < 4 {
		fail("chain ROOT LEAF INTERMEDIATES USAGE [NAME]")
	}
	roots, inters := x509.NewCertPool(), x509.NewCertPool()
	for _, c := range certs(args[0]) {
		roots.AddCert(c)
	}
	leaf := certs(args[1])[0]
	for _, c := range certs(args[2]) {
		inters.AddCert(c)
	}
	usages := map[string][]x509.ExtKeyUsage{
		"server":   {x509.ExtKeyUsageServerAuth},
		"client":   {x509.ExtKeyUsageClientAuth},
		"codesign": {x509.ExtKeyUsageCodeSigning},
		"any":      {x509.ExtKeyUsageAny},
	}[args[3]]
	if usages == nil {
		fail("unknown usage %s", args[3])
	}
	opts := x509.VerifyOptions{Roots: roots, Intermediates: inters, KeyUsages: usages, CurrentTime: time.Now()}
	if len(args) > 4 {
		opts.DNSName = args[4]
	}
	chains, err := leaf.Verify(opts)
	if err != nil {
		fail("%s (%s): %v", args[1], args[3], err)
	}
	// Key usage as NSS wants it: RSA server keys encipher keys, EC keys never do.
	ku := leaf.KeyUsage
	if leaf.IsCA {
		if ku&x509.KeyUsageCertSign == 0 {
			fail("%s: a CA without keyCertSign", args[1])
		}
	} else {
		if ku&x509.KeyUsageDigitalSignature == 0 {
			fail("%s: no digitalSignature", args[1])
		}
		rsa := leaf.PublicKeyAlgorithm == x509.RSA
		if !rsa && ku&x509.KeyUsageKeyEncipherment != 0 {
			fail("%s: keyEncipherment on a non-RSA key", args[1])
		}
		if rsa && args[3] == "server" && ku&x509.KeyUsageKeyEncipherment == 0 {
			fail("%s: an RSA server key without keyEncipherment", args[1])
		}
	}
	fmt.Printf("go: %s verified for %s (%d chain(s), %d certificates)\n", args[1], args[3], len(chains), len(chains[0]))
}

func crl(args []string) {
	if len(args) < 2 {
		fail("crl ISSUER CRL [REVOKED_SERIAL_HEX]")
	}
	issuer := certs(args[0])[0]
	der, err := os.ReadFile(args[1])
	if err != nil {
		fail("%v", err)
	}
	list, err := x509.ParseRevocationList(der)
	if err != nil {
		fail("%s: %v", args[1], err)
	}
	if err := list.CheckSignatureFrom(issuer); err != nil {
		fail("%s: signature: %v", args[1], err)
	}
	if !list.NextUpdate.After(time.Now()) {
		fail("%s: nextUpdate %v has passed", args[1], list.NextUpdate)
	}
	if len(args) > 2 {
		want, ok := new(big.Int).SetString(strings.TrimPrefix(args[2], "0x"), 16)
		if !ok {
			fail("bad serial %s", args[2])
		}
		found := false
		for _, e := range list.RevokedCertificates {
			if e.SerialNumber.Cmp(want) == 0 {
				found = true
			}
		}
		if !found {
			fail("%s: serial %s not listed", args[1], args[2])
		}
	}
	fmt.Printf("go: %s parsed, signed by %s, number %v, %d entries\n", args[1], issuer.Subject, list.Number, len(list.RevokedCertificates))
}
