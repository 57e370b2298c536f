//! A PKCS#10 request for one DNS name, DER written by hand.

use anyhow::Result;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};

use crate::client::Failure;

/// A DER TLV.
fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let n = content.len();
    if n < 0x80 {
        out.push(n as u8);
    } else if n < 0x100 {
        out.extend([0x81, n as u8]);
    } else {
        out.extend([0x82, (n >> 8) as u8, n as u8]);
    }
    out.extend_from_slice(content);
    out
}

/// A PKCS#10 CSR (RFC 2986) for a fresh P-256 key: CN and one dNSName, ECDSA-SHA256.
pub(crate) fn csr_for(name: &str, rng: &SystemRandom) -> Result<Vec<u8>, Failure> {
    let key = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING)
        .map_err(|_| Failure("client: cannot make a CSR key".into()))?;
    const EC_PUBLIC_KEY: &[u8] = &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
    const P256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
    const ECDSA_SHA256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];
    const CN: &[u8] = &[0x06, 0x03, 0x55, 0x04, 0x03];
    const EXTENSION_REQUEST: &[u8] = &[
        0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x0e,
    ];
    const SAN: &[u8] = &[0x06, 0x03, 0x55, 0x1d, 0x11];
    let subject = tlv(
        0x30,
        &tlv(
            0x31,
            &tlv(0x30, &[CN, &tlv(0x0c, name.as_bytes())].concat()),
        ),
    );
    let mut bits = vec![0u8];
    bits.extend_from_slice(key.public_key().as_ref());
    let spki = tlv(
        0x30,
        &[tlv(0x30, &[EC_PUBLIC_KEY, P256].concat()), tlv(0x03, &bits)].concat(),
    );
    let san = tlv(0x04, &tlv(0x30, &tlv(0x82, name.as_bytes())));
    let extensions = tlv(0x30, &tlv(0x30, &[SAN, &san].concat()));
    let attribute = tlv(0x30, &[EXTENSION_REQUEST, &tlv(0x31, &extensions)].concat());
    let info = tlv(
        0x30,
        &[
            &[0x02, 0x01, 0x00][..],
            &subject,
            &spki,
            &tlv(0xa0, &attribute),
        ]
        .concat(),
    );
    let sig = key
        .sign(rng, &info)
        .map_err(|_| Failure("client: cannot sign the CSR".into()))?;
    let mut sig_bits = vec![0u8];
    sig_bits.extend_from_slice(sig.as_ref());
    Ok(tlv(
        0x30,
        &[info, tlv(0x30, ECDSA_SHA256), tlv(0x03, &sig_bits)].concat(),
    ))
}
