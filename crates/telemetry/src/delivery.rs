//! Where this process's spans went: how many sampled spans it ended, how many its exporter
//! delivered and how many an export failed. The SDK's batch processor drops spans silently when
//! its queue (`OTEL_BSP_MAX_QUEUE_SIZE`) is full and keeps that count to itself; with these
//! three, `ended − exported − failed` is what was dropped or is still queued, and a span sink
//! can be checked against what its sources actually made, whatever the traces' shapes.
//!
//! Process-wide like the tracer provider: several services started in one test process share
//! them.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};

static ENDED: AtomicU64 = AtomicU64::new(0);
static EXPORTED: AtomicU64 = AtomicU64::new(0);
static FAILED: AtomicU64 = AtomicU64::new(0);

/// The three counts at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Delivery {
    /// Sampled spans this process ended and handed to its span processor.
    pub ended: u64,
    /// Spans in export calls that succeeded.
    pub exported: u64,
    /// Spans in export calls that failed (after the exporter's own retries).
    pub failed: u64,
}

/// The batch queue's bound as the SDK reads it: `OTEL_BSP_MAX_QUEUE_SIZE`, or its default
/// (2,048) when unset or not a number.
pub fn max_queue_size() -> usize {
    std::env::var("OTEL_BSP_MAX_QUEUE_SIZE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2048)
}

/// This process's counts so far.
pub fn delivery() -> Delivery {
    Delivery {
        ended: ENDED.load(Ordering::Relaxed),
        exported: EXPORTED.load(Ordering::Relaxed),
        failed: FAILED.load(Ordering::Relaxed),
    }
}

/// Counts each sampled span as it ends (a step of [`crate::on_end::OnEnd`]). Unsampled spans
/// are not exported (the batch processor skips them), so they are not counted either.
#[derive(Debug)]
pub struct CountEnded;

impl crate::on_end::EndStep for CountEnded {
    fn on_end(&self, span: &mut SpanData) {
        if span.span_context.is_sampled() {
            ENDED.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Counts the spans of each export call by its outcome.
#[derive(Debug)]
pub struct CountExported<E> {
    inner: E,
}

impl<E> CountExported<E> {
    pub fn new(inner: E) -> Self {
        Self { inner }
    }
}

impl<E: SpanExporter> SpanExporter for CountExported<E> {
    fn export(&self, batch: Vec<SpanData>) -> impl Future<Output = OTelSdkResult> + Send {
        let n = batch.len() as u64;
        let export = self.inner.export(batch);
        async move {
            let result = export.await;
            match &result {
                Ok(()) => EXPORTED.fetch_add(n, Ordering::Relaxed),
                Err(_) => FAILED.fetch_add(n, Ordering::Relaxed),
            };
            result
        }
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

#[cfg(test)]
mod tests {
    //! The counters are process-wide; nextest runs each test in its own process.
    use super::*;
    use crate::on_end::OnEnd;
    use opentelemetry::Context;
    use opentelemetry::trace::{SpanKind, TraceId, TraceState, Tracer as _, TracerProvider as _};
    use opentelemetry::{KeyValue, trace::Link};
    use opentelemetry_sdk::trace::{
        SamplingDecision, SamplingResult, SdkTracerProvider, ShouldSample, SimpleSpanProcessor,
    };

    /// Records every span; samples (exports) only those named `keep`.
    #[derive(Debug, Clone)]
    struct KeepNamedKeep;

    impl ShouldSample for KeepNamedKeep {
        fn should_sample(
            &self,
            _: Option<&Context>,
            _: TraceId,
            name: &str,
            _: &SpanKind,
            _: &[KeyValue],
            _: &[Link],
        ) -> SamplingResult {
            SamplingResult {
                decision: if name == "keep" {
                    SamplingDecision::RecordAndSample
                } else {
                    SamplingDecision::RecordOnly
                },
                attributes: Vec::new(),
                trace_state: TraceState::default(),
            }
        }
    }

    /// An exporter whose every call succeeds or fails.
    #[derive(Debug)]
    struct Answers(bool);

    impl SpanExporter for Answers {
        async fn export(&self, _batch: Vec<SpanData>) -> OTelSdkResult {
            if self.0 {
                Ok(())
            } else {
                Err(opentelemetry_sdk::error::OTelSdkError::InternalFailure(
                    "the collector is down".into(),
                ))
            }
        }
    }

    /// An exporter whose calls each say they started, then wait to be let go.
    #[derive(Debug)]
    struct Held {
        started: std::sync::Mutex<std::sync::mpsc::Sender<()>>,
        release: std::sync::Mutex<std::sync::mpsc::Receiver<()>>,
    }

    impl SpanExporter for Held {
        async fn export(&self, _batch: Vec<SpanData>) -> OTelSdkResult {
            let _ = self.started.lock().map(|s| s.send(()));
            // The batch processor's own thread blocks on this future: blocking here is the point.
            let _ = self
                .release
                .lock()
                .map(|r| r.recv_timeout(Duration::from_secs(10)));
            Ok(())
        }
    }

    /// The batch queue's bound (`OTEL_BSP_MAX_QUEUE_SIZE`, here 4) at its edge: with one export
    /// held, four more spans wait in the queue and the fifth is dropped, which shows as
    /// `ended − exported − failed` = 1 once the queue has drained.
    #[test]
    fn a_span_ended_while_the_batch_queue_is_full_is_the_difference() {
        use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor};
        let (started_tx, started) = std::sync::mpsc::channel();
        let (release, release_rx) = std::sync::mpsc::channel();
        let held = Held {
            started: std::sync::Mutex::new(started_tx),
            release: std::sync::Mutex::new(release_rx),
        };
        let batches = BatchSpanProcessor::builder(CountExported::new(held))
            .with_batch_config(
                BatchConfigBuilder::default()
                    .with_max_queue_size(4)
                    .with_max_export_batch_size(1)
                    .build(),
            )
            .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(OnEnd::new(CountEnded, batches))
            .build();
        let tracer = provider.tracer("test");
        tracer.in_span("first", |_| {});
        started.recv_timeout(Duration::from_secs(5)).unwrap();
        for _ in 0..5 {
            tracer.in_span("next", |_| {});
        }
        for _ in 0..5 {
            release.send(()).unwrap();
        }
        provider.force_flush().unwrap();
        let d = delivery();
        assert_eq!(
            d,
            Delivery {
                ended: 6,
                exported: 5,
                failed: 0
            }
        );
        assert_eq!(d.ended - d.exported - d.failed, 1);
    }

    fn provider(exporter_succeeds: bool) -> SdkTracerProvider {
        SdkTracerProvider::builder()
            .with_sampler(KeepNamedKeep)
            .with_span_processor(OnEnd::new(
                CountEnded,
                SimpleSpanProcessor::new(CountExported::new(Answers(exporter_succeeds))),
            ))
            .build()
    }

    #[test]
    fn only_sampled_spans_are_counted_as_ended_and_exported() {
        let provider = provider(true);
        let tracer = provider.tracer("test");
        for name in ["keep", "record-only", "keep", "record-only", "record-only"] {
            tracer.in_span(name, |_| {});
        }
        assert_eq!(
            delivery(),
            Delivery {
                ended: 2,
                exported: 2,
                failed: 0
            }
        );
    }

    #[test]
    fn spans_of_a_failed_export_are_counted_as_failed() {
        let provider = provider(false);
        let tracer = provider.tracer("test");
        for _ in 0..3 {
            tracer.in_span("keep", |_| {});
        }
        assert_eq!(
            delivery(),
            Delivery {
                ended: 3,
                exported: 0,
                failed: 3
            }
        );
    }
}
