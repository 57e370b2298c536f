//! Name rules: which DNS names, IP addresses, email addresses and URIs a profile allows.
//!
//! Invariant: matching is on normalised names (lower-case DNS, parsed IPs), and a suffix
//! matches only at a label boundary: `.corp` allows `db.corp`, never `evilcorp` or `corp`.

use std::net::IpAddr;

/// An IP network in CIDR form (`10.0.0.0/8`, `fd00::/8`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// Parses `ADDR/PREFIX`.
    ///
    /// Fails with a message if either half is malformed, the prefix is too long for the
    /// address family, or host bits are set (`10.0.0.1/8` is almost always a typo).
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad =
            |why: &str| format!("invalid IP range {text:?}: {why} (expected CIDR like 10.0.0.0/8)");
        let (addr, prefix) = text.split_once('/').ok_or_else(|| bad("no /prefix"))?;
        let addr: IpAddr = addr.parse().map_err(|_| bad("not an IP address"))?;
        let prefix: u8 = prefix.parse().map_err(|_| bad("prefix is not a number"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(bad("prefix too long"));
        }
        let net = IpNet { addr, prefix };
        if !net.contains(addr) || bits(addr) & !mask(prefix, max) != 0 {
            return Err(bad("host bits are set"));
        }
        Ok(net)
    }

    /// Whether `ip` lies in this network (never across address families).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let max = match (self.addr, ip) {
            (IpAddr::V4(_), IpAddr::V4(_)) => 32,
            (IpAddr::V6(_), IpAddr::V6(_)) => 128,
            _ => return false,
        };
        let m = mask(self.prefix, max);
        bits(self.addr) & m == bits(ip) & m
    }
}

fn bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

fn mask(prefix: u8, max: u8) -> u128 {
    let all = if max == 32 {
        u128::from(u32::MAX)
    } else {
        u128::MAX
    };
    if prefix == 0 {
        0
    } else {
        all & (all << (max - prefix))
    }
}

/// Checks that `name` is a syntactically valid DNS name (RFC 1035 2.3.1 LDH labels, RFC 5280
/// 4.2.1.6 preferred name syntax), optionally with a leading `*.` wildcard label; returns it
/// lower-cased.
///
/// Fails with a message saying what is wrong.
pub fn normalise_dns(name: &str) -> Result<String, String> {
    let lower = name.to_ascii_lowercase();
    let body = lower.strip_prefix("*.").unwrap_or(&lower);
    if lower.is_empty() || lower.len() > 253 {
        return Err(format!(
            "dns name {name:?} is empty or longer than 253 characters"
        ));
    }
    for label in body.split('.') {
        let ok = (1..=63).contains(&label.len())
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(format!("dns name {name:?} has an invalid label {label:?}"));
        }
    }
    Ok(lower)
}

/// Whether `name` (normalised) ends with `suffix` (normalised, starting with '.') at a
/// label boundary.
pub fn has_suffix(name: &str, suffix: &str) -> bool {
    name.len() > suffix.len() && name.ends_with(suffix)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_ranges_contain_what_they_should() {
        let net = IpNet::parse("10.0.0.0/8").unwrap();
        assert!(net.contains("10.200.3.4".parse().unwrap()));
        assert!(!net.contains("11.0.0.1".parse().unwrap()));
        assert!(!net.contains("::ffff:10.0.0.1".parse().unwrap()));
        let v6 = IpNet::parse("fd00::/8").unwrap();
        assert!(v6.contains("fd12::1".parse().unwrap()));
        assert!(
            IpNet::parse("0.0.0.0/0")
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
    }

    #[test]
    fn malformed_ranges_are_refused() {
        for bad in [
            "10.0.0.0",
            "10.0.0.0/33",
            "10.0.0.1/8",
            "nope/8",
            "10.0.0.0/x",
        ] {
            assert!(IpNet::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn dns_names_are_checked_and_lower_cased() {
        assert_eq!(normalise_dns("Db.Corp").unwrap(), "db.corp");
        assert_eq!(normalise_dns("*.svc.corp").unwrap(), "*.svc.corp");
        for bad in [
            "", "a..b", "-a.corp", "a-.corp", "a_b.corp", "a.*.corp", "a b.corp",
        ] {
            assert!(normalise_dns(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn suffixes_match_only_at_label_boundaries() {
        assert!(has_suffix("db.corp", ".corp"));
        assert!(!has_suffix("evilcorp", ".corp"));
        assert!(!has_suffix(".corp", ".corp"));
    }
}
