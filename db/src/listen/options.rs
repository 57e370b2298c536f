//! The libpq TLS options of a database URL, read here because the `postgres` crate rejects
//! them (`sslmode=verify-ca`, `verify-full`, `sslrootcert`): [`split`] takes them out and
//! hands back the rest for the crate. Both URL forms libpq takes are read:
//! `postgres://...?sslmode=verify-full&sslrootcert=/path` and
//! `host=... sslmode=verify-full sslrootcert=/path`.

use std::path::PathBuf;

/// libpq's `sslmode`, as the listening connection honours it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// No TLS.
    Disable,
    /// TLS if the server offers it, not verified (libpq's default; `allow` is read as this).
    Prefer,
    /// TLS or no connection, not verified.
    Require,
    /// TLS, the server's certificate chaining to `sslrootcert`.
    VerifyCa,
    /// As `VerifyCa`, and the certificate names the host connected to.
    VerifyFull,
}

/// What [`split`] read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Split {
    pub mode: Mode,
    /// `sslrootcert`: a PEM file of the certificates to trust.
    pub root: Option<PathBuf>,
    /// `sslcert` and `sslkey`: the client's certificate (chain) and key, PEM files.
    pub client: Option<(PathBuf, PathBuf)>,
    /// The URL without the options read here, for the `postgres` crate.
    pub rest: String,
}

/// Options read (and removed) here; every other option is left for the `postgres` crate,
/// which refuses those it does not know.
const SSLMODE: &str = "sslmode";
const SSLROOTCERT: &str = "sslrootcert";
const SSLCERT: &str = "sslcert";
const SSLKEY: &str = "sslkey";
/// libpq options that change nothing this connection does, removed so the crate accepts
/// the URL: SNI is sent for host names anyway, and compression is off in TLS 1.3 and here.
const IGNORED: [&str; 2] = ["sslsni", "sslcompression"];

/// Reads the TLS options out of `url`. Errors name the option that is wrong, never the rest
/// of the URL (which may hold a password).
pub(crate) fn split(url: &str) -> Result<Split, String> {
    let mut mode = None;
    let mut root = None;
    let mut cert = None;
    let mut client_key = None;
    let mut take = |key: &str, value: &str| -> Result<bool, String> {
        match key {
            SSLMODE => mode = Some(value.to_owned()),
            SSLROOTCERT => root = Some(value.to_owned()),
            SSLCERT => cert = Some(value.to_owned()).filter(|v| !v.is_empty()),
            SSLKEY => client_key = Some(value.to_owned()).filter(|v| !v.is_empty()),
            k if IGNORED.contains(&k) => {}
            _ => return Ok(false),
        }
        Ok(true)
    };
    let rest = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        split_uri(url, &mut take)?
    } else {
        split_key_values(url, &mut take)?
    };
    let mut mode = match mode.as_deref() {
        None | Some("prefer") | Some("allow") => Mode::Prefer,
        Some("disable") => Mode::Disable,
        Some("require") => Mode::Require,
        Some("verify-ca") => Mode::VerifyCa,
        Some("verify-full") => Mode::VerifyFull,
        Some(other) => {
            return Err(format!(
                "sslmode \"{other}\" is not one of disable, allow, prefer, require, verify-ca, verify-full"
            ));
        }
    };
    let root = match root.as_deref() {
        None | Some("") => None,
        Some("system") => {
            return Err(
                "sslrootcert=system (the system's roots) is not supported on the \
                        notice connection: name a PEM file"
                    .into(),
            );
        }
        Some(path) => Some(PathBuf::from(path)),
    };
    match (mode, &root) {
        // As libpq: with a root file named, `require` verifies the chain.
        (Mode::Require, Some(_)) => mode = Mode::VerifyCa,
        (Mode::VerifyCa | Mode::VerifyFull, None) => {
            return Err(format!(
                "sslmode={} needs sslrootcert (a PEM file): libpq's default \
                 ~/.postgresql/root.crt is not read for the notice connection",
                if mode == Mode::VerifyCa {
                    "verify-ca"
                } else {
                    "verify-full"
                }
            ));
        }
        _ => {}
    }
    let client = match (cert, client_key) {
        (Some(cert), Some(key)) => Some((PathBuf::from(cert), PathBuf::from(key))),
        (None, None) => None,
        _ => {
            return Err(
                "sslcert and sslkey go together on the notice connection: libpq's \
                        defaults in ~/.postgresql are not read"
                    .into(),
            );
        }
    };
    Ok(Split {
        mode,
        root,
        client,
        rest,
    })
}

type Take<'a> = dyn FnMut(&str, &str) -> Result<bool, String> + 'a;

/// `postgres://...?k=v&k=v`: drops the query parameters `take` takes.
fn split_uri(url: &str, take: &mut Take<'_>) -> Result<String, String> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok(url.to_owned());
    };
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if !take(&decode(key)?, &decode(value)?)? {
            kept.push(pair);
        }
    }
    Ok(if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    })
}

/// Percent-decoding of a URL query's key or value.
fn decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or("a bad %-escape in the database URL's options")?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "the database URL's options are not UTF-8".to_owned())
}

/// `k=v k='v v'`: drops the pairs `take` takes and writes the others back, quoted.
fn split_key_values(s: &str, take: &mut Take<'_>) -> Result<String, String> {
    let mut chars = s.chars().peekable();
    let mut kept = Vec::new();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            break;
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return Err(format!("the database URL's option \"{key}\" has no value"));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    Some('\'') => break,
                    Some('\\') => value.extend(chars.next()),
                    Some(c) => value.push(c),
                    None => return Err(format!("the value of \"{key}\" has no closing quote")),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    value.extend(chars.next());
                } else {
                    value.push(c);
                }
            }
        }
        if !take(&key, &value)? {
            let quoted = value.replace('\\', "\\\\").replace('\'', "\\'");
            kept.push(format!("{key}='{quoted}'"));
        }
    }
    Ok(kept.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(url: &str) -> Split {
        split(url).unwrap()
    }

    #[test]
    fn the_tls_options_of_a_url_are_read_and_removed() {
        let s = ok(
            "postgres://u:pw@db.example:5432/keyhold?sslmode=verify-full\
                    &sslrootcert=%2Fetc%2Fkeyhold%2Froot.pem&target_session_attrs=read-write",
        );
        assert_eq!(s.mode, Mode::VerifyFull);
        assert_eq!(s.root, Some(PathBuf::from("/etc/keyhold/root.pem")));
        assert_eq!(
            s.rest,
            "postgres://u:pw@db.example:5432/keyhold?target_session_attrs=read-write"
        );
        let s = ok("postgresql://u@h/d?sslrootcert=/r.pem&sslmode=verify-ca&sslsni=1");
        assert_eq!(
            (s.mode, s.rest.as_str()),
            (Mode::VerifyCa, "postgresql://u@h/d")
        );
        assert_eq!(ok("postgres://u@h/d").mode, Mode::Prefer);
        assert_eq!(ok("postgres://u@h/d?sslmode=disable").mode, Mode::Disable);
        assert_eq!(ok("postgres://u@h/d?sslmode=allow").mode, Mode::Prefer);
        let s = ok("postgres://u@h/d?sslmode=require");
        assert_eq!((s.mode, s.root, s.client), (Mode::Require, None, None));
        let s = ok("postgres://u@h/d?sslcert=/c.pem&sslkey=/k.pem&sslmode=require");
        assert_eq!(
            s.client,
            Some((PathBuf::from("/c.pem"), PathBuf::from("/k.pem")))
        );
        assert_eq!(s.rest, "postgres://u@h/d");
    }

    #[test]
    fn require_with_a_root_file_verifies_the_chain_as_libpq_does() {
        assert_eq!(
            ok("postgres://u@h/d?sslmode=require&sslrootcert=/r.pem").mode,
            Mode::VerifyCa
        );
    }

    #[test]
    fn key_value_urls_are_read_too() {
        let s = ok(
            "host=db.example user=keyhold password='p w\\'x' sslmode = verify-full \
                    sslrootcert='/etc/my certs/root.pem' dbname=keyhold",
        );
        assert_eq!(s.mode, Mode::VerifyFull);
        assert_eq!(s.root, Some(PathBuf::from("/etc/my certs/root.pem")));
        assert_eq!(
            s.rest,
            "host='db.example' user='keyhold' password='p w\\'x' dbname='keyhold'"
        );
        // What is handed on reads back as the same settings.
        let config: postgres::Config = s.rest.parse().unwrap();
        assert_eq!(config.get_password(), Some(&b"p w'x"[..]));
        assert_eq!(config.get_dbname(), Some("keyhold"));
    }

    #[test]
    fn wrong_tls_options_are_refused_by_name_without_the_password() {
        for (url, says) in [
            (
                "postgres://u:secret@h/d?sslmode=verify",
                "sslmode \"verify\"",
            ),
            (
                "postgres://u:secret@h/d?sslmode=verify-full",
                "needs sslrootcert",
            ),
            (
                "postgres://u:secret@h/d?sslmode=verify-ca&sslrootcert=",
                "needs sslrootcert",
            ),
            (
                "postgres://u:secret@h/d?sslrootcert=system",
                "sslrootcert=system",
            ),
            ("postgres://u:secret@h/d?sslmode=%zz", "%-escape"),
            ("host=h password=secret sslmode", "\"sslmode\" has no value"),
            (
                "postgres://u:secret@h/d?sslcert=/c.pem",
                "sslcert and sslkey",
            ),
            (
                "postgres://u:secret@h/d?sslkey=/k.pem",
                "sslcert and sslkey",
            ),
            ("host=h password='secret", "no closing quote"),
        ] {
            let e = split(url).unwrap_err();
            assert!(e.contains(says), "{url}: {e}");
            assert!(!e.contains("secret"), "{e}");
        }
    }
}
