//! notification: the gRPC `notification.v1.NotificationService`.
//!
//! Emails are rendered and "sent" into a bounded in-memory outbox (no mail server needed),
//! readable over gRPC (`ListOutbox`) and HTTP (`GET /outbox?to=…`).

pub mod client;
pub mod server;

use fleet_server_kit::env_or;

pub const SERVICE_NAME: &str = "notification";

#[derive(Debug, Clone)]
pub struct Config {
    /// `LISTEN_ADDR`, default `0.0.0.0:50052`.
    pub listen_addr: String,
    /// `OUTBOX_CAPACITY`, default 1000: the oldest emails are dropped beyond it.
    pub outbox_capacity: usize,
}

impl Config {
    pub fn from_env() -> anyhow::Result<Self> {
        Ok(Self {
            listen_addr: env_or("LISTEN_ADDR", "0.0.0.0:50052"),
            outbox_capacity: env_or("OUTBOX_CAPACITY", "1000")
                .parse()
                .map_err(|e| anyhow::anyhow!("OUTBOX_CAPACITY: {e}"))?,
        })
    }
}

/// Runs notification until Ctrl-C/SIGTERM, then drains requests and flushes spans.
pub async fn run_from_env() -> anyhow::Result<()> {
    let mut telemetry = fleet_telemetry::init(fleet_telemetry::TelemetryConfig::from_env(
        SERVICE_NAME,
        env!("CARGO_PKG_VERSION"),
    )?)?;
    let config = Config::from_env()?;
    let listener = fleet_server_kit::bind(&config.listen_addr, SERVICE_NAME).await?;
    let faults = fleet_faults::Faults::from_env(SERVICE_NAME)?;
    let app = server::router(&config, faults).await;
    let result = fleet_server_kit::serve(listener, app, true).await;
    telemetry.shutdown();
    result
}
