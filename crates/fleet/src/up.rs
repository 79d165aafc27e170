//! `fleet up`: every component of the topology as its own process on loopback, started in
//! dependency order, each waited for until ready, restarted when it crashes, and stopped in
//! reverse order within a bound (src/supervisor.rs).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::{Arg, ArgMatches, Args, FromArgMatches};
use tokio::signal::unix::{SignalKind, signal};

use crate::supervisor::{self, FleetState, Slot};
use crate::topology::{self, COMPONENTS, Component, DESK, Listener};

#[derive(Args, Debug, Clone)]
pub struct UpArgs {
    /// Pick a free port for every component (as if every port flag were 0); the addresses are
    /// printed as `fleet:ready NAME URL` lines. For tests, benchmarks and a second fleet.
    #[arg(long)]
    any_ports: bool,
    /// Address every component listens on.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    #[command(flatten)]
    ports: Ports,
    /// PostgreSQL for order-api; without it order-api uses an embedded SQLite file.
    #[arg(long, env = "DATABASE_URL")]
    database_url: Option<String>,
    /// order-api's SQLite file when there is no database URL.
    #[arg(long, default_value = "fleet-data/orders.sqlite")]
    sqlite_path: String,
    /// Where the fleet keeps its state file and admin token (`fleet scenario` and `fleet quiz`
    /// read them from the same place).
    #[arg(long, env = "FLEET_DATA_DIR", default_value = "fleet-data")]
    data_dir: PathBuf,
    /// Keep the trace desk's traces in memory only, lost when it stops. Without it the desk
    /// keeps them in DATA_DIR/desk (its DESK_DATA_DIR) and they survive a restart of the fleet;
    /// a DESK_DATA_DIR in the environment is used as given (empty: memory only).
    #[arg(long)]
    desk_memory_only: bool,
}

impl UpArgs {
    /// The desk's `DESK_DATA_DIR` as `fleet up` sets it: `None` leaves the inherited variable
    /// alone, `Some("")` means memory only.
    fn desk_data_dir(&self) -> Option<String> {
        if self.desk_memory_only {
            return Some(String::new());
        }
        if std::env::var_os("DESK_DATA_DIR").is_some() {
            return None;
        }
        Some(self.data_dir.join("desk").to_string_lossy().into_owned())
    }

    /// Where the desk keeps its traces, for the summary.
    fn desk_persistence(&self) -> String {
        let dir = match self.desk_data_dir() {
            Some(dir) => dir,
            None => std::env::var("DESK_DATA_DIR").unwrap_or_default(),
        };
        if dir.trim().is_empty() {
            "traces in memory only".to_owned()
        } else {
            format!("traces kept in {dir} across restarts")
        }
    }
}

/// One `--NAME-port` flag per listener of the topology; a flag not given means its default.
#[derive(Debug, Clone, Default)]
pub struct Ports(BTreeMap<&'static str, u16>);

fn listeners() -> impl Iterator<Item = (&'static Component, &'static Listener)> {
    COMPONENTS
        .iter()
        .flat_map(|c| c.listeners.iter().map(move |l| (c, l)))
}

impl Ports {
    fn port(&self, listener: &Listener) -> u16 {
        self.0
            .get(listener.port_flag)
            .copied()
            .unwrap_or(listener.default_port)
    }
}

impl FromArgMatches for Ports {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let mut ports = Ports::default();
        ports.update_from_arg_matches(matches)?;
        Ok(ports)
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        for (_, l) in listeners() {
            if let Some(port) = matches.get_one::<u16>(l.port_flag) {
                self.0.insert(l.port_flag, *port);
            }
        }
        Ok(())
    }
}

impl Args for Ports {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        listeners().fold(cmd, |cmd, (c, l)| {
            let what = if c.listeners.len() > 1 {
                format!("{}'s {} port", c.name, l.label)
            } else {
                format!("{}'s port", c.name)
            };
            cmd.arg(
                Arg::new(l.port_flag)
                    .long(l.port_flag)
                    .value_name("PORT")
                    .value_parser(clap::value_parser!(u16))
                    .help(format!(
                        "{what} (default {}; 0 picks a free one)",
                        l.default_port
                    )),
            )
        })
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_args(cmd)
    }
}

/// The admin token every child gets: `FLEET_ADMIN_TOKEN` if set, else a fresh random one,
/// written to `DATA_DIR/admin-token` (0600) for `fleet scenario` and `fleet quiz`.
fn admin_token(data_dir: &Path) -> anyhow::Result<String> {
    let path = supervisor::token_path(data_dir);
    if let Some(token) = std::env::var("FLEET_ADMIN_TOKEN")
        .ok()
        .filter(|t| !t.trim().is_empty())
    {
        // A stale generated token would only mislead the tools; the caller knows theirs.
        let _ = std::fs::remove_file(&path);
        return Ok(token);
    }
    let token = uuid::Uuid::new_v4().simple().to_string();
    let _ = std::fs::remove_file(&path);
    let mut file = {
        use std::os::unix::fs::OpenOptionsExt as _;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("cannot create {}", path.display()))?
    };
    file.write_all(token.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(token)
}

pub async fn up(mut args: UpArgs) -> anyhow::Result<()> {
    crate::check_fleet_faults(&std::env::var("FLEET_FAULTS").unwrap_or_default())?;
    if args.any_ports {
        for (_, l) in listeners() {
            args.ports.0.insert(l.port_flag, 0);
        }
    }
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create {}", args.data_dir.display()))?;
    // Before anything starts: from here on Ctrl-C and SIGTERM mean "stop in order".
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut stop = Box::pin(async move {
        let what = tokio::select! {
            _ = int.recv() => "SIGINT",
            _ = term.recv() => "SIGTERM",
        };
        println!("fleet: {what} received; stopping");
    });
    // One fleet per data dir: a second one would overwrite the first's token and state file.
    if let Some(other) = FleetState::read(&args.data_dir)
        && other.pid != std::process::id()
        && nix::sys::signal::kill(nix::unistd::Pid::from_raw(other.pid as i32), None).is_ok()
    {
        anyhow::bail!(
            "another fleet up (pid {}) uses {}; stop it or pass --data-dir",
            other.pid,
            args.data_dir.display()
        );
    }
    // Claim the data dir at once (the components follow as they start).
    FleetState::of(&[]).write(&args.data_dir)?;
    let token = admin_token(&args.data_dir)?;
    let mut slots: Vec<Slot> = Vec::new();
    let started = tokio::select! {
        started = start_everything(&args, &token, &mut slots) => Some(started),
        () = &mut stop => None,
    };
    let outcome = match started {
        Some(Ok(())) => supervisor::supervise(&mut slots, &mut stop, &args.data_dir).await,
        Some(Err(e)) => Err(e),
        None => Ok(()),
    };
    if let Err(e) = &outcome {
        println!("fleet: {e:#}");
    }
    supervisor::stop_all(&mut slots).await;
    let _ = std::fs::remove_file(args.data_dir.join(supervisor::STATE_FILE));
    let _ = std::fs::remove_file(supervisor::token_path(&args.data_dir));
    println!("fleet:stopped");
    outcome
}

async fn start_everything(args: &UpArgs, token: &str, slots: &mut Vec<Slot>) -> anyhow::Result<()> {
    // Telemetry goes to the desk unless the caller points it elsewhere (a Collector, Tempo).
    let external = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT")
        .ok()
        .filter(|v| !v.is_empty());
    let without: &[&str] = if external.is_some() { &[DESK] } else { &[] };
    let grpc = std::env::var("OTEL_EXPORTER_OTLP_PROTOCOL").is_ok_and(|p| p.trim() == "grpc");

    for component in topology::start_order(without) {
        let mut vars: Vec<(String, String)> = component
            .listeners
            .iter()
            .map(|l| {
                (
                    l.listen_env.to_owned(),
                    format!("{}:{}", args.host, args.ports.port(l)),
                )
            })
            .collect();
        vars.push(("FLEET_ADMIN_TOKEN".into(), token.to_owned()));
        if component.traced {
            vars.push(("OTEL_SERVICE_NAME".into(), component.name.to_owned()));
            if std::env::var_os("OTEL_BSP_SCHEDULE_DELAY").is_none() {
                // Traces reach the desk within a second instead of the SDK's default five.
                vars.push(("OTEL_BSP_SCHEDULE_DELAY".into(), "1000".into()));
            }
        }
        for dep in component.depends_on {
            let Some(slot) = slots.iter().find(|s| s.component.name == *dep) else {
                // Left out on purpose (the desk, when telemetry goes elsewhere).
                continue;
            };
            let label = if *dep == DESK {
                if grpc {
                    topology::DESK_OTLP_GRPC
                } else {
                    topology::DESK_OTLP_HTTP
                }
            } else {
                slot.component.main_listener().label
            };
            vars.push((
                slot.component.caller_env.to_owned(),
                format!("http://{}", slot.addr(label)?),
            ));
        }
        if component.name == DESK
            && let Some(dir) = args.desk_data_dir()
        {
            vars.push(("DESK_DATA_DIR".into(), dir));
        }
        if component.name == topology::ORDER_API {
            match &args.database_url {
                Some(url) => vars.push(("DATABASE_URL".into(), url.clone())),
                None => vars.push(("SQLITE_PATH".into(), args.sqlite_path.clone())),
            }
        }
        let started = supervisor::start(component, &vars).await?;
        slots.push(Slot::new(component, vars, started));
    }
    FleetState::of(slots).write(&args.data_dir)?;
    summary(args, slots, external.as_deref())
}

fn summary(args: &UpArgs, slots: &[Slot], external: Option<&str>) -> anyhow::Result<()> {
    let main_addr = |slot: &Slot| -> anyhow::Result<SocketAddr> {
        slot.addr(slot.component.main_listener().label)
    };
    // Machine-readable lines first (tests and scripts read them), the front door first.
    for slot in slots.iter().rev() {
        println!(
            "fleet:ready {} http://{}",
            slot.component.name,
            main_addr(slot)?
        );
    }
    let database = match &args.database_url {
        Some(_) => "PostgreSQL (DATABASE_URL)".to_owned(),
        None => format!("SQLite file {}", args.sqlite_path),
    };
    println!();
    println!("The fleet is up:");
    for slot in slots.iter().rev() {
        let c = slot.component;
        let desk_about;
        let about = if c.name == topology::ORDER_API {
            database.as_str()
        } else if c.name == DESK {
            desk_about = format!("{}; {}", c.about, args.desk_persistence());
            desk_about.as_str()
        } else {
            c.about
        };
        let name = if c.name == DESK { "trace desk" } else { c.name };
        println!(
            "  {name:<17} {}://{}   {about}",
            c.protocol.scheme(),
            main_addr(slot)?
        );
    }
    if let Some(endpoint) = external {
        println!("  telemetry         {endpoint}   (OTEL_EXPORTER_OTLP_ENDPOINT)");
    }
    let gateway = slots
        .iter()
        .find(|s| s.component.name == topology::GATEWAY)
        .map(main_addr)
        .transpose()?;
    let desk = slots
        .iter()
        .find(|s| s.component.name == DESK)
        .map(main_addr)
        .transpose()?;
    println!();
    if let Some(gateway_addr) = gateway {
        println!("Place an order:");
        println!(
            "  curl -si http://{gateway_addr}/checkout -H 'content-type: application/json' \\\n    -d '{{\"customer_email\":\"ada@example.com\",\"items\":[{{\"sku\":\"COFFEE-250G\",\"quantity\":2}}],\"card_number\":\"4242424242424242\"}}'"
        );
    }
    if let Some(api) = desk {
        println!("Then read its trace (the x-trace-id header):");
        println!(
            "  open http://{api}/trace/TRACE_ID   or   fleet trace TRACE_ID --tempo http://{api}"
        );
        println!("Break it on purpose: fleet scenario list; fleet quiz start");
    }
    println!(
        "Admin token: {} (fleet scenario and fleet quiz read it from there)",
        if std::env::var("FLEET_ADMIN_TOKEN").is_ok_and(|t| !t.trim().is_empty()) {
            "FLEET_ADMIN_TOKEN".to_owned()
        } else {
            supervisor::token_path(&args.data_dir).display().to_string()
        }
    );
    println!(
        "A crashed component is restarted; Ctrl-C stops everything (within {}s).",
        supervisor::STOP_BUDGET.as_secs()
    );
    println!("fleet:up");
    Ok(())
}
