//! What every fleet service serves the same way: binding (and announcing) its port, health
//! endpoints, graceful shutdown, and JSON errors that name the problem.

mod error;
mod serve;

pub use error::{ApiError, ApiJson, valid_email};
pub use serve::{Readiness, bind, env_or, health_router, serve, shutdown_signal};
