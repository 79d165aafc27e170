//! W3C `traceparent`/`baggage` in and out of HTTP headers (gRPC metadata is HTTP/2 headers too).
//!
//! The SDK's `traceparent` parser is lax (it continued `00-1-1-01`, 31-digit ids, `+`-signed ids
//! and duplicated headers), so [`extract`] checks the header against the W3C grammar first and
//! starts a fresh trace for anything that does not match it exactly.

use opentelemetry::Context;
use opentelemetry::propagation::Extractor;
use opentelemetry::trace::{TraceContextExt as _, TraceId};
use opentelemetry_http::HeaderInjector;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

const TRACEPARENT: &str = "traceparent";
const TRACESTATE: &str = "tracestate";

/// The context a caller sent, or an empty one when it sent none or sent garbage.
pub fn extract(headers: &http::HeaderMap) -> Context {
    opentelemetry::global::get_text_map_propagator(|p| p.extract(&StrictExtractor::new(headers)))
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

/// Hands the propagators only a `traceparent` that is well-formed and not duplicated, the
/// version-00 form of it (future versions may append fields), and `tracestate` only beside it,
/// with repeated `tracestate` headers joined as the spec says.
pub struct StrictExtractor<'a> {
    headers: &'a http::HeaderMap,
    traceparent: Option<&'a str>,
    tracestate: Option<String>,
}

impl<'a> StrictExtractor<'a> {
    pub fn new(headers: &'a http::HeaderMap) -> Self {
        let mut values = headers.get_all(TRACEPARENT).iter();
        let traceparent = match (values.next(), values.next()) {
            (Some(only), None) => only.to_str().ok().and_then(valid_traceparent),
            // None, or several: the spec says a duplicated header is not to be trusted.
            _ => None,
        };
        let tracestate = traceparent.and_then(|_| {
            let parts: Vec<&str> = headers
                .get_all(TRACESTATE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .map(|v| v.trim_matches([' ', '\t']))
                .filter(|v| !v.is_empty())
                .collect();
            (!parts.is_empty()).then(|| parts.join(","))
        });
        Self {
            headers,
            traceparent,
            tracestate,
        }
    }
}

impl Extractor for StrictExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        if key.eq_ignore_ascii_case(TRACEPARENT) {
            return self.traceparent;
        }
        if key.eq_ignore_ascii_case(TRACESTATE) {
            return self.tracestate.as_deref();
        }
        self.headers.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.headers.keys().map(|k| k.as_str()).collect()
    }
}

/// The first 55 characters of `value` when it is a valid W3C `traceparent`: exactly
/// `2-32-16-2` lowercase hex digits, version not `ff`, ids not all zero. Version `00` must end
/// there; a later version may continue after a `-` (trace-context §3.2.4, "versioning").
pub fn valid_traceparent(value: &str) -> Option<&str> {
    let value = value.trim_matches([' ', '\t']);
    let head = value.get(..55)?;
    let b = head.as_bytes();
    let hex = |range: std::ops::Range<usize>| {
        b[range]
            .iter()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
    };
    let zero = |range: std::ops::Range<usize>| b[range].iter().all(|c| *c == b'0');
    let shape = hex(0..2)
        && b[2] == b'-'
        && hex(3..35)
        && b[35] == b'-'
        && hex(36..52)
        && b[52] == b'-'
        && hex(53..55);
    if !shape || &b[0..2] == b"ff" || zero(3..35) || zero(36..52) {
        return None;
    }
    let rest = &value[55..];
    let version_00 = &b[0..2] == b"00";
    let ends_well = if version_00 {
        rest.is_empty()
    } else {
        rest.is_empty() || rest.starts_with('-')
    };
    // The SDK parses version 00 only: hand it the version-00 prefix of a future version.
    ends_well.then_some(head)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grammar_edges() {
        let ok = "00-12345678901234567890123456789012-1234567890123456-01";
        assert_eq!(valid_traceparent(ok), Some(ok));
        assert_eq!(valid_traceparent(&format!(" \t{ok}\t ")), Some(ok));
        assert_eq!(valid_traceparent(&format!("{ok}-")), None, "00 must end");
        let future = "cc-12345678901234567890123456789012-1234567890123456-01";
        assert_eq!(valid_traceparent(future), Some(future));
        assert_eq!(valid_traceparent(&format!("{future}-x")), Some(future));
        assert_eq!(valid_traceparent(&format!("{future}.x")), None);
        for bad in [
            "00-1-1-01",
            "ff-12345678901234567890123456789012-1234567890123456-01",
            "00-1234567890123456789012345678901A-1234567890123456-01",
            "00-+2345678901234567890123456789012-1234567890123456-01",
            "0-12345678901234567890123456789012-1234567890123456-01",
            "00-12345678901234567890123456789012-1234567890123456-1",
            "00-00000000000000000000000000000000-1234567890123456-01",
            "00-12345678901234567890123456789012-0000000000000000-01",
            "",
            "00-12345678901234567890123456789012-1234567890123456-0é",
        ] {
            assert_eq!(valid_traceparent(bad), None, "{bad:?}");
        }
    }
}
