//! Thousands of malformed requests from a replayable generator: 4xx, and the server stays healthy.

use super::*;

/// A tiny deterministic generator, so a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    /// Between 1 and `max` random bytes.
    fn bytes(&mut self, max: usize) -> Vec<u8> {
        let n = 1 + self.below(max);
        (0..n).map(|_| self.next() as u8).collect()
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

#[test]
fn thousands_of_malformed_requests_get_4xx_and_the_server_stays_healthy() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let server = Server::start(tmp.path(), &dir);
    let token = create_token(&dir, "fuzz", "admin");
    let mut rng = Rng(0x6b65_7968_6f6c_6421);
    let paths = [
        "/api/v1/certificates",
        "/api/v1/certificates/0a1b",
        "/api/v1/certificates/zz",
        "/api/v1/certificates/0a1b/revoke",
        "/api/v1/certificates/zz/revoke",
        "/api/v1/sign",
        "/api/v1/requests/1",
        "/api/v1/requests/-1",
        "/ca/root.pem",
        "/ca/issuing-ca/chain.pem",
        "/ca/..%2f..%2fetc%2fpasswd",
        "/healthz",
        "/readyz",
        "/api/v1/openapi.json",
        "/metrics",
        "/%ff%fe",
        "/api/v1/certificates?limit=99999999999999999999",
        "/crl/nope.crl",
        "/crl/issuing-ca",
    ];
    let methods = ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"];
    let types = [
        "application/json",
        "text/plain",
        "application/x-www-form-urlencoded",
        "",
        "application/json; charset=utf-8",
    ];
    let bodies = [
        "{",
        "[]",
        "null",
        r#"{"profile":"tls-server"}"#,
        r#"{"profile":"tls-server","csr":"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"}"#,
        r#"{"profile":"tls-server","csr":"x","extra":1}"#,
        r#"{"profile":"sub-ca","csr":"x"}"#,
        r#"{"profile":null,"csr":[1,2,3]}"#,
    ];
    let n = 2500;
    let mut answered = 0;
    for i in 0..n {
        let method = rng.pick(&methods);
        let mut path = rng.pick(&paths).to_owned();
        // Every request carries at least one mistake so that no answer may be 2xx.
        let mistake = rng.below(6);
        match mistake {
            0 => path.push_str(&format!("?zz{}=1", rng.next())),
            1 => path = format!("/{}", hex_str(&rng.bytes(40))),
            _ => {}
        }
        let auth = match rng.below(4) {
            0 => String::new(),
            1 => format!("Authorization: Bearer kh_{}\r\n", hex_str(&rng.bytes(32))),
            2 => "Authorization: Basic Zm9vOmJhcg==\r\n".to_owned(),
            _ => format!("Authorization: Bearer {token}\r\n"),
        };
        let valid_auth = auth.contains(&token);
        let body: Vec<u8> = match rng.below(4) {
            0 => rng.bytes(2048),
            1 => rng.pick(&bodies).as_bytes().to_vec(),
            2 => vec![b'{'; 70 * 1024],
            _ => Vec::new(),
        };
        let ctype = rng.pick(&types);
        // Public routes ignore query strings (cache busters), so a real one would rightly
        // answer 200: misspell it instead.
        let public = [
            "/healthz",
            "/readyz",
            "/metrics",
            "/api/v1/openapi.json",
            "/ca/root",
            "/ca/issuing",
        ]
        .iter()
        .any(|p| path.starts_with(p));
        if public {
            let at = path.find('?').unwrap_or(path.len());
            path.insert(at, 'x');
        }
        if mistake > 1 && valid_auth && method == "GET" && path.starts_with("/api/v1/certificates?")
        {
            path.push('x');
        }
        if mistake > 1 && valid_auth && method == "GET" && path == "/api/v1/certificates" {
            path.push_str("?cursor=nope");
        }
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n");
        if !ctype.is_empty() {
            req.push_str(&format!("Content-Type: {ctype}\r\n"));
        }
        req.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
        let mut raw = req.into_bytes();
        raw.extend_from_slice(&body);
        if i % 50 == 0 {
            raw = rng.bytes(300); // not HTTP at all
        }
        if let Some(r) = http(server.port, &raw) {
            answered += 1;
            assert!(
                (400..500).contains(&r.status),
                "request {i} ({method} {path}, auth {valid_auth}, {ctype:?}) got {}: {}",
                r.status,
                String::from_utf8_lossy(&r.body)
            );
        }
    }
    assert!(answered > n * 9 / 10, "only {answered} of {n} answered");
    // OCSP answers malformed requests with an OCSP malformedRequest (RFC 6960 2.3), in a
    // 200: garbage there must get that or a 4xx, never a 5xx.
    for i in 0..500 {
        let body = rng.bytes(600);
        let raw = if i % 2 == 0 {
            let mut raw = format!(
                "POST /ocsp HTTP/1.1\r\nHost: x\r\nContent-Type: application/ocsp-request\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            )
            .into_bytes();
            raw.extend_from_slice(&body);
            raw
        } else {
            format!(
                "GET /ocsp/{} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                hex_str(&body[..body.len().min(100)])
            )
            .into_bytes()
        };
        let r = http(server.port, &raw).expect("an answer");
        assert!(
            r.status == 200
                && r.head
                    .to_ascii_lowercase()
                    .contains("application/ocsp-response")
                || (400..500).contains(&r.status),
            "ocsp request {i}: {}",
            r.status
        );
    }
    assert_eq!(server.get("/healthz", None).status, 200);
    assert_eq!(server.get("/readyz", None).status, 200);
    let logs = server.logs();
    assert!(!logs.contains("panicked"), "{logs}");
}

fn hex_str(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
