//! Fault injection for the fleet: named fault points that each service owns, armed from
//! `FLEET_FAULTS` at start-up, at run time through `/admin/faults`, or per request through the
//! W3C baggage entry `fleet.fault` (only when `FLEET_BAGGAGE_FAULTS=true`).
//!
//! Grammar (`FLEET_FAULTS`, the admin API's text form, and baggage):
//!
//! ```text
//! faults  = fault *( ";" fault )
//! fault   = point ":" setting *( "," setting )
//! setting = "latency=" duration | "jitter=" duration | "error=" status | "timeout=" duration
//!         | "mode=" word | "retries=" int | "backoff=" duration | "p=" probability
//! ```
//!
//! e.g. `payment.provider:latency=800ms,jitter=200ms,p=0.3;order.db:error=500,p=0.1`.

mod admin;
mod registry;
mod spec;

pub use admin::admin_router;
pub use registry::{BAGGAGE_KEY, Faults, Injection};
pub use spec::{FaultError, FaultPoint, FaultSpec, Limits, parse_faults};

/// The gRPC code (as its number) a gRPC service answers for an injected HTTP-style error status.
pub fn grpc_code_for_status(status: u16) -> i32 {
    match status {
        400 => 3,  // INVALID_ARGUMENT
        401 => 16, // UNAUTHENTICATED
        403 => 7,  // PERMISSION_DENIED
        404 => 5,  // NOT_FOUND
        409 => 10, // ABORTED
        429 => 8,  // RESOURCE_EXHAUSTED
        499 => 1,  // CANCELLED
        500 => 13, // INTERNAL
        501 => 12, // UNIMPLEMENTED
        503 => 14, // UNAVAILABLE
        504 => 4,  // DEADLINE_EXCEEDED
        _ => 2,    // UNKNOWN
    }
}
