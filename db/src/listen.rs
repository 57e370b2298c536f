//! Waiting for PostgreSQL notices (`LISTEN`) on a connection of its own: diesel cannot
//! wait for notifications, so this uses the `postgres` crate, on the same URL (multi-host
//! and `target_session_attrs=read-write` included, so it follows a failover to the new
//! primary, where notices are sent), and the same TLS settings: libpq's `sslmode` and
//! `sslrootcert`, which the crate does not know, are read in [`options`] and honoured over
//! rustls in [`tls`].

mod options;
mod tls;

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ca_core::revocation::publish::shared::Notice;
use ca_core::store::Serial;
use postgres::fallible_iterator::FallibleIterator;

use crate::publication::{CRL, REVOKED};

/// What the listening thread reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listened {
    /// Listening (again): notices sent before may have been missed, so read everything.
    Up,
    /// The connection was lost, or could not be made (why: never the password); notices
    /// are missed until [`Listened::Up`].
    Down(String),
    /// A notice.
    Notice(Notice),
}

/// How long a wait for a notice lasts before `stop` is looked at again.
const WAIT: Duration = Duration::from_millis(250);
/// How often an idle listening connection is checked (a silent network partition).
const CHECK_EVERY: Duration = Duration::from_secs(5);
/// The wait before connecting again.
const RECONNECT: Duration = Duration::from_secs(1);

/// Runs until `stop`: connects to `url`, listens on the revocation and CRL channels, and
/// calls `on` for each notice, and when listening starts and stops.
pub(crate) fn run(url: &str, stop: &Arc<AtomicBool>, on: &(dyn Fn(Listened) + Send + Sync)) {
    let (config, split) = match configure(url) {
        Ok(read) => read,
        Err(e) => {
            tracing::error!(error = %e,
                "cannot read the database URL to listen for notices; relying on periodic reads");
            return;
        }
    };
    let mut failing = false;
    while !stop.load(Ordering::Relaxed) {
        match listen(&config, &split, stop, on) {
            Ok(()) => return,
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e,
                        "not listening for database notices; relying on periodic reads until it is back");
                }
                failing = true;
                on(Listened::Down(e));
                let since = Instant::now();
                while since.elapsed() < RECONNECT && !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
    }
}

/// The `postgres` crate's settings for `url`, with the TLS options it does not know read
/// here. As libpq, no TLS on unix sockets: a URL naming only sockets connects without.
fn configure(url: &str) -> Result<(postgres::Config, options::Split), String> {
    let split = options::split(url)?;
    let mut config = postgres::Config::from_str(&split.rest).map_err(|e| described(&e))?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(2));
    }
    let sockets_only = config
        .get_hosts()
        .iter()
        .all(|h| matches!(h, postgres::config::Host::Unix(_)));
    config.ssl_mode(match split.mode {
        _ if sockets_only => postgres::config::SslMode::Disable,
        options::Mode::Disable => postgres::config::SslMode::Disable,
        options::Mode::Prefer => postgres::config::SslMode::Prefer,
        options::Mode::Require | options::Mode::VerifyCa | options::Mode::VerifyFull => {
            postgres::config::SslMode::Require
        }
    });
    Ok((config, split))
}

/// One connection's life: `Ok` when `stop` is set, `Err` when the connection fails.
fn listen(
    config: &postgres::Config,
    split: &options::Split,
    stop: &Arc<AtomicBool>,
    on: &(dyn Fn(Listened) + Send + Sync),
) -> Result<(), String> {
    // Made for every connection, so a replaced sslrootcert is read again.
    let tls = tls::Tls::new(split)?;
    let mut client = config.connect(tls).map_err(|e| described(&e))?;
    client
        .batch_execute(&format!("LISTEN {REVOKED}; LISTEN {CRL}"))
        .map_err(|e| described(&e))?;
    tracing::info!("listening for database notices");
    on(Listened::Up);
    let mut checked = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let mut got = Vec::new();
        {
            let mut notices = client.notifications();
            let mut iter = notices.timeout_iter(WAIT);
            while let Some(n) = iter.next().map_err(|e| described(&e))? {
                got.push(n);
            }
        }
        for n in got {
            if let Some(notice) = parse(n.channel(), n.payload()) {
                on(Listened::Notice(notice));
            }
        }
        if checked.elapsed() >= CHECK_EVERY {
            checked = Instant::now();
            client
                .is_valid(Duration::from_secs(2))
                .map_err(|e| described(&e))?;
        }
    }
    Ok(())
}

/// `e` and its causes (the `postgres` crate's message for a failed handshake says only
/// that it failed; the cause says why).
fn described(e: &postgres::Error) -> String {
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text = format!("{text}: {more}");
        }
        cause = c.source();
    }
    text
}

/// A notice from its channel and payload (`ISSUER SERIAL` or `ISSUER NUMBER`).
fn parse(channel: &str, payload: &str) -> Option<Notice> {
    let (issuer, rest) = payload.split_once(' ')?;
    let issuer = issuer.to_owned();
    match channel {
        REVOKED => Some(Notice::Revoked {
            issuer,
            serial: Serial::parse(rest).ok()?,
        }),
        CRL => Some(Notice::Crl {
            issuer,
            number: rest.parse().ok()?,
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_neither_read_here_nor_by_the_crate_are_refused_by_name() {
        let e = configure("postgres://u:secret@h/d?sslmode=require&sslcert=/c.pem")
            .err()
            .unwrap();
        assert!(e.contains("sslcert"), "{e}");
        assert!(!e.contains("secret"), "{e}");
    }

    #[test]
    fn unix_sockets_carry_no_tls_as_with_libpq() {
        let ssl = |url| configure(url).unwrap().0.get_ssl_mode();
        use postgres::config::SslMode;
        assert_eq!(
            ssl("postgres://u@/d?host=/run/pg&sslmode=verify-full&sslrootcert=/r"),
            SslMode::Disable
        );
        assert_eq!(
            ssl("postgres://u@h/d?sslmode=verify-ca&sslrootcert=/r"),
            SslMode::Require
        );
        assert_eq!(ssl("postgres://u@h/d?sslmode=require"), SslMode::Require);
        assert_eq!(ssl("postgres://u@h/d"), SslMode::Prefer);
        assert_eq!(ssl("postgres://u@h/d?sslmode=disable"), SslMode::Disable);
    }

    #[test]
    fn notices_are_read_from_their_channel_and_payload() {
        assert_eq!(
            parse(REVOKED, "issuing-ca 0a1b"),
            Some(Notice::Revoked {
                issuer: "issuing-ca".into(),
                serial: Serial::parse("0a1b").unwrap()
            })
        );
        assert_eq!(
            parse(CRL, "issuing-ca 42"),
            Some(Notice::Crl {
                issuer: "issuing-ca".into(),
                number: 42
            })
        );
        assert_eq!(parse(CRL, "issuing-ca x"), None);
        assert_eq!(parse("other", "a 1"), None);
    }
}
