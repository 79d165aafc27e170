//! The attribute value length limit the OpenTelemetry SDK specification defines
//! (`OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT`, falling back to `OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT`)
//! and opentelemetry_sdk 0.33 does not implement. Without it one request carrying a 3 MB value
//! makes the whole export batch too large for the collector, and every span in it is lost.

use std::sync::atomic::{AtomicU64, Ordering};

use opentelemetry::{Array, KeyValue, StringValue, Value};
use opentelemetry_sdk::trace::SpanData;

/// The fleet's default when neither variable is set: long enough for any SQL statement or URL
/// the fleet makes, short enough that a batch of 512 spans stays far below 4 MiB.
pub const DEFAULT_VALUE_LENGTH_LIMIT: usize = 2048;

/// The limit from the environment, as the specification names the variables.
pub fn value_length_limit_from_env() -> usize {
    [
        "OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT",
        "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT",
    ]
    .iter()
    .find_map(|name| std::env::var(name).ok()?.trim().parse().ok())
    .unwrap_or(DEFAULT_VALUE_LENGTH_LIMIT)
}

/// Truncates string (and string array) attribute values of spans and their events to `limit`
/// characters before they are exported, as the specification says: on a char boundary, other
/// types untouched. A step of [`crate::on_end::OnEnd`].
#[derive(Debug)]
pub struct ValueLengthLimit {
    limit: usize,
}

impl ValueLengthLimit {
    pub fn new(limit: usize) -> Self {
        Self { limit }
    }
}

impl crate::on_end::EndStep for ValueLengthLimit {
    fn on_end(&self, span: &mut SpanData) {
        limit_span(span, self.limit);
    }
}

/// Attribute values truncated in this process, for `/metrics` (the tracer provider, and so
/// this limit, is process-wide).
static TRUNCATED_VALUES: AtomicU64 = AtomicU64::new(0);

/// How many span attribute values (each string, each string in an array) this process has
/// truncated to the limit.
pub fn truncated_values() -> u64 {
    TRUNCATED_VALUES.load(Ordering::Relaxed)
}

fn truncate(s: &str, limit: usize) -> Option<String> {
    // No more bytes than the limit means no more chars: nothing to walk. (Walking every value
    // char by char was 9% of what tracing added to order-api's instructions.)
    if s.len() <= limit {
        return None;
    }
    let (cut, _) = s.char_indices().nth(limit)?;
    TRUNCATED_VALUES.fetch_add(1, Ordering::Relaxed);
    Some(s[..cut].to_owned())
}

fn limit_value(value: &mut Value, limit: usize) {
    match value {
        Value::String(s) => {
            if let Some(short) = truncate(s.as_str(), limit) {
                *s = StringValue::from(short);
            }
        }
        Value::Array(Array::String(items)) => {
            for s in items.iter_mut() {
                if let Some(short) = truncate(s.as_str(), limit) {
                    *s = StringValue::from(short);
                }
            }
        }
        _ => {}
    }
}

fn limit_all(attributes: &mut [KeyValue], limit: usize) {
    for kv in attributes {
        limit_value(&mut kv.value, limit);
    }
}

/// Applies the limit to a finished span's attributes and events.
pub fn limit_span(span: &mut SpanData, limit: usize) {
    limit_all(&mut span.attributes, limit);
    for event in span.events.events.iter_mut() {
        limit_all(&mut event.attributes, limit);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncates_on_char_boundaries_at_the_limit() {
        assert_eq!(truncate("abc", 3), None, "at the limit: kept whole");
        assert_eq!(truncate("abcd", 3).as_deref(), Some("abc"));
        assert_eq!(truncate("ééé", 2).as_deref(), Some("éé"));
        // More bytes than the limit, no more chars: kept whole.
        assert_eq!(truncate("éé", 2), None);
        assert_eq!(truncate("éé", 3), None);
        let mut v = Value::Array(Array::String(vec!["xyz".into(), "x".into()]));
        limit_value(&mut v, 2);
        assert_eq!(v.to_string(), r#"["xy","x"]"#);
        let mut n = Value::I64(123456);
        limit_value(&mut n, 1);
        assert_eq!(n, Value::I64(123456));
    }
}
