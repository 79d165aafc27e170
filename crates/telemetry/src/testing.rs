//! Spans captured in memory, for in-process tests of a service: [`capture`] installs the same
//! subscriber layers as [`crate::init`] with an exporter that keeps every finished span.
//! nextest runs each test in its own process, so each test can install its own.

use std::sync::{Arc, Mutex};

use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};

use crate::init::{TelemetryConfig, TelemetryError, TelemetryGuard};

/// Every span exported so far, oldest first.
#[derive(Clone, Debug, Default)]
pub struct CapturedSpans(Arc<Mutex<Vec<SpanData>>>);

impl CapturedSpans {
    pub fn spans(&self) -> Vec<SpanData> {
        self.0.lock().map(|v| v.clone()).unwrap_or_default()
    }

    /// The finished spans with this name.
    pub fn named(&self, name: &str) -> Vec<SpanData> {
        self.spans()
            .into_iter()
            .filter(|s| s.name == name)
            .collect()
    }
}

impl SpanExporter for CapturedSpans {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        if let Ok(mut spans) = self.0.lock() {
            spans.extend(batch);
        }
        Ok(())
    }
}

/// Installs the fleet's subscriber with a synchronous in-memory exporter: a span is in
/// [`CapturedSpans`] as soon as it ends. Keep the guard alive for the test.
pub fn capture(service_name: &str) -> Result<(TelemetryGuard, CapturedSpans), TelemetryError> {
    let spans = CapturedSpans::default();
    let config = TelemetryConfig::from_env(service_name, "test")?;
    let guard = crate::init::install(config, Some(crate::init::Export::Simple(spans.clone())))?;
    Ok((guard, spans))
}
