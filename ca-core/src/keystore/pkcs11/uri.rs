//! RFC 7512 PKCS#11 URIs: the names Keyhold gives keys in a token
//! (`pkcs11:token=ca-hsm;object=root-2025;type=private`).
//!
//! Invariant: `parse(uri.to_string()) == uri` for every [`Pkcs11Uri`]; attribute values are
//! held decoded and percent-encoded only when formatted.

use std::fmt;

/// Why a string is not a PKCS#11 URI. The message never repeats attribute values, since a
/// URI may carry a `pin-value`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid pkcs#11 uri: {0}")]
pub struct UriError(String);

/// The object classes RFC 7512 2.3 names in `type=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ObjectType {
    /// `public`: CKO_PUBLIC_KEY.
    Public,
    /// `private`: CKO_PRIVATE_KEY.
    Private,
    /// `cert`: CKO_CERTIFICATE.
    Cert,
    /// `secret-key`: CKO_SECRET_KEY.
    SecretKey,
    /// `data`: CKO_DATA.
    Data,
}

impl ObjectType {
    /// The value as written in a URI.
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectType::Public => "public",
            ObjectType::Private => "private",
            ObjectType::Cert => "cert",
            ObjectType::SecretKey => "secret-key",
            ObjectType::Data => "data",
        }
    }

    fn parse(value: &str) -> Result<Self, UriError> {
        match value {
            "public" => Ok(ObjectType::Public),
            "private" => Ok(ObjectType::Private),
            "cert" => Ok(ObjectType::Cert),
            "secret-key" => Ok(ObjectType::SecretKey),
            "data" => Ok(ObjectType::Data),
            _ => Err(UriError(
                "type must be one of public, private, cert, secret-key, data".into(),
            )),
        }
    }
}

/// A parsed PKCS#11 URI.
///
/// Keyhold uses `token`, `object` and `type`; every other attribute is kept, in order, so
/// that a URI written by another tool survives a round trip. RFC 7512 2.5: a consumer that
/// meets a path attribute it does not understand must treat the URI as matching nothing;
/// [`Pkcs11Uri::other_path`] lets callers apply that rule.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Pkcs11Uri {
    /// `token=`: the token label (CK_TOKEN_INFO label).
    pub token: Option<String>,
    /// `object=`: the object label (CKA_LABEL).
    pub object: Option<String>,
    /// `type=`: the object class.
    pub object_type: Option<ObjectType>,
    /// `id=`: the object ID (CKA_ID), as bytes.
    pub id: Option<Vec<u8>>,
    /// Every other path attribute (`manufacturer`, `serial`, `slot-id`, vendor
    /// attributes ...), decoded, in the order written.
    pub other_path: Vec<(String, String)>,
    /// The query attributes (`pin-source`, `pin-value`, `module-path` ...), decoded, in the
    /// order written.
    pub query: Vec<(String, String)>,
}

impl Pkcs11Uri {
    /// The URI of a private key object in a token.
    pub fn private_key(token: &str, object: &str) -> Self {
        Pkcs11Uri {
            token: Some(token.to_owned()),
            object: Some(object.to_owned()),
            object_type: Some(ObjectType::Private),
            ..Pkcs11Uri::default()
        }
    }

    /// Parses a URI.
    ///
    /// Unknown attributes are kept, not refused (RFC 7512 2.3 allows vendor attributes;
    /// future standard ones look the same). Fails with [`UriError`] if the scheme is not
    /// `pkcs11:`, an attribute has no `=`, a path attribute repeats (RFC 7512 2.3), a
    /// character is not allowed unencoded, a percent-escape is broken, a text value is not
    /// UTF-8, or `type` has an unknown value.
    pub fn parse(uri: &str) -> Result<Self, UriError> {
        let rest = uri
            .get(..7)
            .filter(|scheme| scheme.eq_ignore_ascii_case("pkcs11:"))
            .map(|_| &uri[7..])
            .ok_or_else(|| UriError("it must start with \"pkcs11:\"".into()))?;
        let (path, query) = match rest.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (rest, None),
        };

        let mut parsed = Pkcs11Uri::default();
        let mut seen: Vec<String> = Vec::new();
        if !path.is_empty() {
            for attribute in path.split(';') {
                let (name, raw) = split_attribute(attribute, "path")?;
                if seen.iter().any(|s| s == name) {
                    return Err(UriError(format!(
                        "path attribute {name:?} appears more than once"
                    )));
                }
                seen.push(name.to_owned());
                let value = percent_decode(raw, is_path_char)?;
                match name {
                    "token" => parsed.token = Some(utf8(name, value)?),
                    "object" => parsed.object = Some(utf8(name, value)?),
                    "type" => parsed.object_type = Some(ObjectType::parse(&utf8(name, value)?)?),
                    "id" => parsed.id = Some(value),
                    _ => parsed
                        .other_path
                        .push((name.to_owned(), utf8(name, value)?)),
                }
            }
        }
        if let Some(query) = query {
            if query.is_empty() {
                return Err(UriError("empty query after \"?\"".into()));
            }
            for attribute in query.split('&') {
                let (name, raw) = split_attribute(attribute, "query")?;
                let value = percent_decode(raw, is_query_char)?;
                parsed.query.push((name.to_owned(), utf8(name, value)?));
            }
        }
        Ok(parsed)
    }
}

impl std::str::FromStr for Pkcs11Uri {
    type Err = UriError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Pkcs11Uri::parse(s)
    }
}

impl fmt::Display for Pkcs11Uri {
    /// Writes the URI with the standard attributes first (token, object, type, id), every
    /// value percent-encoded except RFC 3986 unreserved characters, and `id` encoded
    /// byte by byte as RFC 7512 2.3 recommends.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("pkcs11:")?;
        let mut path: Vec<(&str, String)> = Vec::new();
        if let Some(token) = &self.token {
            path.push(("token", percent_encode(token.as_bytes())));
        }
        if let Some(object) = &self.object {
            path.push(("object", percent_encode(object.as_bytes())));
        }
        if let Some(kind) = self.object_type {
            path.push(("type", kind.as_str().to_owned()));
        }
        if let Some(id) = &self.id {
            path.push(("id", id.iter().map(|b| format!("%{b:02X}")).collect()));
        }
        for (name, value) in &self.other_path {
            path.push((name, percent_encode(value.as_bytes())));
        }
        for (i, (name, value)) in path.iter().enumerate() {
            let separator = if i == 0 { "" } else { ";" };
            write!(f, "{separator}{name}={value}")?;
        }
        for (i, (name, value)) in self.query.iter().enumerate() {
            let separator = if i == 0 { "?" } else { "&" };
            write!(f, "{separator}{name}={}", percent_encode(value.as_bytes()))?;
        }
        Ok(())
    }
}

impl fmt::Debug for Pkcs11Uri {
    /// Like `Display`, but a `pin-value` query attribute (RFC 7512 2.4) is redacted.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut shown = self.clone();
        for (name, value) in &mut shown.query {
            if name == "pin-value" {
                *value = "redacted".into();
            }
        }
        write!(f, "Pkcs11Uri({shown})")
    }
}

/// Splits `name=value`; names are `1*(ALPHA / DIGIT / "-" / "_")` (RFC 7512 2.3,
/// pk11-v-attr-nm-char, which covers the standard names too).
fn split_attribute<'a>(attribute: &'a str, part: &str) -> Result<(&'a str, &'a str), UriError> {
    let (name, value) = attribute
        .split_once('=')
        .ok_or_else(|| UriError(format!("{part} attribute without \"=\"")))?;
    let name_ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if name_ok {
        Ok((name, value))
    } else {
        Err(UriError(format!(
            "{part} attribute name {name:?} is empty or has characters other than A-Z a-z 0-9 - _"
        )))
    }
}

/// RFC 3986 2.3 unreserved.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// RFC 7512 2.3 pk11-res-avail.
fn is_res_avail(b: u8) -> bool {
    matches!(
        b,
        b':' | b'[' | b']' | b'@' | b'!' | b'$' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b'='
    )
}

/// RFC 7512 2.3 pk11-pchar, unencoded: unreserved / pk11-path-res-avail (adds "&").
fn is_path_char(b: u8) -> bool {
    is_unreserved(b) || is_res_avail(b) || b == b'&'
}

/// RFC 7512 2.3 pk11-qchar, unencoded: unreserved / pk11-query-res-avail (adds "/", "?",
/// "|"; "&" separates query attributes).
fn is_query_char(b: u8) -> bool {
    is_unreserved(b) || is_res_avail(b) || matches!(b, b'/' | b'?' | b'|')
}

fn percent_decode(raw: &str, allowed: fn(u8) -> bool) -> Result<Vec<u8>, UriError> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| UriError("\"%\" not followed by two hex digits".into()))?;
            out.push(hex);
            i += 3;
        } else if allowed(b) {
            out.push(b);
            i += 1;
        } else {
            return Err(UriError(format!(
                "character {:?} must be percent-encoded",
                char::from(b)
            )));
        }
    }
    Ok(out)
}

fn percent_encode(value: &[u8]) -> String {
    let mut out = String::with_capacity(value.len());
    for &b in value {
        if is_unreserved(b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn utf8(name: &str, value: Vec<u8>) -> Result<String, UriError> {
    String::from_utf8(value).map_err(|_| UriError(format!("{name} is not UTF-8 once decoded")))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn formats_keyholds_key_uris() {
        let uri = Pkcs11Uri::private_key("ca-hsm", "root-2025");
        assert_eq!(
            uri.to_string(),
            "pkcs11:token=ca-hsm;object=root-2025;type=private"
        );
        assert_eq!(Pkcs11Uri::parse(&uri.to_string()).unwrap(), uri);
    }

    #[test]
    fn percent_encoding_round_trips() {
        let uri = Pkcs11Uri {
            token: Some("My Token; v2 / 100%".into()),
            object: Some("clé=ü?&#".into()),
            object_type: Some(ObjectType::Private),
            id: Some(vec![0x00, 0x3b, 0xff]),
            ..Pkcs11Uri::default()
        };
        let text = uri.to_string();
        assert_eq!(
            text,
            "pkcs11:token=My%20Token%3B%20v2%20%2F%20100%25;\
             object=cl%C3%A9%3D%C3%BC%3F%26%23;type=private;id=%00%3B%FF"
        );
        assert_eq!(Pkcs11Uri::parse(&text).unwrap(), uri);
    }

    #[test]
    fn parses_the_rfc_7512_examples() {
        let uri = Pkcs11Uri::parse(
            "pkcs11:token=The%20Software%20PKCS%2311%20Softtoken;\
             manufacturer=Snake%20Oil,%20Inc.;model=1.0;object=my-certificate;\
             type=cert;id=%69%95%3E%5C%F4%BD%EC%91;serial=\
             ?pin-source=file:/etc/token_pin",
        )
        .unwrap();
        assert_eq!(uri.token.as_deref(), Some("The Software PKCS#11 Softtoken"));
        assert_eq!(uri.object.as_deref(), Some("my-certificate"));
        assert_eq!(uri.object_type, Some(ObjectType::Cert));
        assert_eq!(
            uri.id.as_deref(),
            Some(&[0x69, 0x95, 0x3e, 0x5c, 0xf4, 0xbd, 0xec, 0x91][..])
        );
        assert_eq!(
            uri.other_path,
            vec![
                ("manufacturer".into(), "Snake Oil, Inc.".into()),
                ("model".into(), "1.0".into()),
                ("serial".into(), String::new()),
            ]
        );
        assert_eq!(
            uri.query,
            vec![("pin-source".into(), "file:/etc/token_pin".into())]
        );
        assert_eq!(Pkcs11Uri::parse("pkcs11:").unwrap(), Pkcs11Uri::default());
        assert!(Pkcs11Uri::parse("pkcs11:object=my-pubkey;type=public").is_ok());
        assert!(Pkcs11Uri::parse("pkcs11:token=Software%20PKCS%2311%20softtoken;manufacturer=Snake%20Oil,%20Inc.?pin-value=the-pin").is_ok());
    }

    #[test]
    fn tolerates_and_keeps_unknown_attributes() {
        let text =
            "pkcs11:token=t;x-vendor-attr=v%20x;object=o?x-vendor-query=1&module-name=softhsm2";
        let uri = Pkcs11Uri::parse(text).unwrap();
        assert_eq!(uri.token.as_deref(), Some("t"));
        assert_eq!(uri.object.as_deref(), Some("o"));
        assert_eq!(uri.other_path, vec![("x-vendor-attr".into(), "v x".into())]);
        assert_eq!(uri.query.len(), 2);
        // standard attributes are written first, the rest keep their order
        let again = Pkcs11Uri::parse(&uri.to_string()).unwrap();
        assert_eq!(again, uri);
    }

    #[test]
    fn rejects_malformed_uris_with_a_reason() {
        let cases = [
            ("https://example.com", "must start with"),
            ("pkcs11", "must start with"),
            ("pkcs11:token", "without \"=\""),
            ("pkcs11:token=a;;object=b", "without \"=\""),
            ("pkcs11:token=a;", "without \"=\""),
            ("pkcs11:=a", "attribute name"),
            ("pkcs11:token=a;token=b", "more than once"),
            ("pkcs11:token=a b", "must be percent-encoded"),
            ("pkcs11:token=a/b", "must be percent-encoded"),
            ("pkcs11:token=%4", "two hex digits"),
            ("pkcs11:token=%zz", "two hex digits"),
            ("pkcs11:object=%FF", "not UTF-8"),
            ("pkcs11:type=secret", "type must be"),
            ("pkcs11:token=a?", "empty query"),
        ];
        for (text, reason) in cases {
            let err = Pkcs11Uri::parse(text).expect_err(text);
            assert!(err.to_string().contains(reason), "{text}: {err}");
        }
    }

    #[test]
    fn debug_redacts_a_pin_value() {
        let uri = Pkcs11Uri::parse("pkcs11:token=t?pin-value=1234").unwrap();
        assert!(!format!("{uri:?}").contains("1234"));
        assert!(uri.to_string().contains("pin-value=1234"));
    }
}
