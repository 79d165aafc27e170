//! W3C `traceparent`/`baggage` in and out of HTTP headers (gRPC metadata is HTTP/2 headers too).

use opentelemetry::Context;
use opentelemetry::trace::{TraceContextExt as _, TraceId};
use opentelemetry_http::{HeaderExtractor, HeaderInjector};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// The context a caller sent, or an empty one when it sent none or sent garbage.
pub fn extract(headers: &http::HeaderMap) -> Context {
    opentelemetry::global::get_text_map_propagator(|p| p.extract(&HeaderExtractor(headers)))
}

/// Writes `traceparent` (and `baggage`, when there is any) for `cx` into `headers`.
pub fn inject(cx: &Context, headers: &mut http::HeaderMap) {
    opentelemetry::global::get_text_map_propagator(|p| {
        p.inject_context(cx, &mut HeaderInjector(headers))
    });
}

/// Trace id of a tracing span, if it belongs to a valid trace.
pub fn trace_id_of(span: &tracing::Span) -> Option<TraceId> {
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    sc.is_valid().then(|| sc.trace_id())
}

/// Trace id of the current span, as 32 lowercase hex digits.
pub fn current_trace_id() -> Option<String> {
    trace_id_of(&tracing::Span::current()).map(|id| id.to_string())
}
