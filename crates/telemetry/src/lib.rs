//! Telemetry, written once for every fleet service.
//!
//! * [`init`] builds the tracer provider from the standard `OTEL_*` variables, installs the W3C
//!   trace-context and baggage propagators, sets up structured logs that carry trace and span ids,
//!   and returns a [`TelemetryGuard`] that flushes spans on shutdown.
//! * [`server`] continues an incoming context on axum routes and gRPC methods (one middleware,
//!   HTTP or RPC conventions chosen by content type).
//! * [`http_client`] and [`grpc_client`] start CLIENT spans and inject the context.
//! * [`db`] builds database CLIENT spans (sqlx creates none of its own).

mod cancel;
mod captured;
pub mod db;
pub mod delivery;
pub mod grpc_client;
pub mod http_client;
mod init;
pub mod limits;
mod logs;
pub mod on_end;
pub mod propagation;
pub mod redact;
pub mod server;
pub mod status;
pub mod testing;

pub use init::{FLUSH_DEADLINE, TelemetryConfig, TelemetryError, TelemetryGuard, init, init_logs};
pub use propagation::{current_trace_id, trace_id_of};
