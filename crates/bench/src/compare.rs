//! `--compare-bin LABEL=PATH` (twice or more): the same fleet built several ways (say with
//! another global allocator: `cargo build --release -p fleet --no-default-features` for the
//! system allocator, `... --no-default-features --features alloc-mimalloc` for mimalloc),
//! each started as a traced fleet side by side, loaded in interleaved rounds, and reported
//! as ratios to the first binary.
//!
//! Every fleet is driven by the first binary's `fleet load`, so the load generator is the same
//! for all and only the services differ.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

use crate::load::{self, Model, Run, median};
use crate::procfs::max_merge;
use crate::report::{Table, num};
use crate::system::System;
use crate::{Mode, sum_services};

/// One binary to compare: `LABEL=PATH`.
#[derive(Debug, Clone)]
pub struct Variant {
    pub label: String,
    pub bin: PathBuf,
}

impl std::str::FromStr for Variant {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (label, path) = s.split_once('=').ok_or_else(|| {
            format!("{s:?}: expected LABEL=PATH, e.g. mimalloc=target/alloc/fleet-mimalloc")
        })?;
        let label = label.trim();
        if label.is_empty()
            || !label
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(format!("{label:?}: a label is letters, digits, - and _"));
        }
        Ok(Variant {
            label: label.to_owned(),
            bin: PathBuf::from(path.trim()),
        })
    }
}

/// How long an idle fleet is left before its resident memory is read: long enough for the
/// start-up to settle and for an allocator's deferred purge (jemalloc's decay is 10 s).
const SETTLE: Duration = Duration::from_secs(12);

/// Runs the comparison and adds section 7 to `table`.
pub async fn run(
    variants: &[Variant],
    mode: &Mode,
    concurrency: u64,
    rate: f64,
    database_url: Option<&str>,
    table: &mut Table,
    details: &mut serde_json::Map<String, Value>,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        variants.len() >= 2,
        "--compare-bin needs at least two binaries"
    );
    let mut bins = Vec::new();
    for v in variants {
        anyhow::ensure!(
            v.bin.is_file(),
            "{}: {} not found",
            v.label,
            v.bin.display()
        );
        bins.push(std::fs::canonicalize(&v.bin)?);
    }
    let driver: &Path = &bins[0];
    let scratch = crate::system::scratch_dir("compare-runs")?;
    let mut systems = Vec::new();
    for (v, bin) in variants.iter().zip(&bins) {
        eprintln!("fleet-bench: starting the {} fleet", v.label);
        systems.push(System::fleet(bin, &v.label, true, database_url, &[]).await?);
    }
    tokio::time::sleep(SETTLE).await;
    let idle: BTreeMap<String, f64> = systems
        .iter()
        .map(|s| {
            (
                s.label.clone(),
                sum_services(&crate::procfs::rss_snapshot(&s.procs)),
            )
        })
        .collect();

    for s in &systems {
        load::run(
            driver,
            s,
            Model::Closed { concurrency: 8 },
            Duration::from_secs(2),
            &scratch,
        )
        .await?;
    }
    let mut peak: BTreeMap<String, BTreeMap<String, f64>> = BTreeMap::new();
    let mut saturation: BTreeMap<String, Vec<Run>> = BTreeMap::new();
    let mut fixed: BTreeMap<String, Vec<Run>> = BTreeMap::new();
    for round in 0..mode.rounds {
        // Interleaved: A, B, C then C, B, A, so drift on the shared machine falls on all.
        let order: Vec<&System> = if round % 2 == 0 {
            systems.iter().collect()
        } else {
            systems.iter().rev().collect()
        };
        for s in &order {
            eprintln!(
                "fleet-bench: compare round {}/{} saturation ({concurrency} workers) on {}",
                round + 1,
                mode.rounds,
                s.label
            );
            let r = load::run(
                driver,
                s,
                Model::Closed { concurrency },
                mode.window,
                &scratch,
            )
            .await?;
            max_merge(peak.entry(s.label.clone()).or_default(), &r.rss_peak_mib);
            saturation.entry(s.label.clone()).or_default().push(r);
        }
        for s in order.iter().rev() {
            eprintln!(
                "fleet-bench: compare round {}/{} fixed rate {rate}/s on {}",
                round + 1,
                mode.rounds,
                s.label
            );
            let r = load::run(
                driver,
                s,
                Model::Open {
                    rate,
                    // The fleet's own limit: the bench never sheds, so every answer is a
                    // whole checkout and its spans can be counted.
                    max_in_flight: crate::system::FLEET_MAX_IN_FLIGHT,
                },
                mode.window,
                &scratch,
            )
            .await?;
            max_merge(peak.entry(s.label.clone()).or_default(), &r.rss_peak_mib);
            fixed.entry(s.label.clone()).or_default().push(r);
        }
    }
    // What each keeps once the load is gone: an allocator that returns freed memory to the
    // system shows it here.
    tokio::time::sleep(SETTLE).await;
    let after: BTreeMap<String, f64> = systems
        .iter()
        .map(|s| {
            (
                s.label.clone(),
                sum_services(&crate::procfs::rss_snapshot(&s.procs)),
            )
        })
        .collect();
    for s in systems {
        s.stop().await;
    }

    let med = |runs: &BTreeMap<String, Vec<Run>>, label: &str, f: fn(&Run) -> f64| {
        median(runs.get(label).into_iter().flatten().map(f).collect())
    };
    let base = variants[0].label.as_str();
    let n = mode.rounds;
    let win = mode.window.as_secs();
    let mut rows = Vec::new();
    for v in variants {
        let l = v.label.as_str();
        let row = json!({
            "label": l,
            "bin": v.bin,
            "idle_rss_mib": idle[l],
            "rss_after_load_mib": after[l],
            "peak_rss_mib": sum_services(&peak.get(l).cloned().unwrap_or_default()),
            "saturation_throughput": med(&saturation, l, |r| r.throughput),
            "cpu_ms_per_checkout": med(&saturation, l, |r| r.services_cpu_ms_per_ok),
            "fixed_rate_p99_ms": med(&fixed, l, |r| r.p99_ms),
            "fixed_rate_throughput": med(&fixed, l, |r| r.throughput),
            "errors": saturation.get(l).into_iter().chain(fixed.get(l)).flatten()
                .map(|r| r.unexpected_errors + r.transport_errors).sum::<u64>(),
        });
        rows.push(row);
    }
    let get = |label: &str, key: &str| {
        rows.iter()
            .find(|r| r["label"] == label)
            .and_then(|r| r[key].as_f64())
            .unwrap_or(f64::NAN)
    };
    let figures: [(&str, &str, &str, String); 6] = [
        (
            "idle_rss_mib",
            "idle RSS, four services",
            "MiB",
            format!("{} s after start, before any load", SETTLE.as_secs()),
        ),
        (
            "peak_rss_mib",
            "peak RSS, four services (each process's max, summed)",
            "MiB",
            format!("over every run: {concurrency} workers and {rate}/s"),
        ),
        (
            "rss_after_load_mib",
            "RSS after the load, four services",
            "MiB",
            format!(
                "{} s after the last run: what each allocator keeps",
                SETTLE.as_secs()
            ),
        ),
        (
            "saturation_throughput",
            "saturation throughput",
            "checkouts/s",
            format!("{concurrency} workers, median of {n} interleaved {win} s runs"),
        ),
        (
            "cpu_ms_per_checkout",
            "CPU per checkout, four services",
            "CPU-ms",
            "at saturation, utime+stime from /proc".to_owned(),
        ),
        (
            "fixed_rate_p99_ms",
            "p99 at a fixed rate",
            "ms",
            format!("{rate} checkouts/s, open model, median of {n} runs"),
        ),
    ];
    for (key, name, unit, note) in figures {
        let b = get(base, key);
        for v in variants.iter().skip(1) {
            let x = get(&v.label, key);
            table.add(
                "7",
                format!("{name}, {} ÷ {base}", v.label),
                x / b,
                "×",
                None,
                format!("{} vs {} {unit}; {note}", num(x), num(b)),
            );
        }
    }
    details.insert("compare".into(), Value::Array(rows));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_variant_is_label_equals_path() {
        let v: Variant = "mimalloc=target/alloc/fleet-mimalloc".parse().unwrap();
        assert_eq!(v.label, "mimalloc");
        assert_eq!(v.bin, PathBuf::from("target/alloc/fleet-mimalloc"));
        assert!("target/alloc/fleet".parse::<Variant>().is_err());
        assert!("=x".parse::<Variant>().is_err());
        assert!("a b=x".parse::<Variant>().is_err());
    }
}
