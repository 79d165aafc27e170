//! Configuration from the environment, every variable with a documented default.

use std::time::Duration;

use fleet_server_kit::env_or;

/// Configuration from the environment; every variable has a default.
#[derive(Debug, Clone)]
pub struct Config {
    /// `LISTEN_ADDR`, default `127.0.0.1:8080`.
    pub listen_addr: String,
    /// `ORDER_API_URL`, default `http://127.0.0.1:8081`.
    pub order_api_url: String,
    /// `ORDER_API_TIMEOUT_MS`, default 10000.
    pub order_api_timeout: Duration,
    /// `NOTIFICATION_ADDR`, default `http://127.0.0.1:50052`.
    pub notification_addr: String,
    /// `NOTIFICATION_TIMEOUT_MS`, default 3000.
    pub notification_timeout: Duration,
    /// `MAX_IN_FLIGHT`, default 64: requests served at once; past it the service sheds
    /// (503 `overloaded` with `Retry-After`, gRPC `UNAVAILABLE`) instead of queueing.
    pub max_in_flight: usize,
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
            listen_addr: env_or("LISTEN_ADDR", "127.0.0.1:8080"),
            order_api_url: env_or("ORDER_API_URL", "http://127.0.0.1:8081"),
            order_api_timeout: ms("ORDER_API_TIMEOUT_MS", "10000")?,
            notification_addr: env_or("NOTIFICATION_ADDR", "http://127.0.0.1:50052"),
            notification_timeout: ms("NOTIFICATION_TIMEOUT_MS", "3000")?,
            max_in_flight: fleet_server_kit::max_in_flight_from_env()?,
        })
    }
}
