//! `fleet`: run the whole tracing fleet on a laptop, or any one of its services.

mod load;
mod quiz;
mod scenario;
mod traces;
mod up;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "fleet",
    version,
    about = "A traced checkout fleet for learning distributed tracing with Grafana Tempo"
)]
struct Cli {
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
    /// Print one trace as a waterfall (from the desk or any Tempo).
    Trace(traces::TraceArgs),
    /// List recent or matching traces (from the desk or any Tempo).
    Traces(traces::TracesArgs),
    /// Run one service in this process (configured from the environment, as in a container).
    Run {
        #[arg(value_enum)]
        service: Service,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum Service {
    ApiGateway,
    OrderApi,
    PaymentApi,
    Notification,
    PaymentProvider,
    Desk,
}

impl Service {
    pub fn name(self) -> &'static str {
        match self {
            Service::ApiGateway => "api-gateway",
            Service::OrderApi => "order-api",
            Service::PaymentApi => "payment-api",
            Service::Notification => "notification",
            Service::PaymentProvider => "payment-provider",
            Service::Desk => "desk",
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Up(args) => up::up(args).await,
        Command::Load(args) => load::run(args).await,
        Command::Scenario(args) => scenario::run(args).await,
        Command::Quiz(args) => quiz::run(args).await,
        Command::Trace(args) => traces::trace(args).await,
        Command::Traces(args) => traces::traces(args).await,
        Command::Run { service } => match service {
            Service::ApiGateway => api_gateway::run_from_env().await,
            Service::OrderApi => order_api::run_from_env().await,
            Service::PaymentApi => payment_api::run_from_env().await,
            Service::Notification => notification::run_from_env().await,
            Service::PaymentProvider => payment_provider::run_from_env().await,
            Service::Desk => trace_desk::run_from_env().await,
        },
    }
}
