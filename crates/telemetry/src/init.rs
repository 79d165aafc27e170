use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::propagation::TextMapCompositePropagator;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};
use opentelemetry_sdk::trace::SdkTracerProvider;
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
}

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
        })
    }
}

/// Flushes and shuts the tracer provider down when dropped (or on [`TelemetryGuard::shutdown`]).
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
    service_name: String,
}

impl TelemetryGuard {
    pub fn service_name(&self) -> &str {
        &self.service_name
    }

    /// Exports what is still queued. Safe to call from async code: the exporters block.
    pub fn shutdown(&mut self) {
        if let Some(provider) = self.provider.take() {
            // Off the async worker: the batch processor's flush blocks on the exporter.
            let _ = std::thread::spawn(move || {
                let _ = provider.force_flush();
                let _ = provider.shutdown_with_timeout(Duration::from_secs(5));
            })
            .join();
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

/// Sets up tracing and logging for one service process. Call once, inside the Tokio runtime.
pub fn init(config: TelemetryConfig) -> Result<TelemetryGuard, TelemetryError> {
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
        .with_filter(filter()?)
        .boxed();

    let (provider, service_name) = if config.sdk_disabled {
        // The no-op tracer still carries an incoming context downstream, as the API specifies.
        let otel_layer = tracing_opentelemetry::layer()
            .with_tracer(opentelemetry::trace::noop::NoopTracer::new())
            .with_filter(filter()?);
        let layers: Vec<BoxedLayer> = vec![otel_layer.boxed(), fmt_layer];
        tracing_subscriber::registry().with(layers).try_init()?;
        (None, config.default_service_name.clone())
    } else {
        let resource = resource(&config);
        let service_name = resource
            .get(&opentelemetry::Key::from_static_str("service.name"))
            .map(|v| v.to_string())
            .unwrap_or_else(|| config.default_service_name.clone());
        let exporter = match config.protocol {
            OtlpProtocol::Grpc => opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .build()?,
            OtlpProtocol::HttpProtobuf => opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .build()?,
            OtlpProtocol::HttpJson => opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_protocol(opentelemetry_otlp::Protocol::HttpJson)
                .build()?,
        };
        // No with_sampler(): the SDK then honours OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG.
        let provider = SdkTracerProvider::builder()
            .with_resource(resource)
            .with_batch_exporter(exporter)
            .build();
        let tracer = provider.tracer_with_scope(
            opentelemetry::InstrumentationScope::builder("fleet-telemetry")
                .with_version(env!("CARGO_PKG_VERSION"))
                .build(),
        );
        opentelemetry::global::set_tracer_provider(provider.clone());
        let otel_layer = tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_location(false)
            .with_threads(false)
            .with_level(false)
            .with_target(false)
            .with_tracked_inactivity(false)
            // Errors are told by span status and `error.type`, as the conventions now ask, not by
            // exception events; and log lines stay logs (with trace ids) rather than span events
            // with unregistered attributes. Spans only, then (the event filter below; a per-layer
            // filter refusing events can leave later spans disabled).
            .with_error_records_to_exceptions(false)
            .with_error_fields_to_exceptions(false)
            .with_counting_event_filter(tracing_subscriber::filter::filter_fn(|_| false))
            .with_filter(filter()?);
        let layers: Vec<BoxedLayer> = vec![otel_layer.boxed(), fmt_layer];
        tracing_subscriber::registry().with(layers).try_init()?;
        (Some(provider), service_name)
    };
    Ok(TelemetryGuard {
        provider,
        service_name,
    })
}
