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
}

pub async fn run(repo: &Path) -> anyhow::Result<ColdBuild> {
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
        .args([
            "build",
            "--release",
            "--workspace",
            "--locked",
            "--offline",
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
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(ColdBuild {
        command: "cargo build --release --workspace --locked --offline (fresh CARGO_TARGET_DIR)"
            .into(),
        seconds,
        crates_compiled: packages.len(),
        workspace_crates: workspace.len(),
        units,
        jobs: std::thread::available_parallelism().map_or(1, |n| n.get()),
        cargo: version,
    })
}
