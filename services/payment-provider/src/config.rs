//! Configuration from the environment, every variable with a documented default.

use std::time::Duration;

use fleet_server_kit::env_or;

#[derive(Debug, Clone)]
pub struct Config {
    /// `LISTEN_ADDR`, default `127.0.0.1:8090`.
    pub listen_addr: String,
    /// `PROVIDER_LATENCY_MS`, default 30: how long the provider "thinks" per charge.
    pub latency: Duration,
    /// `MAX_IN_FLIGHT`, default 64: requests served at once; past it the service sheds
    /// (503 `overloaded` with `Retry-After`, gRPC `UNAVAILABLE`) instead of queueing.
    pub max_in_flight: usize,
}

impl Config {
    pub fn from_env() -> anyhow::Result<Self> {
        let latency_ms: u64 = env_or("PROVIDER_LATENCY_MS", "30")
            .parse()
            .map_err(|e| anyhow::anyhow!("PROVIDER_LATENCY_MS: {e}"))?;
        Ok(Self {
            listen_addr: env_or("LISTEN_ADDR", "127.0.0.1:8090"),
            latency: Duration::from_millis(latency_ms),
            max_in_flight: fleet_server_kit::max_in_flight_from_env()?,
        })
    }
}
