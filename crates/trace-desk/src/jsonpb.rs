//! OTLP messages rendered the way Tempo renders them (Go `jsonpb`): camelCase
//! field names, 64-bit integers as strings, default values omitted, enums as
//! their names, and bytes (trace/span ids) as standard base64.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValueKind;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use serde_json::{Map, Value, json};

/// The name of a `SpanKind` value as jsonpb writes it.
pub fn span_kind_name(kind: i32) -> String {
    match kind {
        0 => "SPAN_KIND_UNSPECIFIED".to_string(),
        1 => "SPAN_KIND_INTERNAL".to_string(),
        2 => "SPAN_KIND_SERVER".to_string(),
        3 => "SPAN_KIND_CLIENT".to_string(),
        4 => "SPAN_KIND_PRODUCER".to_string(),
        5 => "SPAN_KIND_CONSUMER".to_string(),
        // jsonpb writes unknown enum values as numbers; the caller turns this into one.
        other => other.to_string(),
    }
}

/// The name of a `StatusCode` value as jsonpb writes it.
pub fn status_code_name(code: i32) -> String {
    match code {
        0 => "STATUS_CODE_UNSET".to_string(),
        1 => "STATUS_CODE_OK".to_string(),
        2 => "STATUS_CODE_ERROR".to_string(),
        other => other.to_string(),
    }
}

fn enum_value(name: String, raw: i32) -> Value {
    if name == raw.to_string() {
        json!(raw)
    } else {
        Value::String(name)
    }
}

/// A bytes field: base64 (standard alphabet, padded).
pub fn bytes(b: &[u8]) -> Value {
    Value::String(B64.encode(b))
}

/// A `double` as jsonpb writes it (non-finite values as strings).
pub fn double(d: f64) -> Value {
    if d.is_nan() {
        json!("NaN")
    } else if d.is_infinite() {
        if d > 0.0 {
            json!("Infinity")
        } else {
            json!("-Infinity")
        }
    } else {
        json!(d)
    }
}

struct Obj(Map<String, Value>);

impl Obj {
    fn new() -> Self {
        Self(Map::new())
    }
    fn str(mut self, k: &str, v: &str) -> Self {
        if !v.is_empty() {
            self.0.insert(k.to_string(), Value::String(v.to_string()));
        }
        self
    }
    fn u64s(mut self, k: &str, v: u64) -> Self {
        if v != 0 {
            self.0.insert(k.to_string(), Value::String(v.to_string()));
        }
        self
    }
    fn u32(mut self, k: &str, v: u32) -> Self {
        if v != 0 {
            self.0.insert(k.to_string(), json!(v));
        }
        self
    }
    fn bytes(mut self, k: &str, v: &[u8]) -> Self {
        if !v.is_empty() {
            self.0.insert(k.to_string(), bytes(v));
        }
        self
    }
    fn list(mut self, k: &str, v: Vec<Value>) -> Self {
        if !v.is_empty() {
            self.0.insert(k.to_string(), Value::Array(v));
        }
        self
    }
    fn opt(mut self, k: &str, v: Option<Value>) -> Self {
        if let Some(v) = v {
            self.0.insert(k.to_string(), v);
        }
        self
    }
    fn done(self) -> Value {
        Value::Object(self.0)
    }
}

/// An `AnyValue`: the set oneof field is always written, even when zero.
pub fn any_value(v: &AnyValue) -> Value {
    let mut m = Map::new();
    match &v.value {
        Some(AnyValueKind::StringValue(s)) => {
            m.insert("stringValue".into(), json!(s));
        }
        Some(AnyValueKind::BoolValue(b)) => {
            m.insert("boolValue".into(), json!(b));
        }
        Some(AnyValueKind::IntValue(i)) => {
            m.insert("intValue".into(), json!(i.to_string()));
        }
        Some(AnyValueKind::DoubleValue(d)) => {
            m.insert("doubleValue".into(), double(*d));
        }
        Some(AnyValueKind::ArrayValue(a)) => {
            let values = a.values.iter().map(any_value).collect();
            m.insert(
                "arrayValue".into(),
                Obj::new().list("values", values).done(),
            );
        }
        Some(AnyValueKind::KvlistValue(kv)) => {
            m.insert(
                "kvlistValue".into(),
                Obj::new().list("values", key_values(&kv.values)).done(),
            );
        }
        Some(AnyValueKind::BytesValue(b)) => {
            m.insert("bytesValue".into(), bytes(b));
        }
        Some(AnyValueKind::StringValueStrindex(i)) => {
            m.insert("stringValueStrindex".into(), json!(i));
        }
        None => {}
    }
    Value::Object(m)
}

/// One attribute.
pub fn key_value(kv: &KeyValue) -> Value {
    Obj::new()
        .str("key", &kv.key)
        .opt("value", kv.value.as_ref().map(any_value))
        .done()
}

/// A list of attributes.
pub fn key_values(kvs: &[KeyValue]) -> Vec<Value> {
    kvs.iter().map(key_value).collect()
}

/// A `Resource`.
pub fn resource(r: &Resource) -> Value {
    Obj::new()
        .list("attributes", key_values(&r.attributes))
        .u32("droppedAttributesCount", r.dropped_attributes_count)
        .done()
}

/// An `InstrumentationScope`.
pub fn scope(s: &InstrumentationScope) -> Value {
    Obj::new()
        .str("name", &s.name)
        .str("version", &s.version)
        .list("attributes", key_values(&s.attributes))
        .u32("droppedAttributesCount", s.dropped_attributes_count)
        .done()
}

fn status(s: &Status) -> Value {
    let mut o = Obj::new().str("message", &s.message);
    if s.code != 0 {
        o = o.opt("code", Some(enum_value(status_code_name(s.code), s.code)));
    }
    o.done()
}

fn event(e: &Event) -> Value {
    Obj::new()
        .u64s("timeUnixNano", e.time_unix_nano)
        .str("name", &e.name)
        .list("attributes", key_values(&e.attributes))
        .u32("droppedAttributesCount", e.dropped_attributes_count)
        .done()
}

fn link(l: &Link) -> Value {
    Obj::new()
        .bytes("traceId", &l.trace_id)
        .bytes("spanId", &l.span_id)
        .str("traceState", &l.trace_state)
        .list("attributes", key_values(&l.attributes))
        .u32("droppedAttributesCount", l.dropped_attributes_count)
        .u32("flags", l.flags)
        .done()
}

/// A `Span`.
pub fn span(s: &Span) -> Value {
    let kind = (s.kind != 0).then(|| enum_value(span_kind_name(s.kind), s.kind));
    Obj::new()
        .bytes("traceId", &s.trace_id)
        .bytes("spanId", &s.span_id)
        .str("traceState", &s.trace_state)
        .bytes("parentSpanId", &s.parent_span_id)
        .u32("flags", s.flags)
        .str("name", &s.name)
        .opt("kind", kind)
        .u64s("startTimeUnixNano", s.start_time_unix_nano)
        .u64s("endTimeUnixNano", s.end_time_unix_nano)
        .list("attributes", key_values(&s.attributes))
        .u32("droppedAttributesCount", s.dropped_attributes_count)
        .list("events", s.events.iter().map(event).collect())
        .u32("droppedEventsCount", s.dropped_events_count)
        .list("links", s.links.iter().map(link).collect())
        .u32("droppedLinksCount", s.dropped_links_count)
        .opt("status", s.status.as_ref().map(status))
        .done()
}

/// A `ScopeSpans`.
pub fn scope_spans(ss: &ScopeSpans) -> Value {
    Obj::new()
        .opt("scope", ss.scope.as_ref().map(scope))
        .list("spans", ss.spans.iter().map(span).collect())
        .str("schemaUrl", &ss.schema_url)
        .done()
}

/// A `ResourceSpans`.
pub fn resource_spans(rs: &ResourceSpans) -> Value {
    Obj::new()
        .opt("resource", rs.resource.as_ref().map(resource))
        .list(
            "scopeSpans",
            rs.scope_spans.iter().map(scope_spans).collect(),
        )
        .str("schemaUrl", &rs.schema_url)
        .done()
}

/// An attribute value rendered as plain text (for tag matching and tag values).
pub fn value_as_string(v: &AnyValue) -> Option<String> {
    match &v.value {
        Some(AnyValueKind::StringValue(s)) => Some(s.clone()),
        Some(AnyValueKind::BoolValue(b)) => Some(b.to_string()),
        Some(AnyValueKind::IntValue(i)) => Some(i.to_string()),
        Some(AnyValueKind::DoubleValue(d)) => Some(d.to_string()),
        Some(AnyValueKind::BytesValue(b)) => Some(hex::encode(b)),
        Some(AnyValueKind::ArrayValue(_)) | Some(AnyValueKind::KvlistValue(_)) => {
            Some(any_value(v).to_string())
        }
        Some(AnyValueKind::StringValueStrindex(_)) | None => None,
    }
}

/// Tempo's v2 tag-value type name for an attribute value, with its text.
pub fn typed_value(v: &AnyValue) -> Option<(&'static str, String)> {
    match &v.value {
        Some(AnyValueKind::StringValue(s)) => Some(("string", s.clone())),
        Some(AnyValueKind::BoolValue(b)) => Some(("bool", b.to_string())),
        Some(AnyValueKind::IntValue(i)) => Some(("int", i.to_string())),
        Some(AnyValueKind::DoubleValue(d)) => Some(("double", d.to_string())),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::trace::v1::status::StatusCode;

    #[test]
    fn span_encoding_follows_jsonpb() {
        let s = Span {
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            name: "GET /".into(),
            kind: 2,
            start_time_unix_nano: 1_700_000_000_000_000_000,
            end_time_unix_nano: 1_700_000_000_500_000_000,
            attributes: vec![KeyValue {
                key: "n".into(),
                value: Some(AnyValue {
                    value: Some(AnyValueKind::IntValue(7)),
                }),
                ..Default::default()
            }],
            status: Some(Status {
                message: String::new(),
                code: StatusCode::Error as i32,
            }),
            ..Default::default()
        };
        let v = span(&s);
        assert_eq!(v["traceId"], json!("AQEBAQEBAQEBAQEBAQEBAQ=="));
        assert_eq!(v["spanId"], json!("AgICAgICAgI="));
        assert!(v.get("parentSpanId").is_none());
        assert!(v.get("traceState").is_none());
        assert_eq!(v["kind"], json!("SPAN_KIND_SERVER"));
        assert_eq!(v["startTimeUnixNano"], json!("1700000000000000000"));
        assert_eq!(v["attributes"][0]["value"]["intValue"], json!("7"));
        assert_eq!(v["status"], json!({"code": "STATUS_CODE_ERROR"}));
        let unset = span(&Span {
            status: Some(Status::default()),
            ..Default::default()
        });
        assert_eq!(unset, json!({"status": {}}));
    }

    #[test]
    fn doubles() {
        assert_eq!(double(f64::NAN), json!("NaN"));
        assert_eq!(double(1.5), json!(1.5));
    }
}
