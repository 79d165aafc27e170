//! Configuration from the environment, every variable with a documented default.

use fleet_server_kit::env_or;

#[derive(Debug, Clone)]
pub struct Config {
    /// `LISTEN_ADDR`, default `127.0.0.1:50052`.
    pub listen_addr: String,
    /// `OUTBOX_CAPACITY`, default 1000: the oldest emails are dropped beyond it.
    pub outbox_capacity: usize,
    /// `OUTBOX_MAX_BYTES`, default 4 MiB: the outbox's bound in bytes (oldest emails go first).
    pub outbox_max_bytes: usize,
    /// `MAX_IN_FLIGHT`, default 64: requests served at once; past it the service sheds
    /// (503 `overloaded` with `Retry-After`, gRPC `UNAVAILABLE`) instead of queueing.
    pub max_in_flight: usize,
}

impl Config {
    pub fn from_env() -> anyhow::Result<Self> {
        Ok(Self {
            listen_addr: env_or("LISTEN_ADDR", "127.0.0.1:50052"),
            outbox_capacity: env_or("OUTBOX_CAPACITY", "1000")
                .parse()
                .map_err(|e| anyhow::anyhow!("OUTBOX_CAPACITY: {e}"))?,
            outbox_max_bytes: env_or("OUTBOX_MAX_BYTES", "4194304")
                .parse()
                .map_err(|e| anyhow::anyhow!("OUTBOX_MAX_BYTES: {e}"))?,
            max_in_flight: fleet_server_kit::max_in_flight_from_env()?,
        })
    }
}
