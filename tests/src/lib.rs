//! What the benchmark binaries share: the machine they ran on and how figures are printed.

pub mod report {
    use std::fmt::Write as _;

    /// The CPU time this process has used so far, every thread counted.
    pub fn process_cpu() -> std::time::Duration {
        let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
        std::time::Duration::new(
            u64::try_from(t.tv_sec).unwrap_or(0),
            u32::try_from(t.tv_nsec).unwrap_or(0),
        )
    }

    /// The median, or NaN for no values.
    pub fn median(values: &[f64]) -> f64 {
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        match sorted.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => sorted[n / 2],
            n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
        }
    }

    /// The `p` quantile (0 < p <= 1, nearest rank) of latencies in microseconds, as
    /// milliseconds; NaN for none.
    pub fn quantile_ms(latencies_us: &[u32], p: f64) -> f64 {
        let mut sorted = latencies_us.to_vec();
        sorted.sort_unstable();
        let rank = ((p * sorted.len() as f64).ceil() as usize).saturating_sub(1);
        sorted
            .get(rank)
            .map_or(f64::NAN, |&us| f64::from(us) / 1000.0)
    }

    /// `12345.6` as `12,346`; `-` for what is not a number.
    pub fn thousands(value: f64) -> String {
        if !value.is_finite() {
            return "-".into();
        }
        let digits = format!("{:.0}", value.max(0.0));
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        out
    }

    /// A JSON string literal.
    pub fn json_string(s: &str) -> String {
        let mut out = String::from("\"");
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                c if (c as u32) < 0x20 => {
                    let _ = write!(out, "\\u{:04x}", c as u32);
                }
                c => out.push(c),
            }
        }
        out.push('"');
        out
    }

    /// A JSON number with `decimals` decimals, or `null` for what JSON cannot hold.
    pub fn json_number(value: f64, decimals: usize) -> String {
        if value.is_finite() {
            format!("{value:.decimals$}")
        } else {
            "null".into()
        }
    }

    /// The CPU model from /proc/cpuinfo.
    pub fn cpu_model() -> String {
        std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|info| {
                info.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, model)| model.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown".into())
    }

    /// The 1, 5 and 15 minute load averages.
    pub fn load_average() -> String {
        std::fs::read_to_string("/proc/loadavg")
            .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
            .unwrap_or_else(|_| "unknown".into())
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn medians_and_quantiles() {
            assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
            assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
            assert!(median(&[]).is_nan());
            let us: Vec<u32> = (1..=100).map(|i| i * 1000).collect();
            assert_eq!(quantile_ms(&us, 0.5), 50.0);
            assert_eq!(quantile_ms(&us, 0.99), 99.0);
            assert!(quantile_ms(&[], 0.5).is_nan());
        }

        #[test]
        fn formats() {
            assert_eq!(thousands(1234567.4), "1,234,567");
            assert_eq!(thousands(999.0), "999");
            assert_eq!(thousands(f64::NAN), "-");
            assert_eq!(json_string("a\"b\\c\nd\u{1}"), r#""a\"b\\c\nd\u0001""#);
            assert_eq!(json_number(1.25, 1), "1.2");
            assert_eq!(json_number(f64::INFINITY, 1), "null");
        }
    }
}
pub mod hsm_lab;
