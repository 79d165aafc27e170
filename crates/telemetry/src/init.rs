use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::propagation::TextMapCompositePropagator;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};
use opentelemetry_sdk::trace::{BatchSpanProcessor, SdkTracerProvider, SimpleSpanProcessor};
use tracing_subscriber::filter::FilterExt as _;

use crate::delivery::{CountEnded, CountExported};
use crate::limits::ValueLengthLimit;
use crate::on_end::OnEnd;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

pub use crate::logs::LogFormat;
use crate::logs::WithTraceIds;

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("unsupported OTEL_EXPORTER_OTLP_PROTOCOL {0:?} (use grpc, http/protobuf or http/json)")]
    Protocol(String),
    #[error("OTLP exporter could not be built: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
    #[error("the OTLP/HTTP client could not be built: {0}")]
    HttpClient(String),
    #[error("OTLP endpoint: {0}")]
    Endpoint(#[from] crate::http_client::ClientError),
    #[error(
        "OTLP endpoint {0} is https://, which the gRPC exporter cannot reach (its TLS is not built in): send to a plain-HTTP Collector beside the service, or use OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf with a build that has the `tls` feature"
    )]
    GrpcTls(String),
    #[error("invalid RUST_LOG filter: {0}")]
    Filter(#[from] tracing_subscriber::filter::ParseError),
    #[error("a global tracing subscriber is already installed: {0}")]
    Subscriber(#[from] tracing_subscriber::util::TryInitError),
}

/// OTLP transport, chosen the way the specification says: the traces-specific variable first,
/// then the generic one, then `http/protobuf`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpProtocol {
    Grpc,
    HttpProtobuf,
    HttpJson,
}

/// What [`init`] read from the environment. Built by [`TelemetryConfig::from_env`].
#[derive(Debug, Clone)]
pub struct TelemetryConfig {
    /// `service.name` used when neither `OTEL_SERVICE_NAME` nor `OTEL_RESOURCE_ATTRIBUTES` names one.
    pub default_service_name: String,
    pub service_version: String,
    /// `OTEL_SDK_DISABLED=true`: no spans are recorded or exported, context still propagates.
    pub sdk_disabled: bool,
    pub protocol: OtlpProtocol,
    pub log_format: LogFormat,
    /// `deployment.environment.name`: `FLEET_ENVIRONMENT`, default `local`
    /// (`OTEL_RESOURCE_ATTRIBUTES` still overrides it, as it does every resource attribute).
    pub environment: String,
}

/// `service.namespace` of every fleet service: the fleet's name.
pub const SERVICE_NAMESPACE: &str = "tempo-fleet";

impl TelemetryConfig {
    pub fn from_env(
        default_service_name: &str,
        service_version: &str,
    ) -> Result<Self, TelemetryError> {
        let sdk_disabled = std::env::var("OTEL_SDK_DISABLED")
            .map(|v| v.trim().eq_ignore_ascii_case("true"))
            .unwrap_or(false);
        let protocol = std::env::var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
            .or_else(|_| std::env::var("OTEL_EXPORTER_OTLP_PROTOCOL"))
            .unwrap_or_else(|_| "http/protobuf".to_owned());
        let protocol = match protocol.trim() {
            "grpc" => OtlpProtocol::Grpc,
            "http/protobuf" | "" => OtlpProtocol::HttpProtobuf,
            "http/json" => OtlpProtocol::HttpJson,
            other => return Err(TelemetryError::Protocol(other.to_owned())),
        };
        Ok(Self {
            default_service_name: default_service_name.to_owned(),
            service_version: service_version.to_owned(),
            sdk_disabled,
            protocol,
            log_format: LogFormat::from_env(),
            environment: std::env::var("FLEET_ENVIRONMENT")
                .ok()
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| "local".to_owned()),
        })
    }
}

/// How long shutdown waits for the last spans to be exported. `fleet up` stops the whole fleet
/// within 5 s, so a service gets a slice of that; the spans that miss it are lost, and said so.
pub const FLUSH_DEADLINE: Duration = Duration::from_millis(1500);

/// Flushes and shuts the tracer provider down when dropped (or on [`TelemetryGuard::shutdown`]).
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
    service_name: String,
}

impl TelemetryGuard {
    pub fn service_name(&self) -> &str {
        &self.service_name
    }

    /// Exports what is still queued, waiting at most [`FLUSH_DEADLINE`] whatever the collector
    /// does (a black hole would otherwise hold the process for the exporter's 10 s timeout).
    /// Safe to call from async code: the exporters block, so this runs on its own thread.
    pub fn shutdown(&mut self) {
        if let Some(provider) = self.provider.take() {
            let (done, wait) = std::sync::mpsc::channel();
            let spawned = std::thread::Builder::new()
                .name("otel-shutdown".into())
                .spawn(move || {
                    // shutdown flushes the batch processor first; a separate force_flush would
                    // wait on the exporter with no deadline at all.
                    let _ = provider.shutdown_with_timeout(FLUSH_DEADLINE);
                    let _ = done.send(());
                });
            if spawned.is_ok() && wait.recv_timeout(FLUSH_DEADLINE).is_err() {
                // The thread is abandoned: the process is exiting anyway.
                tracing::warn!(deadline = ?FLUSH_DEADLINE, "spans not flushed within the deadline");
            }
        }
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn resource(config: &TelemetryConfig) -> Resource {
    let named_in_env = std::env::var("OTEL_SERVICE_NAME").is_ok_and(|v| !v.trim().is_empty())
        || std::env::var("OTEL_RESOURCE_ATTRIBUTES").is_ok_and(|v| {
            v.split(',')
                .any(|kv| kv.trim_start().starts_with("service.name="))
        });
    // Detectors read OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES; ours only fill gaps.
    let mut builder = Resource::builder().with_attributes([
        KeyValue::new("service.version", config.service_version.clone()),
        KeyValue::new("service.instance.id", uuid::Uuid::new_v4().to_string()),
        // Grafana's service graph and Traces Drilldown group by these two.
        KeyValue::new("service.namespace", SERVICE_NAMESPACE),
        KeyValue::new("deployment.environment.name", config.environment.clone()),
    ]);
    if !named_in_env {
        builder = builder.with_service_name(config.default_service_name.clone());
    }
    // Variables override our defaults, so apply them last.
    builder
        .with_detectors(&[
            Box::new(opentelemetry_sdk::resource::EnvResourceDetector::new()),
            Box::new(opentelemetry_sdk::resource::SdkProvidedResourceDetector),
        ])
        .build()
}

/// Lets spans through and no events, asking about every span (see `install`).
struct SpansOnly;

impl<S> tracing_subscriber::layer::Filter<S> for SpansOnly {
    fn enabled(
        &self,
        meta: &tracing::Metadata<'_>,
        _: &tracing_subscriber::layer::Context<'_, S>,
    ) -> bool {
        meta.is_span()
    }

    fn callsite_enabled(
        &self,
        meta: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        if meta.is_span() {
            tracing::subscriber::Interest::sometimes()
        } else {
            tracing::subscriber::Interest::never()
        }
    }
}

/// Lets events through and no spans: the log layer writes events only, and finds their span
/// through the registry (`logs::WithTraceIds`), so it need not track, format or store anything
/// per span. Every span the fleet creates is then work for the OpenTelemetry layer alone.
struct EventsOnly;

impl<S> tracing_subscriber::layer::Filter<S> for EventsOnly {
    fn enabled(
        &self,
        meta: &tracing::Metadata<'_>,
        _: &tracing_subscriber::layer::Context<'_, S>,
    ) -> bool {
        meta.is_event()
    }

    fn callsite_enabled(
        &self,
        meta: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        if meta.is_event() {
            tracing::subscriber::Interest::sometimes()
        } else {
            tracing::subscriber::Interest::never()
        }
    }
}

/// Where finished spans go: OTLP through the batch processor, or (tests) memory, synchronously.
pub(crate) enum Export {
    Otlp(Box<opentelemetry_otlp::SpanExporter>),
    Simple(crate::captured::CapturedSpans),
}

fn otlp_exporter(
    protocol: OtlpProtocol,
) -> Result<opentelemetry_otlp::SpanExporter, TelemetryError> {
    Ok(match protocol {
        OtlpProtocol::Grpc => {
            refuse_grpc_tls(&otlp_endpoint("http://localhost:4317"))?;
            opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .build()?
        }
        OtlpProtocol::HttpProtobuf => with_plain_http_client(
            opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary),
        )?
        .build()?,
        OtlpProtocol::HttpJson => with_plain_http_client(
            opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_protocol(opentelemetry_otlp::Protocol::HttpJson),
        )?
        .build()?,
    })
}

/// tonic is built without TLS: it would dial an `https://` endpoint in plain text and every
/// export would fail; refuse it at start instead.
fn refuse_grpc_tls(endpoint: &str) -> Result<(), TelemetryError> {
    if crate::http_client::is_https(endpoint) {
        return Err(TelemetryError::GrpcTls(endpoint.to_owned()));
    }
    Ok(())
}

/// The OTLP endpoint the exporter will use: the traces variable, then the generic one, then
/// `default` (the specification's, per protocol).
fn otlp_endpoint(default: &str) -> String {
    [
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
    ]
    .iter()
    .find_map(|name| std::env::var(name).ok().filter(|v| !v.trim().is_empty()))
    .unwrap_or_else(|| default.to_owned())
}

/// The export timeout as the exporter resolves it (`OTEL_EXPORTER_OTLP_TRACES_TIMEOUT`, then
/// `OTEL_EXPORTER_OTLP_TIMEOUT`, in ms; default 10 s), for a client we build ourselves.
fn otlp_timeout() -> Duration {
    [
        "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
        "OTEL_EXPORTER_OTLP_TIMEOUT",
    ]
    .iter()
    .find_map(|name| std::env::var(name).ok()?.trim().parse().ok())
    .map_or(Duration::from_secs(10), Duration::from_millis)
}

/// For a plain `http://` endpoint (the desk, a Collector beside the service), the exporter's
/// blocking reqwest client without root certificates: its default client would read and parse
/// the system's CA bundle at start for a connection that never uses TLS. An `https://`
/// endpoint keeps the exporter's own client and the platform's roots.
fn with_plain_http_client(
    builder: opentelemetry_otlp::SpanExporterBuilder<opentelemetry_otlp::HttpExporterBuilderSet>,
) -> Result<
    opentelemetry_otlp::SpanExporterBuilder<opentelemetry_otlp::HttpExporterBuilderSet>,
    TelemetryError,
> {
    use opentelemetry_otlp::WithHttpConfig as _;
    let endpoint = otlp_endpoint("http://localhost:4318");
    crate::http_client::check_scheme(&endpoint)?;
    if !crate::http_client::is_plain_http(&endpoint) {
        return Ok(builder);
    }
    let timeout = otlp_timeout();
    // Built (and so its runtime thread started) off the caller's async runtime, as the
    // exporter builds its own default client.
    let client = std::thread::spawn(move || {
        crate::http_client::without_roots_for_plain_http_blocking(
            reqwest::blocking::Client::builder(),
            &endpoint,
        )
        .timeout(timeout)
        .build()
    })
    .join()
    .map_err(|_| TelemetryError::HttpClient("the thread building it panicked".to_owned()))?
    .map_err(|e| TelemetryError::HttpClient(e.to_string()))?;
    Ok(builder.with_http_client(client))
}

/// Logs only, for a process that exports no telemetry (the payment provider's stand-in): the
/// same line format and `LOG_FORMAT` as every service, so a JSON log stream stays JSON.
pub fn init_logs() -> Result<(), TelemetryError> {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new("info,h2=warn,hyper=warn,tower=warn"))?;
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .event_format(WithTraceIds(LogFormat::from_env()))
                .fmt_fields(tracing_subscriber::fmt::format::debug_fn(|_, _, _| Ok(())))
                .with_filter(filter),
        )
        .try_init()?;
    Ok(())
}

/// Sets up tracing and logging for one service process. Call once, inside the Tokio runtime,
/// at the process edge (`main`, `fleet run`): it installs global state.
pub fn init(config: TelemetryConfig) -> Result<TelemetryGuard, TelemetryError> {
    let export = if config.sdk_disabled {
        None
    } else {
        Some(Export::Otlp(Box::new(otlp_exporter(config.protocol)?)))
    };
    install(config, export)
}

/// The OpenTelemetry layer, set up the same whether spans are exported or not (the untraced
/// fleet must not pay for work the traced one skips).
fn otel_layer<S, T>(tracer: T) -> tracing_opentelemetry::OpenTelemetryLayer<S, T>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
    T: opentelemetry::trace::Tracer + 'static,
    T::Span: Send + Sync,
{
    tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_location(false)
        .with_threads(false)
        .with_level(false)
        .with_target(false)
        .with_tracked_inactivity(false)
        // Every hop reads its context from the tracing span (`OpenTelemetrySpanExt::context`),
        // never from OpenTelemetry's thread-local `Context::current()`, so nothing needs the
        // span attached there on each poll (a lock, a clone and a push per enter, a pop per exit).
        .with_context_activation(false)
        .with_error_records_to_exceptions(false)
        .with_error_fields_to_exceptions(false)
}

pub(crate) fn install(
    config: TelemetryConfig,
    export: Option<Export>,
) -> Result<TelemetryGuard, TelemetryError> {
    opentelemetry::global::set_text_map_propagator(TextMapCompositePropagator::new(vec![
        Box::new(TraceContextPropagator::new()),
        Box::new(BaggagePropagator::new()),
    ]));

    // `info` keeps every span the fleet makes; noisy dependencies stay at warn.
    let filter = || {
        EnvFilter::try_from_default_env().or_else(|_| {
            EnvFilter::try_new("info,h2=warn,hyper=warn,tower=warn,sqlx=warn,opentelemetry=warn,reqwest=warn,tonic=warn")
        })
    };
    type BoxedLayer =
        Box<dyn tracing_subscriber::Layer<tracing_subscriber::Registry> + Send + Sync>;
    let fmt_layer: BoxedLayer = tracing_subscriber::fmt::layer()
        .event_format(WithTraceIds(config.log_format))
        // Our lines never print span fields, so don't format them for every new span
        // (it was a tenth of order-api's instructions under load; docs/performance.md).
        .fmt_fields(tracing_subscriber::fmt::format::debug_fn(|_, _, _| Ok(())))
        // Nor see spans at all: no per-span bookkeeping in the log layer (events only, which
        // find their span through the registry).
        .with_filter(EventsOnly.and(filter()?))
        .boxed();
    // Errors are told by span status and `error.type`, as the conventions now ask, not by
    // exception events; and log lines stay logs (with trace ids) rather than span events with
    // unregistered attributes. So the OpenTelemetry layer sees spans only. (Not through
    // `with_counting_event_filter`: in tracing-opentelemetry 0.34.0 it prints a line to stdout
    // per event and adds an `otel.tracing_event_count` attribute no convention defines.)
    //
    // Span callsites answer `sometimes`, never `always`: with an `always` interest tracing skips
    // `enabled()` for the span, and a per-layer filter bit left "disabled" by an earlier event
    // that no layer wanted (tracing-subscriber 0.3's FilterState is only reset in `enabled()`)
    // then silently drops the span. That lost order-api's spans after PostgreSQL queries.
    let spans_only = || -> Result<_, TelemetryError> { Ok(filter()?.and(SpansOnly)) };

    let Some(export) = export else {
        // The no-op tracer still carries an incoming context downstream, as the API specifies.
        let otel_layer =
            otel_layer(opentelemetry::trace::noop::NoopTracer::new()).with_filter(spans_only()?);
        let layers: Vec<BoxedLayer> = vec![otel_layer.boxed(), fmt_layer];
        tracing_subscriber::registry().with(layers).try_init()?;
        return Ok(TelemetryGuard {
            provider: None,
            service_name: config.default_service_name.clone(),
        });
    };
    let resource = resource(&config);
    let service_name = resource
        .get(&opentelemetry::Key::from_static_str("service.name"))
        .map(|v| v.to_string())
        .unwrap_or_else(|| config.default_service_name.clone());
    let limit = crate::limits::value_length_limit_from_env();
    // No with_sampler(): the SDK then honours OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG.
    let builder = SdkTracerProvider::builder().with_resource(resource);
    // Each finished span: counted as ended, its values cut to the limit, then queued for export.
    fn steps<P>(limit: usize, inner: P) -> OnEnd<CountEnded, OnEnd<ValueLengthLimit, P>> {
        OnEnd::new(CountEnded, OnEnd::new(ValueLengthLimit::new(limit), inner))
    }
    let provider = match export {
        Export::Otlp(exporter) => builder.with_span_processor(steps(
            limit,
            BatchSpanProcessor::builder(CountExported::new(*exporter)).build(),
        )),
        Export::Simple(exporter) => builder.with_span_processor(steps(
            limit,
            SimpleSpanProcessor::new(CountExported::new(exporter)),
        )),
    }
    .build();
    let tracer = provider.tracer_with_scope(
        opentelemetry::InstrumentationScope::builder("fleet-telemetry")
            .with_version(env!("CARGO_PKG_VERSION"))
            .build(),
    );
    opentelemetry::global::set_tracer_provider(provider.clone());
    let otel_layer = otel_layer(tracer).with_filter(spans_only()?);
    let layers: Vec<BoxedLayer> = vec![otel_layer.boxed(), fmt_layer];
    tracing_subscriber::registry().with(layers).try_init()?;
    Ok(TelemetryGuard {
        provider: Some(provider),
        service_name,
    })
}

#[cfg(test)]
mod endpoint_tests {
    #[test]
    fn grpc_export_refuses_https_and_says_what_to_do() {
        assert!(super::refuse_grpc_tls("http://collector:4317").is_ok());
        assert!(super::refuse_grpc_tls("collector:4317").is_ok());
        let err = super::refuse_grpc_tls("HTTPS://otlp.example:443")
            .unwrap_err()
            .to_string();
        assert!(err.contains("HTTPS://otlp.example:443"), "{err}");
        assert!(err.contains("http/protobuf"), "{err}");
    }
}

#[cfg(test)]
mod log_layer_tests {
    use std::sync::{Arc, Mutex};

    use opentelemetry::trace::TracerProvider as _;
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;

    use super::{EventsOnly, SpansOnly};
    use crate::logs::{LogFormat, WithTraceIds};

    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// The log layer sees no spans, yet a line logged inside one names it and carries its ids.
    #[test]
    fn a_log_line_names_its_span_and_trace_though_the_log_layer_sees_no_spans() {
        let lines = Lines::default();
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        let writer = lines.clone();
        let subscriber = tracing_subscriber::registry()
            .with(
                tracing_opentelemetry::layer()
                    .with_tracer(provider.tracer("test"))
                    .with_filter(SpansOnly),
            )
            .with(
                tracing_subscriber::fmt::layer()
                    .event_format(WithTraceIds(LogFormat::Json))
                    .fmt_fields(tracing_subscriber::fmt::format::debug_fn(|_, _, _| Ok(())))
                    .with_writer(move || writer.clone())
                    .with_filter(EventsOnly),
            );
        // Global, as in a service (nextest runs each test in its own process): the line's
        // trace id is read through the global dispatcher.
        tracing::subscriber::set_global_default(subscriber).unwrap();
        tracing::info!("outside");
        {
            let span = tracing::info_span!("checkout", app.order.id = 7);
            let _entered = span.enter();
            tracing::info!("inside");
        }
        let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        let parsed: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(parsed.len(), 2, "{text}");
        assert!(parsed[0].get("span").is_none(), "{text}");
        assert!(parsed[0].get("trace_id").is_none(), "{text}");
        let inside = &parsed[1];
        assert_eq!(inside["message"], "inside");
        assert_eq!(inside["span"], "checkout", "{text}");
        let hex = |v: &serde_json::Value, len: usize| {
            v.as_str().is_some_and(|s| {
                s.len() == len
                    && s.bytes().all(|b| b.is_ascii_hexdigit())
                    && s.bytes().any(|b| b != b'0')
            })
        };
        assert!(hex(&inside["trace_id"], 32), "{text}");
        assert!(hex(&inside["span_id"], 16), "{text}");
    }
}
