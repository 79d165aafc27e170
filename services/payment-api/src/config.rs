//! Configuration from the environment, every variable with a documented default.

use std::time::Duration;

use fleet_server_kit::env_or;

/// Configuration from the environment; every variable has a default.
#[derive(Debug, Clone)]
pub struct Config {
    /// `LISTEN_ADDR`, default `127.0.0.1:50051`.
    pub listen_addr: String,
    /// `PAYMENT_PROVIDER_URL`, default `http://127.0.0.1:8090`.
    pub provider_url: String,
    /// `PAYMENT_PROVIDER_TIMEOUT_MS`, default 5000.
    pub provider_timeout: Duration,
    /// `MAX_IN_FLIGHT`, default 64: requests served at once; past it the service sheds
    /// (503 `overloaded` with `Retry-After`, gRPC `UNAVAILABLE`) instead of queueing.
    pub max_in_flight: usize,
}

impl Config {
    pub fn from_env() -> anyhow::Result<Self> {
        let timeout_ms: u64 = env_or("PAYMENT_PROVIDER_TIMEOUT_MS", "5000")
            .parse()
            .map_err(|e| anyhow::anyhow!("PAYMENT_PROVIDER_TIMEOUT_MS: {e}"))?;
        Ok(Self {
            listen_addr: env_or("LISTEN_ADDR", "127.0.0.1:50051"),
            provider_url: env_or("PAYMENT_PROVIDER_URL", "http://127.0.0.1:8090"),
            provider_timeout: Duration::from_millis(timeout_ms),
            max_in_flight: fleet_server_kit::max_in_flight_from_env()?,
        })
    }
}
