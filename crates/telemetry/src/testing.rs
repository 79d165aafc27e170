//! Spans captured in memory, for in-process tests of a service: [`capture`] installs the same
//! subscriber layers as [`crate::init`] with an exporter that keeps every finished span.
//! nextest runs each test in its own process, so each test can install its own.

pub use crate::captured::CapturedSpans;
use crate::init::{TelemetryConfig, TelemetryError, TelemetryGuard};

/// Installs the fleet's subscriber with a synchronous in-memory exporter: a span is in
/// [`CapturedSpans`] as soon as it ends. Keep the guard alive for the test.
pub fn capture(service_name: &str) -> Result<(TelemetryGuard, CapturedSpans), TelemetryError> {
    let spans = CapturedSpans::default();
    let config = TelemetryConfig::from_env(service_name, "test")?;
    let guard = crate::init::install(config, Some(crate::init::Export::Simple(spans.clone())))?;
    Ok((guard, spans))
}
