//! What `/proc` says about a process (resident memory, CPU time, parent) and about the machine.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

/// Clock ticks per second for `/proc/<pid>/stat` times (`getconf CLK_TCK`; 100 on Linux x86_64).
const CLK_TCK: f64 = 100.0;

/// `VmRSS` of a process, in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    status_field(pid, "VmRSS:")
}

/// `Pss` of a process, in KiB (`/proc/<pid>/smaps_rollup`): its resident pages with each page
/// shared by N processes counted 1/N. The fleet's processes are one binary (`fleet run
/// <service>`), whose code pages every one of them maps: RSS counts those once per process,
/// PSS once in all.
pub fn pss_kib(pid: u32) -> Option<u64> {
    rollup_field(pid, "Pss:")
}

/// `Anonymous` of a process, in KiB (`/proc/<pid>/smaps_rollup`): heap, stacks and other
/// memory of its own; the rest of its RSS is file pages (the binary's code and read-only data,
/// shared with every process running it, and files it reads).
pub fn anon_kib(pid: u32) -> Option<u64> {
    rollup_field(pid, "Anonymous:")
}

fn rollup_field(pid: u32, field: &str) -> Option<u64> {
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    rollup
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

fn status_field(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// The fields after `comm` in `/proc/<pid>/stat` (index 0 is the state).
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(") ")?;
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

/// User + system CPU time of a whole process (every thread), in milliseconds.
pub fn cpu_ms(pid: u32) -> Option<f64> {
    let f = stat_fields(pid)?;
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) * 1000.0 / CLK_TCK)
}

fn ppid(pid: u32) -> Option<u32> {
    stat_fields(pid)?.get(1)?.parse().ok()
}

fn cmdline(pid: u32) -> Option<Vec<String>> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        raw.split(|b| *b == 0)
            .filter(|s| !s.is_empty())
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect(),
    )
}

/// Children of `parent` started as `<exe> <verb> <name>` (e.g. `fleet run order-api`), as
/// `(name, pid)`.
pub fn children_running(parent: u32, verb: &str) -> Vec<(String, u32)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if ppid(pid) != Some(parent) {
            continue;
        }
        if let Some(args) = cmdline(pid)
            && let Some(i) = args.iter().position(|a| a == verb)
            && let Some(name) = args.get(i + 1)
        {
            found.push((name.clone(), pid));
        }
    }
    found.sort();
    found
}

/// The processes one measured system is made of, by name.
pub type Procs = Vec<(String, u32)>;

/// CPU milliseconds of each process, by name.
pub fn cpu_snapshot(procs: &Procs) -> BTreeMap<String, f64> {
    procs
        .iter()
        .filter_map(|(n, p)| cpu_ms(*p).map(|c| (n.clone(), c)))
        .collect()
}

/// Resident memory of each process, in MiB.
pub fn rss_snapshot(procs: &Procs) -> BTreeMap<String, f64> {
    snapshot(procs, rss_kib)
}

/// Proportional set size of each process, in MiB (see [`pss_kib`]).
pub fn pss_snapshot(procs: &Procs) -> BTreeMap<String, f64> {
    snapshot(procs, pss_kib)
}

/// Anonymous memory of each process, in MiB (see [`anon_kib`]).
pub fn anon_snapshot(procs: &Procs) -> BTreeMap<String, f64> {
    snapshot(procs, anon_kib)
}

fn snapshot(procs: &Procs, kib: fn(u32) -> Option<u64>) -> BTreeMap<String, f64> {
    procs
        .iter()
        .filter_map(|(n, p)| kib(*p).map(|k| (n.clone(), k as f64 / 1024.0)))
        .collect()
}

/// Each process's maximum RSS and PSS, in MiB.
#[derive(Debug, Clone, Default)]
pub struct Peaks {
    pub rss: BTreeMap<String, f64>,
    pub pss: BTreeMap<String, f64>,
}

impl Peaks {
    /// Keeps, per process, the larger of these peaks and a run's (`rss`, `pss`).
    pub fn merge(&mut self, rss: &BTreeMap<String, f64>, pss: &BTreeMap<String, f64>) {
        max_merge(&mut self.rss, rss);
        max_merge(&mut self.pss, pss);
    }
}

/// Samples resident memory (RSS and PSS) every 250 ms until dropped; keeps each process's
/// maximum of each.
pub struct RssSampler {
    max: Arc<Mutex<Peaks>>,
    task: tokio::task::JoinHandle<()>,
}

impl RssSampler {
    pub fn start(procs: Procs) -> Self {
        let max = Arc::new(Mutex::new(Peaks::default()));
        let max2 = max.clone();
        let task = tokio::spawn(async move {
            loop {
                let (rss, pss) = (rss_snapshot(&procs), pss_snapshot(&procs));
                if let Ok(mut m) = max2.lock() {
                    max_merge(&mut m.rss, &rss);
                    max_merge(&mut m.pss, &pss);
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        });
        Self { max, task }
    }

    /// The maxima seen, in MiB.
    pub fn finish(self) -> Peaks {
        self.task.abort();
        self.max.lock().map(|m| m.clone()).unwrap_or_default()
    }
}

/// `into` keeps, per name, the larger of its value and `from`'s.
pub fn max_merge(into: &mut BTreeMap<String, f64>, from: &BTreeMap<String, f64>) {
    for (k, v) in from {
        let e = into.entry(k.clone()).or_insert(0.0);
        *e = e.max(*v);
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cores: usize,
    pub cpu_model: String,
    pub memory_total_mib: u64,
    pub kernel: String,
    pub rustc: String,
    pub hostname: String,
    /// 1-minute load average when the run started: other work sharing the machine.
    pub loadavg_at_start: String,
}

pub fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|v| v.trim_start_matches([' ', '\t', ':']).trim().to_owned())
        .unwrap_or_default();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory_total_mib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(0, |k| k / 1024);
    let rustc = std::process::Command::new("rustc")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    Machine {
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        cpu_model,
        memory_total_mib,
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_owned(),
        rustc,
        hostname: std::fs::read_to_string("/proc/sys/kernel/hostname")
            .unwrap_or_default()
            .trim()
            .to_owned(),
        loadavg_at_start: std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
    }
}
