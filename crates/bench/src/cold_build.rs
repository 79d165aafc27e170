//! Cold `cargo build --release` of the workspace: a scratch copy of the tracked (and new,
//! unignored) files, its own target directory, the registry already downloaded (`--offline`),
//! so the figure is compile time, not download time.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context as _, bail};
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct ColdBuild {
    pub command: String,
    pub seconds: f64,
    /// Distinct packages compiled (every `compiler-artifact` that was not fresh).
    pub crates_compiled: usize,
    /// Of which the workspace's own.
    pub workspace_crates: usize,
    /// Compiler artifacts, build scripts and their runs included.
    pub units: usize,
    pub jobs: usize,
    pub cargo: String,
    /// The ten longest compiler units from `cargo build --timings`, longest first.
    pub longest_units: Vec<UnitTime>,
    /// Every unit's time added up: the core-seconds the build needs, however it overlaps.
    pub unit_seconds: f64,
}

/// One compiler unit of `cargo build --timings`: a crate's lib, bin, build script, ...
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct UnitTime {
    pub name: String,
    pub version: String,
    /// `lib`, `bin "fleet"`, `build-script`, `run-custom-build`, ... as cargo names it.
    pub target: String,
    pub seconds: f64,
}

/// The `UNIT_DATA` array of a `cargo-timing.html` report, every unit, longest first. Cargo has
/// no stable machine-readable timings (`--timings=json` is nightly-only), so this reads the
/// JSON the HTML report embeds for its charts.
pub fn unit_times(html: &str) -> anyhow::Result<Vec<UnitTime>> {
    let start = html
        .find("const UNIT_DATA = ")
        .context("no UNIT_DATA in the timings report")?
        + "const UNIT_DATA = ".len();
    let len = html[start..]
        .find("];")
        .context("UNIT_DATA is not closed")?
        + 1;
    let units: Vec<serde_json::Value> =
        serde_json::from_str(&html[start..start + len]).context("UNIT_DATA is not JSON")?;
    let mut units: Vec<UnitTime> = units
        .iter()
        .map(|u| UnitTime {
            name: u["name"].as_str().unwrap_or_default().to_owned(),
            version: u["version"].as_str().unwrap_or_default().to_owned(),
            // Cargo leaves a library's target blank.
            target: match u["target"].as_str().unwrap_or_default().trim() {
                "" => "lib".to_owned(),
                t => t.to_owned(),
            },
            seconds: u["duration"].as_f64().unwrap_or(0.0),
        })
        .collect();
    units.sort_by(|a, b| b.seconds.total_cmp(&a.seconds));
    Ok(units)
}

/// What `make bench` builds cold: the workspace as the release images are built.
pub const WORKSPACE: &[&str] = &["--release", "--workspace"];

/// A newcomer's first `fleet up` from a fresh clone (the README's command).
pub const NEWCOMER: &[&str] = &["--profile", "quick", "-p", "fleet"];

/// `cargo build <selection> --locked --offline --timings` in a fresh copy of the repository.
pub async fn run(repo: &Path, selection: &[&str]) -> anyhow::Result<ColdBuild> {
    let scratch = crate::system::scratch_dir("cold-build")?;
    let files = std::process::Command::new("git")
        .args([
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ])
        .current_dir(repo)
        .output()
        .context("git ls-files")?;
    if !files.status.success() {
        bail!("git ls-files failed");
    }
    for rel in files.stdout.split(|b| *b == 0).filter(|s| !s.is_empty()) {
        let rel = String::from_utf8_lossy(rel).into_owned();
        let (from, to) = (repo.join(&rel), scratch.join(&rel));
        if !from.is_file() {
            continue;
        }
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::copy(&from, &to).with_context(|| format!("copying {rel}"))?;
    }
    let target = scratch.join("target");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let t0 = Instant::now();
    let out = tokio::process::Command::new(&cargo)
        .arg("build")
        .args(selection)
        .args([
            "--locked",
            "--offline",
            "--timings",
            "--message-format",
            "json",
        ])
        .current_dir(&scratch)
        .env("CARGO_TARGET_DIR", &target)
        .env_remove("RUSTC_WRAPPER")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .context("running cargo build")?;
    let seconds = t0.elapsed().as_secs_f64();
    if !out.status.success() {
        bail!(
            "cold build failed: {}",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .rev()
                .take(20)
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    let mut packages = BTreeSet::new();
    let mut workspace = BTreeSet::new();
    let mut units = 0;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if v["reason"] == "compiler-artifact" && v["fresh"] == false {
            units += 1;
            let id = v["package_id"].as_str().unwrap_or_default().to_owned();
            if id.starts_with("path+file://") {
                workspace.insert(id.clone());
            }
            packages.insert(id);
        }
    }
    let version = std::process::Command::new(&cargo)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let report = target.join("cargo-timings").join("cargo-timing.html");
    let mut all = unit_times(
        &std::fs::read_to_string(&report).with_context(|| format!("{}", report.display()))?,
    )?;
    let _ = std::fs::remove_dir_all(&scratch);
    let unit_seconds = all.iter().map(|u| u.seconds).sum();
    all.truncate(10);
    Ok(ColdBuild {
        longest_units: all,
        unit_seconds,
        command: format!(
            "cargo build {} --locked --offline --timings (fresh CARGO_TARGET_DIR)",
            selection.join(" ")
        ),
        seconds,
        crates_compiled: packages.len(),
        workspace_crates: workspace.len(),
        units,
        jobs: std::thread::available_parallelism().map_or(1, |n| n.get()),
        cargo: version,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A report as cargo 1.95 writes it, cut down to what is read.
    #[test]
    fn the_longest_units_come_first() {
        let html = r#"<script>
DURATION = 9;
const UNIT_DATA = [
  {"i": 0, "name": "syn", "version": "2.0.1", "target": " lib", "start": 0.1, "duration": 4.5},
  {"i": 1, "name": "fleet", "version": "0.1.0", "target": " fleet \"bin\"", "start": 5.0, "duration": 30.25},
  {"i": 2, "name": "ring", "version": "0.17.1", "target": " build script (run)", "start": 0.2, "duration": 12.0}
];
const CONCURRENCY_DATA = [];
</script>"#;
        let units = unit_times(html).unwrap();
        assert_eq!(units.len(), 3);
        assert_eq!(units.iter().map(|u| u.seconds).sum::<f64>(), 46.75);
        assert_eq!(
            units[..2],
            vec![
                UnitTime {
                    name: "fleet".into(),
                    version: "0.1.0".into(),
                    target: "fleet \"bin\"".into(),
                    seconds: 30.25
                },
                UnitTime {
                    name: "ring".into(),
                    version: "0.17.1".into(),
                    target: "build script (run)".into(),
                    seconds: 12.0
                },
            ]
        );
        assert!(unit_times("<html></html>").is_err());
    }
}
