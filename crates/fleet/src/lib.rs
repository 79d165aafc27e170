//! `fleet`: run the whole tracing fleet on a laptop, or any one of its services. The binary
//! (src/main.rs) is a thin shell over these modules; the e2e tests use them too.

pub mod course;
pub mod load;
pub mod quiz;
pub mod scenario;
pub mod supervisor;
pub mod topology;
pub mod traces;
pub mod up;

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "fleet",
    version,
    about = "A traced checkout fleet for learning distributed tracing with Grafana Tempo"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the trace desk, the payment provider and the four services, each its own process.
    Up(up::UpArgs),
    /// Send checkout traffic to the gateway and summarise what happened.
    Load(load::LoadArgs),
    /// Break the fleet on purpose: list, turn on or off the named fault scenarios.
    Scenario(scenario::ScenarioArgs),
    /// A hidden fault, some traffic, one question: which service and operation is to blame?
    Quiz(quiz::QuizArgs),
    /// The course, step by step: ten labs on this fleet, each with a check.
    Course(course::CourseArgs),
    /// Print one trace as a waterfall (from the desk or any Tempo).
    Trace(traces::TraceArgs),
    /// List recent or matching traces (from the desk or any Tempo).
    Traces(traces::TracesArgs),
    /// Run one component in this process (configured from the environment, as in a container).
    Run {
        #[arg(value_parser = clap::builder::PossibleValuesParser::new(topology::names()))]
        service: String,
    },
}

impl Cli {
    /// Whether this invocation runs one of the fleet's services (`fleet run NAME`, not the desk),
    /// which gets a runtime sized for a small service rather than for the machine.
    pub fn runs_a_service(&self) -> bool {
        matches!(&self.command, Command::Run { service } if service != topology::DESK)
    }

    /// Runs the command to completion on the runtime it needs: `fleet run <service>` the same
    /// small runtime as the service's own binary, everything else tokio's defaults (a worker
    /// per core). The binary's `main` calls only this, a plain function: had it awaited
    /// [`Cli::run`] itself, rustc would compile the whole async call tree again in the binary
    /// (the futures' bodies are not exported from this crate), which made the `fleet` binary
    /// the longest unit of a cold build (docs/performance.md).
    pub fn run_to_completion(self) -> anyhow::Result<()> {
        if self.runs_a_service() {
            return fleet_server_kit::block_on_service(Box::pin(self.run()));
        }
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
            .block_on(self.run())
    }

    pub async fn run(self) -> anyhow::Result<()> {
        match self.command {
            Command::Up(args) => up::up(args).await,
            Command::Load(args) => load::run(args).await,
            Command::Scenario(args) => scenario::run(args).await,
            Command::Quiz(args) => quiz::run(args, course::record_puzzle).await,
            Command::Course(args) => course::run(args).await,
            Command::Trace(args) => traces::trace(args).await,
            Command::Traces(args) => traces::traces(args).await,
            Command::Run { service } => run_component(&service).await,
        }
    }
}

/// Checks `FLEET_FAULTS` against every service's fault points. Each service arms only its own
/// points and leaves the rest to their owners, so a misspelt point would arm nothing anywhere:
/// the fleet, which knows them all, refuses it before anything starts.
pub fn check_fleet_faults(text: &str) -> anyhow::Result<()> {
    let faults = fleet_faults::parse_faults(text).context("FLEET_FAULTS")?;
    for point in faults.keys() {
        if topology::fault_point_owner(point).is_none() {
            let known: Vec<_> = topology::fault_points().map(|(_, p)| p.name).collect();
            bail!(
                "FLEET_FAULTS: no service has the fault point {point:?}; known points: {}",
                known.join(", ")
            );
        }
    }
    Ok(())
}

/// Runs the topology component `name` in this process, with each service's own entry point.
pub async fn run_component(name: &str) -> anyhow::Result<()> {
    check_fleet_faults(&std::env::var("FLEET_FAULTS").unwrap_or_default())?;
    match name {
        topology::GATEWAY => api_gateway::run_from_env().await,
        topology::ORDER_API => order_api::run_from_env().await,
        topology::PAYMENT_API => payment_api::run_from_env().await,
        topology::NOTIFICATION => notification::run_from_env().await,
        topology::PROVIDER => payment_provider::run_from_env().await,
        topology::DESK => trace_desk::run_from_env().await,
        other => bail!("no component {other:?} (one of {:?})", topology::names()),
    }
}
