//! What every fleet service serves the same way: binding (and announcing) its port, health
//! endpoints, `/metrics`, graceful shutdown, and JSON errors that name the problem.

mod error;
pub mod metrics;
mod retry;
mod running;
mod runtime;
mod serve;
mod shed;

pub use error::{
    ApiError, ApiJson, MAX_BODY_BYTES, MAX_IDEMPOTENCY_KEY_LEN, RETRY_AFTER_SECONDS,
    idempotency_key, valid_email,
};
pub use metrics::Metrics;
pub use retry::Backoff;
pub use running::{DRAIN_DEADLINE, Running, run, run_untraced};
pub use runtime::{
    DEFAULT_MAX_BLOCKING_THREADS, DEFAULT_WORKER_THREADS, ProcessMain, RuntimeSize,
    block_on_service,
};
pub use serve::{Readiness, bind, env_or, health_router, shutdown_signal};
pub use shed::{
    DEFAULT_MAX_IN_FLIGHT, InFlightLimit, LowerLimit, OVERLOADED, max_in_flight_from_env,
};
