//! payment-api: the gRPC `payment.v1.PaymentService`.
//!
//! `server` holds the service and its router, `client` the typed client order-api uses,
//! `provider` the "stripe-sdk" that calls the external provider over HTTP.

pub mod card;
pub mod client;
#[cfg(feature = "server")]
pub mod config;
#[cfg(feature = "server")]
pub mod provider;
#[cfg(feature = "server")]
pub mod server;

pub const SERVICE_NAME: &str = "payment-api";

#[cfg(feature = "server")]
pub use config::Config;
#[cfg(feature = "server")]
use fleet_server_kit::Running;

/// Starts payment-api on `config.listen_addr` (port 0 picks a free one). Telemetry is the
/// caller's: see [`run_from_env`].
#[cfg(feature = "server")]
pub async fn start(config: Config, faults: fleet_faults::Faults) -> anyhow::Result<Running> {
    let listener = fleet_server_kit::bind(&config.listen_addr, SERVICE_NAME).await?;
    let metrics = fleet_server_kit::Metrics::new(SERVICE_NAME).with_grpc(server::MAX_MESSAGE_BYTES);
    faults.count_in(&metrics);
    let max_in_flight = fleet_server_kit::InFlightLimit::new(config.max_in_flight)
        .lowered_by(faults.in_flight_limit(server::SHED));
    let app = server::router(&config, faults).await?;
    Running::spawn(listener, app, metrics, max_in_flight, true, async {})
}

/// The process edge: telemetry from `OTEL_*`, configuration from the environment, serve until
/// Ctrl-C/SIGTERM, drain, flush.
/// Boxed here, where its body is compiled (see `fleet_server_kit::ProcessMain`).
#[cfg(feature = "server")]
pub fn run_from_env() -> fleet_server_kit::ProcessMain {
    Box::pin(serve_from_env())
}

#[cfg(feature = "server")]
async fn serve_from_env() -> anyhow::Result<()> {
    fleet_server_kit::run(SERVICE_NAME, env!("CARGO_PKG_VERSION"), || async {
        start(
            Config::from_env()?,
            fleet_faults::Faults::from_env(SERVICE_NAME, server::FAULT_POINTS)?,
        )
        .await
    })
    .await
}
