//! Results: a cell's samples, the machine, and the table and JSON made of them.

use std::fmt::Write as _;

use ca_core::keystore::pkcs11::module_context;
use ca_e2e::report::{json_number, json_string, median, quantile_ms, thousands};

use crate::{Database, Keys, MESSAGE_LEN, Options, PROFILE, TARGET, WARM_UP};

/// One run of one cell.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sample {
    pub(crate) raw: f64,
    pub(crate) certs: f64,
    pub(crate) db_alone: f64,
    /// Certificates issued, warm-up included (all checked in the database).
    pub(crate) issued: u64,
}

impl Sample {
    pub(crate) fn ratio(&self) -> f64 {
        self.certs / self.raw
    }
}

/// Key store x database x threads, over all runs.
pub(crate) struct Cell {
    pub(crate) keys: Keys,
    pub(crate) database: Database,
    pub(crate) threads: usize,
    pub(crate) runs: Vec<Sample>,
    /// Every timed `submit` call's duration, in microseconds.
    pub(crate) latencies: Vec<u32>,
}

impl Cell {
    fn median(&self, value: fn(&Sample) -> f64) -> f64 {
        median(&self.runs.iter().map(value).collect::<Vec<_>>())
    }

    fn ratio(&self) -> f64 {
        self.median(Sample::ratio)
    }

    fn meets_target(&self) -> bool {
        self.ratio() >= TARGET
    }

    /// The `p`-th quantile of the latencies, in milliseconds.
    fn latency_ms(&self, p: f64) -> f64 {
        quantile_ms(&self.latencies, p)
    }
}

/// What the numbers were measured on.
pub(crate) struct Machine {
    pub(crate) cpu: String,
    pub(crate) parallelism: usize,
    pub(crate) loadavg_before: String,
    pub(crate) loadavg_after: String,
    pub(crate) module: Option<String>,
}

/// The PKCS#11 module's own description.
pub(crate) fn module_info(options: &Options) -> Option<String> {
    let info = module_context(&options.module)
        .ok()?
        .get_library_info()
        .ok()?;
    Some(format!(
        "{} {} {} ({})",
        info.manufacturer_id().trim(),
        info.library_description().trim(),
        info.library_version(),
        options.module.display()
    ))
}

pub(crate) fn table(cells: &[Cell]) -> String {
    let mut out = format!(
        "{:<18} {:<10} {:>7} {:>9} {:>8} {:>8} {:>12} {:>7} {:>6}   {:>11}\n",
        "key store",
        "database",
        "threads",
        "certs/s",
        "p50 ms",
        "p99 ms",
        "raw signs/s",
        "ratio",
        ">=70%",
        "db alone/s"
    );
    for cell in cells {
        let _ = writeln!(
            out,
            "{:<18} {:<10} {:>7} {:>9} {:>8.2} {:>8.2} {:>12} {:>6.1}% {:>6}   {:>11}",
            cell.keys.label(),
            cell.database.label(),
            cell.threads,
            thousands(cell.median(|s| s.certs)),
            cell.latency_ms(0.50),
            cell.latency_ms(0.99),
            thousands(cell.median(|s| s.raw)),
            cell.ratio() * 100.0,
            if cell.meets_target() { "yes" } else { "NO" },
            thousands(cell.median(|s| s.db_alone)),
        );
    }
    out
}

pub(crate) fn to_json(cells: &[Cell], machine: &Machine, options: &Options, csrs: usize) -> String {
    let results: Vec<String> = cells
        .iter()
        .map(|cell| {
            let runs: Vec<String> = cell
                .runs
                .iter()
                .map(|r| {
                    format!(
                        "{{\"certs_per_sec\": {}, \"raw_signs_per_sec\": {}, \
                         \"db_alone_per_sec\": {}, \"ratio\": {}, \"issued\": {}}}",
                        json_number(r.certs, 1),
                        json_number(r.raw, 1),
                        json_number(r.db_alone, 1),
                        json_number(r.ratio(), 4),
                        r.issued
                    )
                })
                .collect();
            format!(
                "    {{\"key_store\": {}, \"database\": {}, \"threads\": {}, \
                 \"certs_per_sec\": {}, \"p50_ms\": {}, \"p99_ms\": {}, \
                 \"raw_signs_per_sec\": {}, \"ratio\": {}, \"meets_target\": {}, \
                 \"db_alone_per_sec\": {}, \"runs\": [{}]}}",
                json_string(cell.keys.id()),
                json_string(cell.database.id()),
                cell.threads,
                json_number(cell.median(|s| s.certs), 1),
                json_number(cell.latency_ms(0.50), 3),
                json_number(cell.latency_ms(0.99), 3),
                json_number(cell.median(|s| s.raw), 1),
                json_number(cell.ratio(), 4),
                cell.meets_target(),
                json_number(cell.median(|s| s.db_alone), 1),
                runs.join(", ")
            )
        })
        .collect();
    format!(
        "{{\n  \"machine\": {{\"cpu\": {}, \"available_parallelism\": {}, \
         \"loadavg_before\": {}, \"loadavg_after\": {}, \"pkcs11_module\": {}}},\n  \
         \"settings\": {{\"seconds\": {}, \"runs\": {}, \"warm_up_seconds\": {}, \
         \"message_bytes\": {}, \"profile\": {}, \"csrs\": {}, \"target_ratio\": {}}},\n  \
         \"results\": [\n{}\n  ]\n}}\n",
        json_string(&machine.cpu),
        machine.parallelism,
        json_string(&machine.loadavg_before),
        json_string(&machine.loadavg_after),
        machine
            .module
            .as_deref()
            .map_or_else(|| "null".into(), json_string),
        options.seconds,
        options.runs,
        WARM_UP.as_secs_f64(),
        MESSAGE_LEN,
        json_string(PROFILE),
        csrs,
        TARGET,
        results.join(",\n")
    )
}
