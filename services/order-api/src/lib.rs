//! order-api: products and orders over HTTP, stored in PostgreSQL (or an embedded SQLite file
//! when `DATABASE_URL` is unset), paid through payment-api over gRPC.
//!
//! `server` holds the router and handlers, `client` the typed client api-gateway uses,
//! `store` the database, `model` the JSON both sides share.

pub mod client;
pub mod model;
pub mod server;
pub mod store;

use std::time::Duration;

use fleet_server_kit::env_or;

pub const SERVICE_NAME: &str = "order-api";

/// Configuration from the environment; every variable has a default.
#[derive(Debug, Clone)]
pub struct Config {
    /// `LISTEN_ADDR`, default `0.0.0.0:8081`.
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
}

impl Config {
    pub fn from_env() -> anyhow::Result<Self> {
        let parse = |name: &str, default: &str| -> anyhow::Result<u64> {
            env_or(name, default)
                .parse()
                .map_err(|e| anyhow::anyhow!("{name}: {e}"))
        };
        Ok(Self {
            listen_addr: env_or("LISTEN_ADDR", "0.0.0.0:8081"),
            database_url: std::env::var("DATABASE_URL")
                .ok()
                .filter(|v| !v.trim().is_empty()),
            database_max_connections: parse("DATABASE_MAX_CONNECTIONS", "10")? as u32,
            sqlite_path: env_or("SQLITE_PATH", "fleet-data/orders.sqlite").into(),
            payment_api_addr: env_or("PAYMENT_API_ADDR", "http://127.0.0.1:50051"),
            payment_timeout: Duration::from_millis(parse("PAYMENT_API_TIMEOUT_MS", "8000")?),
        })
    }
}

/// Runs order-api until Ctrl-C/SIGTERM, then drains requests and flushes spans.
pub async fn run_from_env() -> anyhow::Result<()> {
    let mut telemetry = fleet_telemetry::init(fleet_telemetry::TelemetryConfig::from_env(
        SERVICE_NAME,
        env!("CARGO_PKG_VERSION"),
    )?)?;
    let config = Config::from_env()?;
    let store = match &config.database_url {
        Some(url) => store::Store::postgres(url, config.database_max_connections).await?,
        None => store::Store::sqlite(&config.sqlite_path).await?,
    };
    tracing::info!(database = store.system(), "database ready");
    let listener = fleet_server_kit::bind(&config.listen_addr, SERVICE_NAME).await?;
    let faults = fleet_faults::Faults::from_env(SERVICE_NAME)?;
    let app = server::router(&config, store, faults)?;
    let result = fleet_server_kit::serve(listener, app, true).await;
    telemetry.shutdown();
    result
}
