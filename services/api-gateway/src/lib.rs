//! api-gateway: the request a user makes. Calls order-api over HTTP and notification over gRPC,
//! and hands every caller the trace id (`x-trace-id`, `traceresponse`) to paste into Grafana.
//!
//! `server` holds the router and handlers, `client` the typed client for the gateway's callers
//! (tests, load generators).

pub mod client;
pub mod server;

use std::time::Duration;

use fleet_server_kit::env_or;

pub const SERVICE_NAME: &str = "api-gateway";

/// Configuration from the environment; every variable has a default.
#[derive(Debug, Clone)]
pub struct Config {
    /// `LISTEN_ADDR`, default `0.0.0.0:8080`.
    pub listen_addr: String,
    /// `ORDER_API_URL`, default `http://127.0.0.1:8081`.
    pub order_api_url: String,
    /// `ORDER_API_TIMEOUT_MS`, default 10000.
    pub order_api_timeout: Duration,
    /// `NOTIFICATION_ADDR`, default `http://127.0.0.1:50052`.
    pub notification_addr: String,
    /// `NOTIFICATION_TIMEOUT_MS`, default 3000.
    pub notification_timeout: Duration,
}

impl Config {
    pub fn from_env() -> anyhow::Result<Self> {
        let ms = |name: &str, default: &str| -> anyhow::Result<Duration> {
            Ok(Duration::from_millis(
                env_or(name, default)
                    .parse()
                    .map_err(|e| anyhow::anyhow!("{name}: {e}"))?,
            ))
        };
        Ok(Self {
            listen_addr: env_or("LISTEN_ADDR", "0.0.0.0:8080"),
            order_api_url: env_or("ORDER_API_URL", "http://127.0.0.1:8081"),
            order_api_timeout: ms("ORDER_API_TIMEOUT_MS", "10000")?,
            notification_addr: env_or("NOTIFICATION_ADDR", "http://127.0.0.1:50052"),
            notification_timeout: ms("NOTIFICATION_TIMEOUT_MS", "3000")?,
        })
    }
}

/// Runs api-gateway until Ctrl-C/SIGTERM, then drains requests and flushes spans.
pub async fn run_from_env() -> anyhow::Result<()> {
    let mut telemetry = fleet_telemetry::init(fleet_telemetry::TelemetryConfig::from_env(
        SERVICE_NAME,
        env!("CARGO_PKG_VERSION"),
    )?)?;
    let config = Config::from_env()?;
    let listener = fleet_server_kit::bind(&config.listen_addr, SERVICE_NAME).await?;
    let faults = fleet_faults::Faults::from_env(SERVICE_NAME)?;
    let background = tokio_util::task::TaskTracker::new();
    let app = server::router(&config, faults, background.clone())?;
    let result = fleet_server_kit::serve(listener, app, true).await;
    // Replies are drained; let queued emails finish too, within reason.
    background.close();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), background.wait()).await;
    telemetry.shutdown();
    result
}
