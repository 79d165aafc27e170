//! Facts about stored spans and traces that both search and the TraceQL evaluator read
//! (status text, span kind keyword, the root span). Kept apart so the dependency runs one
//! way: `search` -> `traceql::eval` -> `trace_view`.

use std::collections::HashSet;

use crate::store::StoredSpan;

/// `status.code` intrinsic text for a span.
pub fn status_text(span: &StoredSpan) -> &'static str {
    match span.span.status.as_ref().map(|s| s.code) {
        Some(2) => "error",
        Some(1) => "ok",
        _ => "unset",
    }
}

/// The root span of a trace: one without a parent, else one whose parent is not
/// in the trace (earliest start wins in both cases).
pub fn root_span(spans: &[StoredSpan]) -> Option<&StoredSpan> {
    let true_root = spans
        .iter()
        .filter(|s| s.span.parent_span_id.is_empty())
        .min_by_key(|s| s.span.start_time_unix_nano);
    if true_root.is_some() {
        return true_root;
    }
    let ids: HashSet<&[u8]> = spans.iter().map(|s| s.span.span_id.as_slice()).collect();
    spans
        .iter()
        .filter(|s| !ids.contains(s.span.parent_span_id.as_slice()))
        .min_by_key(|s| s.span.start_time_unix_nano)
}

/// The TraceQL keyword for an OTLP span kind.
pub fn kind_text(kind: i32) -> &'static str {
    match kind {
        1 => "internal",
        2 => "server",
        3 => "client",
        4 => "producer",
        5 => "consumer",
        _ => "unspecified",
    }
}
