//! An exporter that keeps every finished span in memory (for [`crate::testing`]); its own module so
//! that `init` can name it without depending on the test helpers that call `init`.

use std::sync::{Arc, Mutex};

use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};

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
