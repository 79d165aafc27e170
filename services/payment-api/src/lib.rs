//! payment-api: the gRPC `payment.v1.PaymentService`.
//!
//! `server` holds the service and its router, `client` the typed client order-api uses,
//! `provider` the "stripe-sdk" that calls the external provider over HTTP.

pub mod card;
pub mod client;
pub mod provider;
pub mod server;

use std::time::Duration;

use fleet_server_kit::env_or;

pub const SERVICE_NAME: &str = "payment-api";

/// Configuration from the environment; every variable has a default.
#[derive(Debug, Clone)]
pub struct Config {
    /// `LISTEN_ADDR`, default `0.0.0.0:50051`.
    pub listen_addr: String,
    /// `PAYMENT_PROVIDER_URL`, default `http://127.0.0.1:8090`.
    pub provider_url: String,
    /// `PAYMENT_PROVIDER_TIMEOUT_MS`, default 5000.
    pub provider_timeout: Duration,
}

impl Config {
    pub fn from_env() -> anyhow::Result<Self> {
        let timeout_ms: u64 = env_or("PAYMENT_PROVIDER_TIMEOUT_MS", "5000")
            .parse()
            .map_err(|e| anyhow::anyhow!("PAYMENT_PROVIDER_TIMEOUT_MS: {e}"))?;
        Ok(Self {
            listen_addr: env_or("LISTEN_ADDR", "0.0.0.0:50051"),
            provider_url: env_or("PAYMENT_PROVIDER_URL", "http://127.0.0.1:8090"),
            provider_timeout: Duration::from_millis(timeout_ms),
        })
    }
}

/// Runs payment-api until Ctrl-C/SIGTERM, then drains requests and flushes spans.
pub async fn run_from_env() -> anyhow::Result<()> {
    let mut telemetry = fleet_telemetry::init(fleet_telemetry::TelemetryConfig::from_env(
        SERVICE_NAME,
        env!("CARGO_PKG_VERSION"),
    )?)?;
    let config = Config::from_env()?;
    let listener = fleet_server_kit::bind(&config.listen_addr, SERVICE_NAME).await?;
    let faults = fleet_faults::Faults::from_env(SERVICE_NAME)?;
    let app = server::router(&config, faults).await?;
    let result = fleet_server_kit::serve(listener, app, true).await;
    telemetry.shutdown();
    result
}
