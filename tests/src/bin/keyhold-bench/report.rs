//! The results: cells, the tables, the noise report and the JSON.

use std::fmt::Write as _;

use ca_e2e::report::{json_string, median, thousands};

use crate::noise::Disturbance;
use crate::subjects::Curve;
use crate::timing::{PairedSample, SLICE, Sample};
use crate::{Backend, MESSAGE_LEN, Options, THREADS, WARM_UP};

/// The runs of one (curve, backend, threads) cell.
pub(crate) struct Cell {
    pub(crate) curve: Curve,
    pub(crate) backend: Backend,
    pub(crate) threads: usize,
    pub(crate) runs: Vec<Sample>,
}

impl Cell {
    fn median(&self) -> f64 {
        median(&self.runs.iter().map(|r| r.rate).collect::<Vec<_>>())
    }
}

/// The runs of one paired comparison: a Keyhold backend against its reference.
pub(crate) struct PairCell {
    pub(crate) curve: Curve,
    /// The Keyhold backend; its reference is [`Backend::reference`].
    pub(crate) backend: Backend,
    pub(crate) threads: usize,
    pub(crate) runs: Vec<PairedSample>,
}

impl PairCell {
    fn median(&self) -> f64 {
        median(&self.runs.iter().map(|r| r.ratio).collect::<Vec<_>>())
    }
}

/// Everything measured.
pub(crate) struct Results {
    pub(crate) cells: Vec<Cell>,
    pub(crate) pairs: Vec<PairCell>,
}

impl Results {
    fn median(&self, curve: Curve, backend: Backend, threads: usize) -> Option<f64> {
        self.cells
            .iter()
            .find(|c| c.curve == curve && c.backend == backend && c.threads == threads)
            .map(Cell::median)
    }

    /// `backend`'s median as a fraction of its reference's, if both were measured.
    fn vs_reference(&self, curve: Curve, backend: Backend, threads: usize) -> Option<f64> {
        let reference = backend.reference()?;
        Some(self.median(curve, backend, threads)? / self.median(curve, reference, threads)?)
    }
}

pub(crate) fn table(results: &Results, only: &[Backend]) -> String {
    let mut out = format!(
        "{:<6} {:<26} {:>10} {:>11} {:>7}   {}\n",
        "curve", "backend", "1 thread", "2 threads", "2t/1t", "vs reference (1t / 2t)"
    );
    for curve in Curve::ALL {
        for &backend in only {
            let one = results.median(curve, backend, 1);
            let two = results.median(curve, backend, 2);
            let show = |v: Option<f64>| v.map_or_else(|| "-".into(), thousands);
            let scaling = match (one, two) {
                (Some(a), Some(b)) => format!("{:.2}x", b / a),
                _ => "-".into(),
            };
            let versus = match (
                backend.reference(),
                results.vs_reference(curve, backend, 1),
                results.vs_reference(curve, backend, 2),
            ) {
                (Some(reference), Some(a), Some(b)) => format!(
                    "{:.0}% / {:.0}% of {}",
                    a * 100.0,
                    b * 100.0,
                    reference.label(curve)
                ),
                _ => String::new(),
            };
            let line = format!(
                "{:<6} {:<26} {:>10} {:>11} {:>7}   {}",
                curve.name(),
                backend.label(curve),
                show(one),
                show(two),
                scaling,
                versus
            );
            out.push_str(line.trim_end());
            out.push('\n');
        }
    }
    out
}

/// The paired comparisons: each Keyhold backend's rate as a share of its reference's.
pub(crate) fn paired_table(results: &Results) -> String {
    if results.pairs.is_empty() {
        return String::new();
    }
    let mut out = format!(
        "paired check (\"vs reference\" above divides medians measured seconds apart; here \
         each Keyhold backend and its\nreference take turns in {} ms slices on the same \
         threads): Keyhold's rate as a share of the reference's,\nmedian (min-max) of the \
         runs:\n",
        SLICE.as_millis()
    );
    let mut seen = Vec::new();
    for pair in &results.pairs {
        if seen.contains(&(pair.curve, pair.backend)) {
            continue;
        }
        seen.push((pair.curve, pair.backend));
        let Some(reference) = pair.backend.reference() else {
            continue;
        };
        let mut line = format!(
            "{:<6} {:<43}",
            pair.curve.name(),
            format!(
                "{} / {}",
                pair.backend.label(pair.curve),
                reference.label(pair.curve)
            )
        );
        for threads in THREADS {
            let Some(cell) = results.pairs.iter().find(|c| {
                c.curve == pair.curve && c.backend == pair.backend && c.threads == threads
            }) else {
                continue;
            };
            let ratios = cell.runs.iter().map(|r| r.ratio * 100.0);
            let min = ratios.clone().fold(f64::INFINITY, f64::min);
            let max = ratios.fold(f64::NEG_INFINITY, f64::max);
            let _ = write!(
                line,
                "  {threads}t {:>6.1}% {:<13}",
                cell.median() * 100.0,
                format!("({min:.1}-{max:.1})")
            );
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The runs that something else on the machine disturbed, so a reader can judge the medians.
pub(crate) fn noise_report(results: &Results) -> String {
    let runs = results.cells.iter().map(|c| c.runs.len()).sum::<usize>()
        + results.pairs.iter().map(|c| c.runs.len()).sum::<usize>();
    let mut disturbed = String::new();
    let mut count = 0;
    for cell in &results.cells {
        for (i, sample) in cell.runs.iter().enumerate() {
            if sample.disturbance.disturbed() {
                count += 1;
                let _ = writeln!(
                    disturbed,
                    "  {} {} {}t run {}: {}/s ({}; median {}/s)",
                    cell.curve.name(),
                    cell.backend.label(cell.curve),
                    cell.threads,
                    i + 1,
                    thousands(sample.rate),
                    sample.disturbance.describe(),
                    thousands(cell.median())
                );
            }
        }
    }
    for pair in &results.pairs {
        for (i, sample) in pair.runs.iter().enumerate() {
            if sample.disturbance.disturbed() {
                count += 1;
                let _ = writeln!(
                    disturbed,
                    "  {} {} paired {}t run {}: {:.1}% ({}; median {:.1}%)",
                    pair.curve.name(),
                    pair.backend.label(pair.curve),
                    pair.threads,
                    i + 1,
                    sample.ratio * 100.0,
                    sample.disturbance.describe(),
                    pair.median() * 100.0
                );
            }
        }
    }
    if count == 0 {
        format!("no run was disturbed (steal and other processes under 5% in all {runs} runs)\n")
    } else {
        format!(
            "{count} of {runs} runs shared the machine (over 5% of its CPU time stolen by the \
             hypervisor or used by other processes); their numbers may be low:\n{disturbed}"
        )
    }
}

/// A JSON list of one disturbance figure per run.
fn json_shares(runs: &[Disturbance], figure: fn(&Disturbance) -> Option<f64>) -> String {
    runs.iter()
        .map(|d| figure(d).map_or_else(|| "null".into(), |v| format!("{v:.3}")))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A JSON number, or `null` for what JSON cannot hold.
fn json_number(value: f64) -> String {
    if value.is_finite() {
        format!("{value:.1}")
    } else {
        "null".into()
    }
}

pub(crate) fn to_json(results: &Results, machine: &Machine, options: &Options) -> String {
    let mut cells = Vec::new();
    for cell in &results.cells {
        let runs: Vec<String> = cell.runs.iter().map(|r| json_number(r.rate)).collect();
        let disturbances: Vec<Disturbance> = cell.runs.iter().map(|r| r.disturbance).collect();
        let reference = match (
            cell.backend.reference(),
            results.vs_reference(cell.curve, cell.backend, cell.threads),
        ) {
            (Some(r), Some(ratio)) => format!(
                ", \"reference\": {}, \"ratio_to_reference\": {:.3}",
                json_string(r.id()),
                ratio
            ),
            _ => String::new(),
        };
        cells.push(format!(
            "    {{\"curve\": {}, \"backend\": {}, \"label\": {}, \"threads\": {}, \
             \"ops_per_sec\": {}, \"runs\": [{}], \"steal_share\": [{}], \
             \"other_processes_share\": [{}]{}}}",
            json_string(cell.curve.name()),
            json_string(cell.backend.id()),
            json_string(cell.backend.label(cell.curve)),
            cell.threads,
            json_number(cell.median()),
            runs.join(", "),
            json_shares(&disturbances, |d| d.steal),
            json_shares(&disturbances, |d| d.others),
            reference
        ));
    }
    let mut pairs = Vec::new();
    for pair in &results.pairs {
        let runs: Vec<String> = pair
            .runs
            .iter()
            .map(|r| format!("{:.4}", r.ratio))
            .collect();
        let disturbances: Vec<Disturbance> = pair.runs.iter().map(|r| r.disturbance).collect();
        pairs.push(format!(
            "    {{\"curve\": {}, \"backend\": {}, \"reference\": {}, \"threads\": {}, \
             \"ratio\": {:.4}, \"runs\": [{}], \"steal_share\": [{}], \
             \"other_processes_share\": [{}]}}",
            json_string(pair.curve.name()),
            json_string(pair.backend.id()),
            pair.backend
                .reference()
                .map_or_else(|| "null".into(), |r| json_string(r.id())),
            pair.threads,
            pair.median(),
            runs.join(", "),
            json_shares(&disturbances, |d| d.steal),
            json_shares(&disturbances, |d| d.others),
        ));
    }
    format!(
        "{{\n  \"machine\": {{\"cpu\": {}, \"available_parallelism\": {}, \
         \"loadavg_before\": {}, \"loadavg_after\": {}, \"pkcs11_module\": {}}},\n  \
         \"settings\": {{\"seconds\": {}, \"runs\": {}, \"warm_up_seconds\": {}, \
         \"message_bytes\": {}, \"paired_slice_ms\": {}}},\n  \"results\": [\n{}\n  ],\n  \
         \"paired\": [\n{}\n  ]\n}}\n",
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
        SLICE.as_millis(),
        cells.join(",\n"),
        pairs.join(",\n")
    )
}

/// What the numbers were measured on.
pub(crate) struct Machine {
    pub(crate) cpu: String,
    pub(crate) parallelism: usize,
    pub(crate) loadavg_before: String,
    pub(crate) loadavg_after: String,
    pub(crate) module: Option<String>,
}
