//! The process side of `fleet up`: start a component as `fleet run NAME`, watch it, stop the
//! fleet in reverse start order.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::topology::Component;

/// How long a component may take to announce its listeners and answer its readiness path.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long each component may take to stop before it is killed.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);

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

/// One running component.
pub struct Slot {
    pub component: &'static Component,
    pub listening: HashMap<String, SocketAddr>,
    child: Child,
}

impl Slot {
    pub fn new(
        component: &'static Component,
        _vars: Vec<(String, String)>,
        started: Started,
    ) -> Slot {
        Slot {
            component,
            listening: started.listening,
            child: started.child,
        }
    }

    pub fn addr(&self, label: &str) -> anyhow::Result<SocketAddr> {
        self.listening
            .get(label)
            .copied()
            .ok_or_else(|| anyhow!("{} did not announce {label}", self.component.name))
    }
}

/// Waits for Ctrl-C/SIGTERM (`Ok`), or for a component to die (`Err`: everything stops).
pub async fn supervise(
    slots: &mut [Slot],
    stop: &mut (impl Future<Output = ()> + Unpin),
) -> anyhow::Result<()> {
    loop {
        tokio::select! {
            () = &mut *stop => return Ok(()),
            () = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
        for slot in slots.iter_mut() {
            if let Some(status) = slot.child.try_wait()? {
                bail!(
                    "{} exited unexpectedly ({}); stopping the fleet",
                    slot.component.name,
                    describe(status)
                );
            }
        }
    }
}

/// Front door first, so nothing new arrives while the back ends drain.
pub async fn stop_all(slots: &mut [Slot]) {
    for slot in slots.iter_mut().rev() {
        if let Some(id) = slot.child.id() {
            let _ = kill(Pid::from_raw(id as i32), Signal::SIGTERM);
        }
        if tokio::time::timeout(STOP_TIMEOUT, slot.child.wait())
            .await
            .is_err()
        {
            eprintln!(
                "{} did not stop within {STOP_TIMEOUT:?}; killing it",
                slot.component.name
            );
            let _ = slot.child.kill().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announce_lines_parse() {
        assert_eq!(
            parse_announce("fleet:listening otlp-http 127.0.0.1:4318"),
            Some(("otlp-http".to_owned(), "127.0.0.1:4318".parse().unwrap()))
        );
        assert_eq!(parse_announce("hello"), None);
    }
}
