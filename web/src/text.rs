//! One vocabulary for times, durations and list cursors, shared by the CLI, the API and the
//! UI, so a duration typed in one reads the same in the others.

use std::time::{Duration, SystemTime};

use anyhow::{Result, anyhow, bail};
use ca_core::audit;
use ca_core::store::Serial;

/// RFC 3339 date and time, UTC, to the second.
pub fn humantime(t: SystemTime) -> String {
    ca_core::revocation::rfc3339(t)
}

/// The longest duration accepted: 100 years, past any certificate or token lifetime, and far
/// from where adding it to a time overflows.
const MAX_DURATION: Duration = Duration::from_secs(100 * 366 * 86_400);

/// `30d`, `12h`, `90m`, `45s`, at most 100 years.
pub fn parse_duration(text: &str) -> Result<Duration> {
    let text = text.trim();
    let (num, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let n: u64 = num
        .parse()
        .map_err(|_| anyhow!("{text:?} is not a duration (e.g. 30d, 12h)"))?;
    let secs = match unit {
        "d" => 86_400,
        "h" => 3_600,
        "m" => 60,
        "s" | "" => 1,
        _ => bail!("{text:?} is not a duration (units: d, h, m, s)"),
    };
    let d = Duration::from_secs(n.saturating_mul(secs));
    if d > MAX_DURATION {
        bail!("{text:?} is longer than 100 years");
    }
    Ok(d)
}

/// A list cursor, `MICROS:SERIAL`, as the lists print it.
pub fn parse_cursor(text: &str) -> Result<(SystemTime, Serial)> {
    let (micros, serial) = text
        .split_once(':')
        .ok_or_else(|| anyhow!("{text:?} is not a cursor (MICROS:SERIAL)"))?;
    let micros: i64 = micros
        .parse()
        .map_err(|_| anyhow!("{text:?} is not a cursor (MICROS:SERIAL)"))?;
    let serial = Serial::parse(serial).map_err(anyhow::Error::msg)?;
    Ok((audit::from_unix_micros(micros), serial))
}

/// `text` safe to print on a terminal: control characters (C0, DEL, C1: ESC starts terminal
/// escape sequences, CR overwrites the line) and the Unicode format characters that reorder
/// or hide text (bidirectional overrides and isolates, zero-width characters) become
/// visible `\u{..}` escapes (shown as text, never interpreted by the terminal).
/// Everything the CLI prints from data (subjects, names, comments, audit details) goes
/// through it.
pub fn plain(text: &str) -> std::borrow::Cow<'_, str> {
    fn unsafe_char(c: char) -> bool {
        c.is_control()
            || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{feff}')
    }
    if !text.chars().any(unsafe_char) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            c if unsafe_char(c) => out.push_str(&format!("\\u{{{:x}}}", u32::from(c))),
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(
            parse_duration("30d").unwrap(),
            Duration::from_secs(30 * 86_400)
        );
        assert_eq!(
            parse_duration("12h").unwrap(),
            Duration::from_secs(12 * 3_600)
        );
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("3w").is_err());
        // Anything a time could not be moved by is refused, not saturated.
        assert!(parse_duration("18446744073709551615s").is_err());
        assert!(parse_duration("36601d").is_err());
        assert!(parse_duration("36600d").is_ok());
    }
}

#[cfg(test)]
mod plain_tests {
    use super::plain;

    #[test]
    fn terminal_escapes_are_made_visible() {
        assert_eq!(plain("CN=web.internal"), "CN=web.internal");
        assert_eq!(
            plain("Release\u{1b}[2K\rCN=Harmless test\u{1b}[8m"),
            "Release\\u{1b}[2K\\u{d}CN=Harmless test\\u{1b}[8m"
        );
        assert_eq!(plain("\u{202e}gpj.exe"), "\\u{202e}gpj.exe");
    }
}
