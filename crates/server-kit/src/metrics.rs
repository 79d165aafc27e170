//! The service's counters, served as Prometheus text (exposition format 0.0.4) on
//! `GET /metrics`: every bound a service enforces is counted where it refuses, drops or retries.
//!
//! One [`Metrics`] per started service (not per process), so several services started in one
//! test process each count only their own refusals. Every series carries a `service` label;
//! names start with `fleet_` and each HELP text states the bound it counts.

use std::borrow::Cow;
use std::fmt;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric as _};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

pub use prometheus_client::metrics::counter::Counter;

/// The `Content-Type` of `GET /metrics`.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// A service's counters: the ones the kit keeps itself (HTTP bodies, JSON, Idempotency-Key,
/// gRPC refusals, span attribute truncation) and any the service registers with
/// [`Metrics::counter`]. Cheap to clone: clones share the counters.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Mutex<Registry>>,
    body_too_large: Counter,
    json_refused: Counter,
    idempotency_key_refused: Counter,
    grpc_message_too_large: Counter,
    grpc_invalid_argument: Counter,
    client_errors: Family<Vec<(String, String)>, Counter>,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// The counters the tracer provider keeps for the whole process (it is process-wide):
/// attribute values truncated (`fleet_telemetry::limits`), and where sampled spans went
/// (`fleet_telemetry::delivery`): ended, exported, failed. What the batch processor dropped at
/// its full queue is `ended − exported − failed` once the queue has drained.
#[derive(Debug)]
struct ProcessSpans;

impl Collector for ProcessSpans {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let d = fleet_telemetry::delivery::delivery();
        // A collector's HELP is written as given: the full stops are ours.
        for (name, help, value) in [
            (
                "span_attribute_values_truncated",
                format!(
                    "Span attribute values cut to {} characters \
                     (OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT), in this process.",
                    fleet_telemetry::limits::value_length_limit_from_env()
                ),
                fleet_telemetry::limits::truncated_values(),
            ),
            (
                "spans_ended",
                format!(
                    "Sampled spans this process ended and queued for export (queue of \
                     {} spans, OTEL_BSP_MAX_QUEUE_SIZE; a span ended while it is full is \
                     dropped: ended - exported - export_failed, once the queue has drained).",
                    fleet_telemetry::delivery::max_queue_size()
                ),
                d.ended,
            ),
            (
                "spans_exported",
                "Spans in OTLP exports that succeeded, from this process.".to_owned(),
                d.exported,
            ),
            (
                "spans_export_failed",
                "Spans in OTLP exports that failed after the exporter's own retries (export \
                 timeout OTEL_EXPORTER_OTLP_TIMEOUT), from this process."
                    .to_owned(),
                d.failed,
            ),
        ] {
            let counter = ConstCounter::new(value);
            let metric = encoder.encode_descriptor(name, &help, None, counter.metric_type())?;
            counter.encode(metric)?;
        }
        Ok(())
    }
}

impl Metrics {
    /// The counters of `service` (its `service` label), with the kit's own registered.
    pub fn new(service: &str) -> Self {
        let mut registry = Registry::with_prefix_and_labels(
            "fleet",
            [(Cow::Borrowed("service"), Cow::Owned(service.to_owned()))].into_iter(),
        );
        let body_too_large = Counter::default();
        registry.register(
            "http_body_too_large",
            format!(
                "Requests refused with 413 because the body exceeded {} KiB ({} bytes)",
                crate::error::MAX_BODY_BYTES / 1024,
                crate::error::MAX_BODY_BYTES
            ),
            body_too_large.clone(),
        );
        let json_refused = Counter::default();
        registry.register(
            "http_json_refused",
            "Request bodies refused because they were not the JSON the route takes: \
             malformed (400), the wrong shape (422) or not application/json (415)",
            json_refused.clone(),
        );
        let idempotency_key_refused = Counter::default();
        registry.register(
            "idempotency_key_refused",
            format!(
                "Requests refused with 400 because Idempotency-Key was not one header of 1 to {} \
                 visible ASCII characters",
                crate::error::MAX_IDEMPOTENCY_KEY_LEN
            ),
            idempotency_key_refused.clone(),
        );
        let client_errors = Family::<Vec<(String, String)>, Counter>::default();
        registry.register(
            "http_client_errors",
            "Requests answered with a 4xx JSON error, by its code: each input bound has its own \
             (invalid_quantity, invalid_items, body_too_large, …; docs/configuration.md)",
            client_errors.clone(),
        );
        registry.register_collector(Box::new(ProcessSpans));
        Self {
            registry: Arc::new(Mutex::new(registry)),
            body_too_large,
            json_refused,
            idempotency_key_refused,
            grpc_message_too_large: Counter::default(),
            grpc_invalid_argument: Counter::default(),
            client_errors,
        }
    }

    /// For a service that serves gRPC: shows the gRPC refusals, with the message bound
    /// (`max_decoding_message_size`) it was given in the HELP text.
    pub fn with_grpc(self, max_message_bytes: usize) -> Self {
        self.register(
            "grpc_message_too_large",
            &format!(
                "gRPC requests refused with OUT_OF_RANGE because the message exceeded \
                 {max_message_bytes} bytes"
            ),
            self.grpc_message_too_large.clone(),
        );
        self.register(
            "grpc_invalid_argument",
            "gRPC requests refused with INVALID_ARGUMENT: a field past its bound, or a message \
             that does not decode",
            self.grpc_invalid_argument.clone(),
        );
        self
    }

    fn register(&self, name: &str, help: &str, metric: impl prometheus_client::registry::Metric) {
        self.registry
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .register(name, help, metric);
    }

    /// Registers a counter of the service's own: `name` without the `fleet_` prefix and the
    /// `_total` suffix (both added), `help` stating the bound it counts.
    pub fn counter(&self, name: &str, help: &str) -> Counter {
        let counter = Counter::default();
        self.register_counter(name, help, &counter);
        counter
    }

    /// [`Metrics::counter`] for a counter made elsewhere (by a library that counts before it
    /// knows the service's metrics).
    pub fn register_counter(&self, name: &str, help: &str, counter: &Counter) {
        self.register(name, help, counter.clone());
    }

    /// Registers a gauge made elsewhere: `name` without the `fleet_` prefix.
    pub fn register_gauge(
        &self,
        name: &str,
        help: &str,
        gauge: &prometheus_client::metrics::gauge::Gauge,
    ) {
        self.register(name, help, gauge.clone());
    }

    /// Registers one counter per value of `label` (each shown from 0), in the order given.
    pub fn counters_by(
        &self,
        name: &str,
        help: &str,
        label: &str,
        values: &[&str],
    ) -> Vec<Counter> {
        let family = Family::<Vec<(String, String)>, Counter>::default();
        let counters = values
            .iter()
            .map(|v| {
                family
                    .get_or_create(&vec![(label.to_owned(), (*v).to_owned())])
                    .clone()
            })
            .collect();
        self.register(name, help, family);
        counters
    }

    /// Requests refused because Idempotency-Key was not a key, for a service that checks it
    /// with its own code rather than [`crate::idempotency_key`].
    pub fn idempotency_key_refused(&self) -> &Counter {
        &self.idempotency_key_refused
    }

    /// The counters as Prometheus text (exposition format 0.0.4).
    pub fn render(&self) -> String {
        let mut text = String::new();
        let registry = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        // Writing into a String fails only if a metric's own encoding does, which ours never do.
        if let Err(e) = prometheus_client::encoding::prometheus_text::encode(&mut text, &registry) {
            tracing::error!(error = %e, "cannot render the metrics");
        }
        text
    }

    /// `GET /metrics`.
    pub fn router(&self) -> Router {
        let metrics = self.clone();
        Router::new().route(
            "/metrics",
            get(move || {
                let metrics = metrics.clone();
                async move {
                    (
                        StatusCode::OK,
                        [(header::CONTENT_TYPE, CONTENT_TYPE)],
                        metrics.render(),
                    )
                        .into_response()
                }
            }),
        )
    }

    /// Counts a refusal by what the answer says: the status (413), the [`crate::ApiError`]
    /// code it carries, or the gRPC status of a trailers-only answer.
    pub(crate) fn observe(&self, response: &Response) {
        if response.status() == StatusCode::PAYLOAD_TOO_LARGE {
            self.body_too_large.inc();
        }
        if let Some(code) = response.extensions().get::<crate::error::ErrorCode>() {
            // Codes are the handlers' own (a fixed set), never caller input: the label is bounded.
            if response.status().is_client_error() {
                self.client_errors
                    .get_or_create(&vec![("code".to_owned(), code.0.clone())])
                    .inc();
            }
            match code.0.as_str() {
                "malformed_json" | "invalid_body" | "unsupported_media_type" => {
                    self.json_refused.inc();
                }
                "invalid_idempotency_key" => {
                    self.idempotency_key_refused.inc();
                }
                _ => {}
            }
        }
        match response.headers().get("grpc-status").map(|v| v.as_bytes()) {
            Some(b"11") => {
                self.grpc_message_too_large.inc();
            }
            Some(b"3") => {
                self.grpc_invalid_argument.inc();
            }
            _ => {}
        }
    }
}

/// Counts refusals on every response (outside the layers that shape them).
pub(crate) async fn count_refusals(
    axum::extract::State(metrics): axum::extract::State<Metrics>,
    response: Response,
) -> Response {
    metrics.observe(&response);
    response
}

/// The value of the series `name` (the full name, e.g. `fleet_http_body_too_large_total`) in a
/// Prometheus text exposition, whose labels include `label` when given: for tests and tools.
pub fn sample(exposition: &str, name: &str, label: Option<(&str, &str)>) -> Option<u64> {
    let wanted = label.map(|(k, v)| format!("{k}=\"{v}\""));
    exposition.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?;
        let (labels, value) = match rest.strip_prefix('{') {
            Some(rest) => rest.split_once("} ")?,
            None => ("", rest.strip_prefix(' ')?),
        };
        if let Some(wanted) = &wanted
            && !labels.split(',').any(|l| l == wanted)
        {
            return None;
        }
        value.trim().parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text_with_the_service_label_and_the_bound() {
        let metrics = Metrics::new("svc").with_grpc(1024);
        let dropped = metrics.counter("things_dropped", "Things dropped past 10");
        dropped.inc_by(3);
        let by = metrics.counters_by("outcomes", "Outcomes", "outcome", &["a", "b"]);
        by[1].inc();
        let text = metrics.render();
        assert!(
            text.contains("# HELP fleet_things_dropped_total Things dropped past 10."),
            "{text}"
        );
        assert!(text.contains("# TYPE fleet_things_dropped_total counter"));
        assert_eq!(
            sample(
                &text,
                "fleet_things_dropped_total",
                Some(("service", "svc"))
            ),
            Some(3)
        );
        assert_eq!(
            sample(&text, "fleet_outcomes_total", Some(("outcome", "a"))),
            Some(0)
        );
        assert_eq!(
            sample(&text, "fleet_outcomes_total", Some(("outcome", "b"))),
            Some(1)
        );
        assert!(text.contains("exceeded 1024 bytes"));
        assert!(text.contains("exceeded 64 KiB (65536 bytes)"));
        assert!(
            sample(&text, "fleet_span_attribute_values_truncated_total", None).is_some(),
            "{text}"
        );
        assert_eq!(
            sample(
                &text,
                "fleet_things_dropped_total",
                Some(("service", "other"))
            ),
            None
        );
        assert!(!text.contains("# EOF"), "0.0.4, not OpenMetrics");
    }
}
