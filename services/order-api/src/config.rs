//! Configuration from the environment, every variable with a documented default.

use std::time::Duration;

use fleet_server_kit::env_or;

/// Configuration from the environment; every variable has a default.
#[derive(Debug, Clone)]
pub struct Config {
    /// `LISTEN_ADDR`, default `127.0.0.1:8081`.
    pub listen_addr: String,
    /// `DATABASE_URL`: PostgreSQL when set (`postgres://user@host:5432/db`).
    pub database_url: Option<String>,
    /// `DATABASE_MAX_CONNECTIONS`, default 10.
    pub database_max_connections: u32,
    /// `SQLITE_PATH`, default `fleet-data/orders.sqlite`: used when `DATABASE_URL` is unset.
    pub sqlite_path: std::path::PathBuf,
    /// `PAYMENT_API_ADDR`, default `http://127.0.0.1:50051`.
    pub payment_api_addr: String,
    /// `PAYMENT_API_TIMEOUT_MS`, default 8000.
    pub payment_timeout: Duration,
    /// `ORDER_PENDING_BOUND_MS`, default 30000: an order pending longer is reconciled.
    pub pending_bound: Duration,
    /// `ORDER_RECONCILE_INTERVAL_MS`, default 5000: how often the reconciler looks.
    pub reconcile_interval: Duration,
    /// `MAX_IN_FLIGHT`, default 64: requests served at once; past it the service sheds
    /// (503 `overloaded` with `Retry-After`, gRPC `UNAVAILABLE`) instead of queueing.
    pub max_in_flight: usize,
}

impl Config {
    pub fn from_env() -> anyhow::Result<Self> {
        let parse = |name: &str, default: &str| -> anyhow::Result<u64> {
            env_or(name, default)
                .parse()
                .map_err(|e| anyhow::anyhow!("{name}: {e}"))
        };
        Ok(Self {
            listen_addr: env_or("LISTEN_ADDR", "127.0.0.1:8081"),
            database_url: std::env::var("DATABASE_URL")
                .ok()
                .filter(|v| !v.trim().is_empty()),
            database_max_connections: parse("DATABASE_MAX_CONNECTIONS", "10")? as u32,
            sqlite_path: env_or("SQLITE_PATH", "fleet-data/orders.sqlite").into(),
            payment_api_addr: env_or("PAYMENT_API_ADDR", "http://127.0.0.1:50051"),
            payment_timeout: Duration::from_millis(parse("PAYMENT_API_TIMEOUT_MS", "8000")?),
            pending_bound: Duration::from_millis(parse("ORDER_PENDING_BOUND_MS", "30000")?),
            reconcile_interval: Duration::from_millis(
                parse("ORDER_RECONCILE_INTERVAL_MS", "5000")?.max(10),
            ),
            max_in_flight: fleet_server_kit::max_in_flight_from_env()?,
        })
    }
}
