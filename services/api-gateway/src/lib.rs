//! api-gateway: the request a user makes. Calls order-api over HTTP and notification over gRPC,
//! and hands every caller the trace id (`x-trace-id`, `traceresponse`) to paste into Grafana.
//!
//! `server` holds the router and handlers, `client` the typed client for the gateway's callers
//! (tests, load generators).

pub mod client;
#[cfg(feature = "server")]
pub mod config;
pub mod model;
#[cfg(feature = "server")]
pub mod server;

pub const SERVICE_NAME: &str = "api-gateway";

#[cfg(feature = "server")]
pub use config::Config;
#[cfg(feature = "server")]
use fleet_server_kit::Running;

/// How long a stopping gateway waits for confirmation emails still being sent.
#[cfg(feature = "server")]
pub const BACKGROUND_DEADLINE: std::time::Duration = std::time::Duration::from_secs(1);

/// Starts api-gateway on `config.listen_addr` (port 0 picks a free one). Telemetry is the
/// caller's: see [`run_from_env`].
#[cfg(feature = "server")]
pub async fn start(config: Config, faults: fleet_faults::Faults) -> anyhow::Result<Running> {
    let listener = fleet_server_kit::bind(&config.listen_addr, SERVICE_NAME).await?;
    let background = tokio_util::task::TaskTracker::new();
    let metrics = fleet_server_kit::Metrics::new(SERVICE_NAME);
    faults.count_in(&metrics);
    let max_in_flight = fleet_server_kit::InFlightLimit::new(config.max_in_flight)
        .lowered_by(faults.in_flight_limit(server::SHED));
    let app = server::router(&config, faults, background.clone(), &metrics)?;
    let dropped = metrics.counter(
        "gateway_emails_dropped_at_stop",
        &format!(
            "Confirmation emails still sending when a stopping gateway's {} ms deadline \
             (BACKGROUND_DEADLINE) passed, and so dropped",
            BACKGROUND_DEADLINE.as_millis()
        ),
    );
    Running::spawn(listener, app, metrics, max_in_flight, true, async move {
        // Confirmation emails go out beside the reply: let those in flight finish (bounded).
        background.close();
        if tokio::time::timeout(BACKGROUND_DEADLINE, background.wait())
            .await
            .is_err()
        {
            let left = background.len();
            dropped.inc_by(left as u64);
            tracing::warn!(
                dropped = left,
                "confirmation emails still sending at the deadline were dropped"
            );
        }
    })
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
