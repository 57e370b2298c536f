//! How disturbed a run was: CPU time stolen by the hypervisor or used by other processes.

/// CPU time of the whole machine and of this process, in clock ticks (USER_HZ), from
/// `/proc/stat` and `/proc/self/stat`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CpuTimes {
    /// Ticks spent on anything but idle and I/O wait, all CPUs (including this process).
    busy: u64,
    /// Ticks the hypervisor gave to someone else while this VM wanted to run.
    steal: u64,
    /// All ticks, all CPUs.
    total: u64,
    /// User and system ticks of this process.
    own: u64,
}

impl CpuTimes {
    /// `None` where `/proc` is missing or unreadable: the disturbance figures are then
    /// unknown, the measurement itself is unaffected.
    pub(crate) fn now() -> Option<Self> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let fields: Vec<u64> = stat
            .lines()
            .find(|l| l.starts_with("cpu "))?
            .split_whitespace()
            .skip(1)
            .map(|f| f.parse().ok())
            .collect::<Option<_>>()?;
        // user nice system idle iowait irq softirq steal [guest guest_nice, inside user/nice]
        let field = |i: usize| fields.get(i).copied().unwrap_or(0);
        let own_stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
        let after_comm = own_stat.rsplit_once(')')?.1;
        let own_fields: Vec<&str> = after_comm.split_whitespace().collect();
        let own =
            own_fields.get(11)?.parse::<u64>().ok()? + own_fields.get(12)?.parse::<u64>().ok()?;
        Some(CpuTimes {
            busy: field(0) + field(1) + field(2) + field(5) + field(6),
            steal: field(7),
            total: (0..8).map(field).sum(),
            own,
        })
    }
}

/// How much of the machine something else took during a timed window.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Disturbance {
    /// Share of the machine's CPU time the hypervisor stole.
    pub(crate) steal: Option<f64>,
    /// Share of the machine's CPU time used by other processes.
    pub(crate) others: Option<f64>,
}

impl Disturbance {
    pub(crate) fn between(before: Option<CpuTimes>, after: Option<CpuTimes>) -> Self {
        let share = |part: fn(&CpuTimes, &CpuTimes) -> u64| {
            let (before, after) = before.zip(after)?;
            let total = after.total.saturating_sub(before.total);
            (total > 0).then(|| part(&before, &after) as f64 / total as f64)
        };
        Disturbance {
            steal: share(|b, a| a.steal.saturating_sub(b.steal)),
            others: share(|b, a| {
                a.busy
                    .saturating_sub(b.busy)
                    .saturating_sub(a.own.saturating_sub(b.own))
            }),
        }
    }

    /// Whether something else likely dragged the numbers down (over 5% of the machine's CPU
    /// time stolen or used by others).
    pub(crate) fn disturbed(&self) -> bool {
        self.steal.unwrap_or(0.0) > 0.05 || self.others.unwrap_or(0.0) > 0.05
    }

    pub(crate) fn describe(&self) -> String {
        let pct = |v: Option<f64>| v.map_or_else(|| "?".into(), |v| format!("{:.0}%", v * 100.0));
        format!(
            "steal {}, other processes {}",
            pct(self.steal),
            pct(self.others)
        )
    }
}
