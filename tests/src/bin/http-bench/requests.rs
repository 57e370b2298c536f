//! The HTTP request sent for each input, per `--mode`.

use ca_e2e::report::json_string;
use sha2::Digest as _;

use super::{Mode, Options};

/// The HTTP request for one input: a CSR (PEM text) or an OCSP request (DER).
pub(crate) fn http_request(options: &Options, input: &[u8]) -> Vec<u8> {
    let host = &options.host;
    match options.mode {
        Mode::Issue => {
            let body = format!(
                "{{\"profile\":{},\"csr\":{}}}",
                json_string(&options.profile),
                json_string(&String::from_utf8_lossy(input))
            );
            format!(
                "POST /api/v1/certificates HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {}\r\n\
                 Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                options.token,
                body.len()
            )
            .into_bytes()
        }
        Mode::CfsslSign => {
            let body = format!(
                "{{\"certificate_request\":{}}}",
                json_string(&String::from_utf8_lossy(input))
            );
            format!(
                "POST /api/v1/cfssl/sign HTTP/1.1\r\nHost: {host}\r\n\
                 Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_bytes()
        }
        Mode::OcspPost => {
            let path = if options.path.is_empty() {
                "/"
            } else {
                &options.path
            };
            let mut request = format!(
                "POST {path} HTTP/1.1\r\nHost: {host}\r\n\
                 Content-Type: application/ocsp-request\r\nContent-Length: {}\r\n\r\n",
                input.len()
            )
            .into_bytes();
            request.extend_from_slice(input);
            request
        }
        Mode::OcspGet => format!(
            "GET {}/{} HTTP/1.1\r\nHost: {host}\r\n\r\n",
            options.path,
            percent_encode(&base64(input))
        )
        .into_bytes(),
        Mode::Codesign => {
            let digest: String = sha2::Sha256::digest(input)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            let body = format!(
                "{{\"key\":{},\"digest\":\"{digest}\",\"digest_algorithm\":\"sha256\"}}",
                json_string(&options.key)
            );
            format!(
                "POST /api/v1/sign HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {}\r\n\
                 Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                options.token,
                body.len()
            )
            .into_bytes()
        }
    }
}

/// Standard base64 with padding (RFC 4648 section 4), as RFC 6960 appendix A.1 asks.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// `+`, `/` and `=` percent-encoded, so the path survives every server's decoding.
fn percent_encode(s: &str) -> String {
    s.replace('+', "%2B")
        .replace('/', "%2F")
        .replace('=', "%3D")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_pads_as_rfc_4648_says() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(&[0xfb, 0xff]), "+/8=");
        assert_eq!(percent_encode("+/8="), "%2B%2F8%3D");
    }
}
