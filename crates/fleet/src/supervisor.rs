//! The process side of `fleet up`: start a component as `fleet run NAME` in its own process
//! group, restart it with backoff when it crashes, and stop the fleet within a bound.
//!
//! Policy (docs/reliability.md, "The supervisor"):
//! - a component that exits on its own is restarted on the address it had, after
//!   [`BACKOFF_START`] doubling per crash up to [`BACKOFF_MAX`]; the others keep serving;
//! - [`CRASH_LIMIT`] crashes of one component within [`CRASH_WINDOW`] stop the whole fleet with
//!   an error;
//! - stopping sends SIGTERM in reverse start order and SIGKILLs whatever is still running at
//!   [`STOP_BUDGET`].

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::topology::Component;

/// How long a component may take to announce its listeners and answer its readiness path.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// The first restart waits this long; each further crash (within the window) doubles it.
pub const BACKOFF_START: Duration = Duration::from_millis(500);
pub const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// This many crashes of one component within [`CRASH_WINDOW`] and the fleet gives up.
pub const CRASH_LIMIT: usize = 5;
pub const CRASH_WINDOW: Duration = Duration::from_secs(60);
/// The whole fleet stops within this, whatever its components (or their collector) do.
pub const STOP_BUDGET: Duration = Duration::from_secs(5);
/// The first component stopped (the gateway) gets at most this to drain before the next one is
/// asked; every later one gets an equal share of what is left of [`STOP_BUDGET`].
pub const FIRST_STOP_SLOT: Duration = Duration::from_secs(2);

/// The delay before restart number `crashes` (1-based, counted within the window).
pub fn backoff(crashes: usize) -> Duration {
    let doublings = crashes.saturating_sub(1).min(16) as u32;
    BACKOFF_START
        .saturating_mul(1 << doublings)
        .min(BACKOFF_MAX)
}

/// A started component: its process and the addresses it announced, by listener label.
pub struct Started {
    pub child: Child,
    pub listening: HashMap<String, SocketAddr>,
}

/// Starts `fleet run NAME` with `vars`, relays its output with a name prefix, and returns once
/// it has announced every listener and answers its readiness path.
pub async fn start(
    component: &'static Component,
    vars: &[(String, String)],
) -> anyhow::Result<Started> {
    let name = component.name;
    let exe = std::env::current_exe().context("cannot find the fleet executable")?;
    let mut cmd = Command::new(exe);
    cmd.arg("run")
        .arg(name)
        .env("FLEET_ANNOUNCE", "1")
        .env("FLEET_EXIT_WITH_PARENT", "1")
        .envs(vars.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group: a terminal's Ctrl-C reaches `fleet up` alone, which then stops
        // the components in order (the gateway first) instead of all at once.
        .process_group(0)
        .kill_on_drop(true);
    if std::env::var_os("LOG_FORMAT").is_none() {
        cmd.env("LOG_FORMAT", "text");
    }
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start {name}"))?;
    let (tx, mut rx) = mpsc::unbounded_channel::<(String, SocketAddr)>();
    if let Some(stdout) = child.stdout.take() {
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                match parse_announce(&line) {
                    Some(announce) => {
                        let _ = tx.send(announce);
                    }
                    None => println!("{name:>16} | {line}"),
                }
            }
        });
    }
    if let Some(stderr) = child.stderr.take() {
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                eprintln!("{name:>16} | {line}");
            }
        });
    }
    let mut listening = HashMap::new();
    let deadline = Instant::now() + READY_TIMEOUT;
    while component
        .listeners
        .iter()
        .any(|l| !listening.contains_key(l.label))
    {
        tokio::select! {
            msg = rx.recv() => match msg {
                Some((label, addr)) => { listening.insert(label, addr); }
                None => {
                    let status = child.wait().await?;
                    bail!("{name} exited before it was listening ({})", describe(status));
                }
            },
            () = tokio::time::sleep_until(deadline) => bail!("{name} did not start listening within {READY_TIMEOUT:?}"),
        }
    }
    let mut started = Started { child, listening };
    wait_ready(component, &mut started).await?;
    Ok(started)
}

/// `fleet:listening <label> <addr>`, as printed by `fleet_server_kit::bind` and the desk.
fn parse_announce(line: &str) -> Option<(String, SocketAddr)> {
    let rest = line.strip_prefix("fleet:listening ")?;
    let (label, addr) = rest.split_once(' ')?;
    Some((label.to_owned(), addr.trim().parse().ok()?))
}

impl Started {
    /// The address of listener `label`.
    pub fn addr(&self, label: &str) -> anyhow::Result<SocketAddr> {
        self.listening
            .get(label)
            .copied()
            .ok_or_else(|| anyhow!("no address announced for {label}"))
    }
}

async fn wait_ready(component: &Component, started: &mut Started) -> anyhow::Result<()> {
    let addr = started.addr(component.main_listener().label)?;
    let url = format!("http://{addr}{}", component.ready_path);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if let Some(status) = started.child.try_wait()? {
            bail!(
                "{} exited while starting ({})",
                component.name,
                describe(status)
            );
        }
        if let Ok(r) = client.get(&url).send().await
            && r.status().is_success()
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "{} was not ready at {url} within {READY_TIMEOUT:?}",
                component.name
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `exit code 3` or `signal 9`.
pub fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt as _;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(signal)) => format!("signal {signal}"),
        (None, None) => status.to_string(),
    }
}

enum State {
    Running(Child),
    /// Crashed; restarts at the instant.
    Waiting(Instant),
    Starting(JoinHandle<anyhow::Result<Started>>),
}

/// One supervised component.
pub struct Slot {
    pub component: &'static Component,
    /// What it was started with; a restart pins every listener to its first address.
    vars: Vec<(String, String)>,
    pub listening: HashMap<String, SocketAddr>,
    state: State,
    pub restarts: u32,
    /// Restarted since the last state-file write; `supervise` announces it after the write.
    restarted: bool,
    crashes: VecDeque<Instant>,
}

impl Slot {
    pub fn new(
        component: &'static Component,
        vars: Vec<(String, String)>,
        started: Started,
    ) -> Slot {
        let Started { child, listening } = started;
        // Callers were given these addresses: a restart must come back on the same ones
        // (the ports may have been 0, i.e. picked by the kernel, the first time).
        let vars = vars
            .into_iter()
            .map(|(k, v)| {
                let pinned = component
                    .listeners
                    .iter()
                    .find(|l| l.listen_env == k)
                    .and_then(|l| listening.get(l.label));
                match pinned {
                    Some(addr) => (k, addr.to_string()),
                    None => (k, v),
                }
            })
            .collect();
        Slot {
            component,
            vars,
            listening,
            state: State::Running(child),
            restarts: 0,
            restarted: false,
            crashes: VecDeque::new(),
        }
    }

    pub fn pid(&self) -> Option<u32> {
        match &self.state {
            State::Running(child) => child.id(),
            _ => None,
        }
    }

    pub fn addr(&self, label: &str) -> anyhow::Result<SocketAddr> {
        self.listening
            .get(label)
            .copied()
            .ok_or_else(|| anyhow!("{} did not announce {label}", self.component.name))
    }

    /// Notes a crash now; fails once the component has crashed [`CRASH_LIMIT`] times within
    /// [`CRASH_WINDOW`], else schedules the restart and says so.
    fn crashed(&mut self, what: &str) -> anyhow::Result<()> {
        let now = Instant::now();
        self.crashes.push_back(now);
        while self
            .crashes
            .front()
            .is_some_and(|t| now.duration_since(*t) > CRASH_WINDOW)
        {
            self.crashes.pop_front();
        }
        let name = self.component.name;
        if self.crashes.len() >= CRASH_LIMIT {
            bail!(
                "{name} {what}: {CRASH_LIMIT} crashes within {}s; giving up and stopping the fleet",
                CRASH_WINDOW.as_secs()
            );
        }
        let delay = backoff(self.crashes.len());
        self.restarts += 1;
        println!(
            "fleet: {name} {what}; restarting in {}s (restart {})",
            delay.as_secs_f64(),
            self.restarts
        );
        self.state = State::Waiting(now + delay);
        Ok(())
    }

    /// Moves the slot along: notices a crash, starts a due restart, adopts a finished one.
    /// Returns true when something changed that the state file should show.
    async fn tick(&mut self) -> anyhow::Result<bool> {
        match &mut self.state {
            State::Running(child) => match child.try_wait()? {
                Some(status) => {
                    self.crashed(&format!("exited ({})", describe(status)))?;
                    Ok(true)
                }
                None => Ok(false),
            },
            State::Waiting(at) => {
                if Instant::now() >= *at {
                    let component = self.component;
                    let vars = self.vars.clone();
                    self.state =
                        State::Starting(tokio::spawn(async move { start(component, &vars).await }));
                }
                Ok(false)
            }
            State::Starting(handle) => {
                if !handle.is_finished() {
                    return Ok(false);
                }
                match handle.await {
                    Ok(Ok(started)) => {
                        self.listening = started.listening;
                        self.state = State::Running(started.child);
                        // Announced by `supervise` once the state file shows the new pid.
                        self.restarted = true;
                        Ok(true)
                    }
                    Ok(Err(e)) => {
                        self.crashed(&format!("failed to restart ({e:#})"))?;
                        Ok(true)
                    }
                    Err(e) => {
                        self.crashed(&format!("failed to restart ({e})"))?;
                        Ok(true)
                    }
                }
            }
        }
    }
}

/// What `fleet scenario status` reads: who runs where, with how many restarts.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct FleetState {
    pub pid: u32,
    pub components: Vec<ComponentState>,
}

#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct ComponentState {
    pub name: String,
    pub pid: Option<u32>,
    pub url: String,
    pub restarts: u32,
}

/// The state file's name inside the data dir.
pub const STATE_FILE: &str = "fleet-state.json";

impl FleetState {
    pub fn of(slots: &[Slot]) -> FleetState {
        FleetState {
            pid: std::process::id(),
            components: slots
                .iter()
                .map(|s| ComponentState {
                    name: s.component.name.to_owned(),
                    pid: s.pid(),
                    url: s
                        .addr(s.component.main_listener().label)
                        .map(|a| format!("http://{a}"))
                        .unwrap_or_default(),
                    restarts: s.restarts,
                })
                .collect(),
        }
    }

    /// Written whole to a temporary file and renamed, so a reader never sees half of it.
    pub fn write(&self, data_dir: &Path) -> anyhow::Result<()> {
        let path = data_dir.join(STATE_FILE);
        let tmp = data_dir.join(format!("{STATE_FILE}.tmp"));
        std::fs::write(&tmp, serde_json::to_vec_pretty(self)?)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))?;
        Ok(())
    }

    pub fn read(data_dir: &Path) -> Option<FleetState> {
        let text = std::fs::read(data_dir.join(STATE_FILE)).ok()?;
        serde_json::from_slice(&text).ok()
    }
}

/// Keeps the fleet running until Ctrl-C/SIGTERM (`Ok`) or until a component keeps crashing
/// (`Err`). Restarts crashed components meanwhile and keeps the state file current.
pub async fn supervise(
    slots: &mut [Slot],
    stop: &mut (impl Future<Output = ()> + Unpin),
    data_dir: &Path,
) -> anyhow::Result<()> {
    loop {
        tokio::select! {
            () = &mut *stop => return Ok(()),
            () = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
        let mut changed = false;
        for slot in slots.iter_mut() {
            changed |= slot.tick().await?;
        }
        if changed && let Err(e) = FleetState::of(slots).write(data_dir) {
            eprintln!("fleet: {e:#}");
        }
        // After the write, so whoever reads the line finds the restarted child in the file.
        for slot in slots.iter_mut().filter(|s| s.restarted) {
            slot.restarted = false;
            println!("fleet:restarted {} {}", slot.component.name, slot.restarts);
        }
    }
}

/// Stops every component within [`STOP_BUDGET`]: SIGTERM in reverse start order, each given a
/// slot to exit before the next is asked (the first [`FIRST_STOP_SLOT`], later ones an equal
/// share of what is left), then SIGKILL for whatever is still running at the deadline.
pub async fn stop_all(slots: &mut [Slot]) {
    let deadline = Instant::now() + STOP_BUDGET;
    let mut children: Vec<(&'static str, Child)> = Vec::new();
    for slot in slots.iter_mut().rev() {
        match std::mem::replace(&mut slot.state, State::Waiting(deadline)) {
            State::Running(child) => children.push((slot.component.name, child)),
            // A restart in progress has nothing in flight: aborting drops (and kills) it.
            State::Starting(handle) => handle.abort(),
            State::Waiting(_) => {}
        }
    }
    let count = children.len();
    for (i, (_, child)) in children.iter_mut().enumerate() {
        if let Some(id) = child.id() {
            let _ = kill(Pid::from_raw(id as i32), Signal::SIGTERM);
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        let slot = if i == 0 {
            FIRST_STOP_SLOT.min(remaining)
        } else {
            remaining / (count - i) as u32
        };
        // Not done in its slot: it goes on stopping while the next one is asked.
        let _ = tokio::time::timeout(slot, child.wait()).await;
    }
    for (name, child) in &mut children {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if tokio::time::timeout(remaining, child.wait()).await.is_err() {
            println!(
                "fleet: {name} did not stop within {}s; killed it (SIGKILL)",
                STOP_BUDGET.as_secs()
            );
            let _ = child.kill().await;
        }
    }
}

/// The data dir's admin token file (mode 0600).
pub fn token_path(data_dir: &Path) -> PathBuf {
    data_dir.join("admin-token")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_half_a_second_up_to_ten() {
        let secs: Vec<f64> = (1..=7).map(|n| backoff(n).as_secs_f64()).collect();
        assert_eq!(secs, [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]);
        assert_eq!(backoff(1000), BACKOFF_MAX);
    }

    #[test]
    fn announce_lines_parse() {
        assert_eq!(
            parse_announce("fleet:listening otlp-http 127.0.0.1:4318"),
            Some(("otlp-http".to_owned(), "127.0.0.1:4318".parse().unwrap()))
        );
        assert_eq!(parse_announce("hello"), None);
    }
}
