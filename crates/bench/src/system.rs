//! The systems under test: a real fleet (`fleet up`, every port 0) or the floor (bare hops),
//! each a set of processes on loopback with a gateway URL.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use crate::procfs::{self, Procs};

const START_TIMEOUT: Duration = Duration::from_secs(90);

/// The four services the footprint target is about.
pub const SERVICES: [&str; 4] = ["api-gateway", "order-api", "payment-api", "notification"];

/// One running system: its processes, its gateway, and (for a fleet) its desk.
pub struct System {
    pub label: String,
    pub gateway: String,
    pub desk: Option<String>,
    /// Every process that announced itself ready (for a fleet: each service and the desk), by
    /// name, with its URL.
    pub urls: HashMap<String, String>,
    /// The measured processes, by name (for a fleet: the `fleet run X` children).
    pub procs: Procs,
    children: Vec<Child>,
    dir: PathBuf,
    stopped: bool,
}

/// Starts `command`, relays its output to `log`, and returns the lines up to `until` (stdout).
async fn spawn_logged(
    mut cmd: Command,
    log: &Path,
    until: fn(&str) -> bool,
) -> anyhow::Result<(Child, Vec<String>)> {
    // No kill_on_drop: a SIGKILL would orphan fleet up's children; `System` sends SIGTERM.
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().context("spawning")?;
    let (tx, mut rx) = mpsc::unbounded_channel::<String>();
    let file = tokio::fs::File::create(log)
        .await
        .with_context(|| format!("creating {}", log.display()))?;
    let file = std::sync::Arc::new(tokio::sync::Mutex::new(tokio::io::BufWriter::new(file)));
    if let Some(stdout) = child.stdout.take() {
        let file = file.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            let mut announcing = true;
            while let Ok(Some(line)) = lines.next_line().await {
                if announcing {
                    let done = until(&line);
                    let _ = tx.send(line.clone());
                    if done {
                        announcing = false;
                    }
                }
                let mut f = file.lock().await;
                let _ = f.write_all(line.as_bytes()).await;
                let _ = f.write_all(b"\n").await;
            }
            let _ = file.lock().await.flush().await;
        });
    }
    if let Some(stderr) = child.stderr.take() {
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let mut f = file.lock().await;
                let _ = f.write_all(b"stderr| ").await;
                let _ = f.write_all(line.as_bytes()).await;
                let _ = f.write_all(b"\n").await;
            }
            let _ = file.lock().await.flush().await;
        });
    }
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + START_TIMEOUT;
    loop {
        tokio::select! {
            line = rx.recv() => match line {
                Some(line) => {
                    let done = until(&line);
                    seen.push(line);
                    if done { break; }
                }
                None => {
                    let status = child.wait().await?;
                    bail!("exited while starting ({status}); log: {}", log.display());
                }
            },
            () = tokio::time::sleep_until(deadline) => bail!("not ready within {START_TIMEOUT:?}; log: {}", log.display()),
        }
    }
    Ok((child, seen))
}

/// The services' default `MAX_IN_FLIGHT`. The bench's open-model runs stop sending at it, so
/// the fleet never sheds one of their requests and every answer is a whole checkout.
pub const FLEET_MAX_IN_FLIGHT: u64 = fleet_server_kit::DEFAULT_MAX_IN_FLIGHT as u64;

impl System {
    /// `fleet up` with every port 0 and a fresh SQLite file (or `database_url`).
    pub async fn fleet(
        bin: &Path,
        label: &str,
        traced: bool,
        database_url: Option<&str>,
        extra_env: &[(String, String)],
    ) -> anyhow::Result<System> {
        let dir = scratch_dir(label)?;
        let mut cmd = Command::new(bin);
        cmd.arg("up");
        cmd.arg("--any-ports");
        // Two fleets run at once (traced and untraced): each its own data dir, which `fleet up`
        // now insists on (one fleet per data dir).
        cmd.arg("--data-dir").arg(dir.join("fleet-data"));
        // The fleet figures are the services' cost; the desk is only their sink here, and its
        // persistence (an fsync per export group) would take CPU from them on 2 cores. The desk
        // section measures persistence on its own.
        cmd.arg("--desk-memory-only");
        match database_url {
            Some(url) => cmd.arg("--database-url").arg(url),
            None => cmd.arg("--sqlite-path").arg(dir.join("orders.sqlite")),
        };
        cmd.env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .env_remove("DATABASE_URL")
            .env_remove("MAX_IN_FLIGHT")
            .env("OTEL_SDK_DISABLED", if traced { "false" } else { "true" })
            .envs(extra_env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let (child, lines) = spawn_logged(cmd, &dir.join("fleet.log"), |l| l == "fleet:up")
            .await
            .with_context(|| format!("starting fleet {label}"))?;
        let mut ready: HashMap<String, String> = HashMap::new();
        for line in &lines {
            if let Some(rest) = line.strip_prefix("fleet:ready ")
                && let Some((name, url)) = rest.split_once(' ')
            {
                ready.insert(name.to_owned(), url.trim().to_owned());
            }
        }
        let pid = child.id().ok_or_else(|| anyhow!("fleet up has no pid"))?;
        let procs = procfs::children_running(pid, "run");
        if procs.len() < 5 {
            bail!("found only {procs:?} under fleet up ({pid})");
        }
        Ok(System {
            label: label.to_owned(),
            gateway: ready
                .get("api-gateway")
                .cloned()
                .ok_or_else(|| anyhow!("no api-gateway ready line"))?,
            desk: ready.get("desk").cloned(),
            urls: ready,
            procs,
            children: vec![child],
            dir,
            stopped: false,
        })
    }

    /// The floor: five bare processes (`fleet-bench floor ROLE`), no database, no telemetry.
    pub async fn floor(provider_latency_ms: u64) -> anyhow::Result<System> {
        let dir = scratch_dir("floor")?;
        let exe = std::env::current_exe().context("finding fleet-bench")?;
        let mut children = Vec::new();
        let mut procs = Vec::new();
        let start = |role: &'static str, env: Vec<(&'static str, String)>| {
            let exe = exe.clone();
            let log = dir.join(format!("{role}.log"));
            async move {
                let mut cmd = Command::new(exe);
                cmd.arg("floor").arg(role).envs(env);
                let (child, lines) = spawn_logged(cmd, &log, |l| l.starts_with("floor:listening "))
                    .await
                    .with_context(|| format!("starting floor {role}"))?;
                let addr = lines
                    .iter()
                    .find_map(|l| l.strip_prefix("floor:listening "))
                    .map(str::to_owned)
                    .ok_or_else(|| anyhow!("floor {role} announced no address"))?;
                anyhow::Ok((child, addr))
            }
        };
        let (c, provider) = start(
            "provider",
            vec![("PROVIDER_LATENCY_MS", provider_latency_ms.to_string())],
        )
        .await?;
        procs.push(("payment-provider".to_owned(), c.id().unwrap_or(0)));
        children.push(c);
        let (c, payment) = start(
            "payment",
            vec![("FLOOR_PROVIDER_URL", format!("http://{provider}"))],
        )
        .await?;
        procs.push(("payment-api".to_owned(), c.id().unwrap_or(0)));
        children.push(c);
        let (c, notification) = start("notification", vec![]).await?;
        procs.push(("notification".to_owned(), c.id().unwrap_or(0)));
        children.push(c);
        let (c, order) = start(
            "order",
            vec![("FLOOR_PAYMENT_ADDR", format!("http://{payment}"))],
        )
        .await?;
        procs.push(("order-api".to_owned(), c.id().unwrap_or(0)));
        children.push(c);
        let (c, gateway) = start(
            "gateway",
            vec![
                ("FLOOR_ORDER_URL", format!("http://{order}")),
                ("FLOOR_NOTIFICATION_ADDR", format!("http://{notification}")),
            ],
        )
        .await?;
        procs.push(("api-gateway".to_owned(), c.id().unwrap_or(0)));
        children.push(c);
        procs.sort();
        Ok(System {
            label: "floor".to_owned(),
            gateway: format!("http://{gateway}"),
            desk: None,
            urls: HashMap::new(),
            procs,
            children,
            dir,
            stopped: false,
        })
    }

    /// Whether every process we started is still running.
    pub fn alive(&mut self) -> bool {
        self.children
            .iter_mut()
            .all(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// The last stderr lines of the system's logs (why it stopped, when it did).
    pub fn stderr_tail(&self, n: usize) -> String {
        let mut lines: Vec<String> = std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
            .filter_map(|e| std::fs::read_to_string(e.path()).ok())
            .flat_map(|t| {
                t.lines()
                    .filter(|l| l.starts_with("stderr| "))
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .collect();
        let keep = lines.len().saturating_sub(n);
        lines.drain(..keep);
        lines.join(" / ")
    }

    /// SIGTERM to every process we started (fleet up stops its own children), then wait.
    pub async fn stop(mut self) {
        self.signal_all();
        for child in &mut self.children {
            if tokio::time::timeout(Duration::from_secs(20), child.wait())
                .await
                .is_err()
            {
                let _ = child.kill().await;
            }
        }
        self.stopped = true;
        let _ = std::fs::remove_dir_all(&self.dir);
    }

    fn signal_all(&self) {
        for child in self.children.iter().rev() {
            if let Some(id) = child.id() {
                let _ = kill(Pid::from_raw(id as i32), Signal::SIGTERM);
            }
        }
    }
}

impl Drop for System {
    fn drop(&mut self) {
        if !self.stopped {
            // fleet up stops its children on SIGTERM.
            self.signal_all();
        }
    }
}

pub fn scratch_dir(label: &str) -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("fleet-bench-{}-{label}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}
