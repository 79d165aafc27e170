//! Drives `fleet load --json` against a system and reads back what it measured, with the CPU
//! time and the peak resident memory of the system's processes over the run.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, bail};
use serde::Serialize;
use serde_json::Value;

use crate::procfs::{self, RssSampler};
use crate::system::System;

#[derive(Debug, Clone, Copy, Serialize)]
#[serde(tag = "model", rename_all = "snake_case")]
pub enum Model {
    /// Constant arrival rate, requests/s, at most `max_in_flight` out at once.
    Open { rate: f64, max_in_flight: u64 },
    /// N workers back to back.
    Closed { concurrency: u64 },
}

#[derive(Debug, Clone, Serialize)]
pub struct Run {
    pub system: String,
    pub load: Model,
    pub duration_s: f64,
    pub sent: u64,
    pub answered: u64,
    /// 2xx answers.
    pub ok: u64,
    pub dropped: u64,
    pub transport_errors: u64,
    pub unexpected_errors: u64,
    pub statuses: BTreeMap<String, u64>,
    pub elapsed_s: f64,
    pub achieved_rate: f64,
    /// 2xx answers per second of the run.
    pub throughput: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub max_schedule_lag_ms: f64,
    /// CPU ms spent by each process of the system over the run.
    pub cpu_ms: BTreeMap<String, f64>,
    /// CPU ms per 2xx answer, the four services only (no provider, no desk).
    pub services_cpu_ms_per_ok: f64,
    /// Peak resident memory of each process over the run, MiB.
    pub rss_peak_mib: BTreeMap<String, f64>,
    /// Peak proportional set size of each process over the run, MiB.
    pub pss_peak_mib: BTreeMap<String, f64>,
}

/// Only checkouts, all with the good card, so every answer is the same 20-span trace.
pub async fn run(
    fleet_bin: &Path,
    system: &System,
    model: Model,
    duration: Duration,
    scratch: &Path,
) -> anyhow::Result<Run> {
    let json_path = scratch.join(format!(
        "load-{}-{}.json",
        system.label,
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    ));
    let mut cmd = tokio::process::Command::new(fleet_bin);
    cmd.arg("load")
        .arg("--url")
        .arg(&system.gateway)
        .args(["--mix", "checkout=1", "--decline-rate", "0", "--seed", "7"])
        .arg("--duration")
        .arg(format!("{}ms", duration.as_millis()))
        .arg("--quiet")
        .arg("--json")
        .arg(&json_path)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    match model {
        Model::Open {
            rate,
            max_in_flight,
        } => cmd
            .arg("--rate")
            .arg(rate.to_string())
            .arg("--max-in-flight")
            .arg(max_in_flight.to_string()),
        Model::Closed { concurrency } => cmd.arg("--concurrency").arg(concurrency.to_string()),
    };
    let before = procfs::cpu_snapshot(&system.procs);
    let sampler = RssSampler::start(system.procs.clone());
    let out = cmd.output().await.context("running fleet load")?;
    let peaks = sampler.finish();
    let after = procfs::cpu_snapshot(&system.procs);
    if !out.status.success() {
        bail!(
            "fleet load failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let raw =
        std::fs::read(&json_path).with_context(|| format!("reading {}", json_path.display()))?;
    let _ = std::fs::remove_file(&json_path);
    let v: Value = serde_json::from_slice(&raw).context("parsing fleet load's JSON")?;
    let n = |k: &str| v[k].as_u64().unwrap_or(0);
    let f = |k: &str| v[k].as_f64().unwrap_or(0.0);
    let statuses: BTreeMap<String, u64> = v["statuses"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, c)| (k.clone(), c.as_u64().unwrap_or(0)))
                .collect()
        })
        .unwrap_or_default();
    let ok: u64 = statuses
        .iter()
        .filter(|(k, _)| k.starts_with('2'))
        .map(|(_, c)| c)
        .sum();
    let cpu_ms: BTreeMap<String, f64> = after
        .iter()
        .map(|(name, a)| (name.clone(), a - before.get(name).copied().unwrap_or(*a)))
        .collect();
    let services_cpu: f64 = cpu_ms
        .iter()
        .filter(|(n, _)| crate::system::SERVICES.contains(&n.as_str()))
        .map(|(_, c)| c)
        .sum();
    let elapsed_s = f("elapsed_s");
    Ok(Run {
        system: system.label.clone(),
        load: model,
        duration_s: duration.as_secs_f64(),
        sent: n("requests"),
        answered: n("answered"),
        ok,
        dropped: n("dropped"),
        transport_errors: n("transport_errors"),
        unexpected_errors: n("unexpected_errors"),
        statuses,
        elapsed_s,
        achieved_rate: f("achieved_rate"),
        throughput: if elapsed_s > 0.0 {
            ok as f64 / elapsed_s
        } else {
            0.0
        },
        p50_ms: v["latency"]["p50_ms"].as_f64().unwrap_or(0.0),
        p90_ms: v["latency"]["p90_ms"].as_f64().unwrap_or(0.0),
        p99_ms: v["latency"]["p99_ms"].as_f64().unwrap_or(0.0),
        max_ms: v["latency"]["max_ms"].as_f64().unwrap_or(0.0),
        max_schedule_lag_ms: f("max_schedule_lag_ms"),
        cpu_ms,
        services_cpu_ms_per_ok: if ok > 0 {
            services_cpu / ok as f64
        } else {
            0.0
        },
        rss_peak_mib: peaks.rss,
        pss_peak_mib: peaks.pss,
    })
}

pub fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

/// Nearest-rank percentile of already collected samples.
pub fn percentile(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * s.len() as f64).ceil() as usize;
    s[rank.clamp(1, s.len()) - 1]
}
