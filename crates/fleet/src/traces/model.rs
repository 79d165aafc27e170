//! Spans read from Tempo's trace-by-id JSON: v1 `{"batches":[…]}`, v2
//! `{"trace":{"resourceSpans":[…]}}`, or plain OTLP/JSON `{"resourceSpans":[…]}`.
//!
//! Tempo marshals protobuf with jsonpb: ids are base64, 64-bit integers are strings and enums
//! are names. OTLP/JSON has hex ids and integer enums. Both are accepted.

use anyhow::{Context as _, bail};
use base64::Engine as _;
use serde_json::Value;

/// One span, flattened with its resource's `service.name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    pub trace_id: String,
    pub span_id: String,
    /// `None` for a root span (empty parent id).
    pub parent_id: Option<String>,
    pub service: String,
    pub name: String,
    pub kind: Kind,
    pub start: u64,
    pub end: u64,
    pub error: bool,
    pub status_message: String,
    /// Span attributes, values rendered as text.
    pub attributes: Vec<(String, String)>,
    pub events: Vec<Event>,
}

impl Span {
    pub fn duration(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }

    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// A span event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub name: String,
    pub time: u64,
    pub attributes: Vec<(String, String)>,
}

/// OTLP span kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Unspecified,
    Internal,
    Server,
    Client,
    Producer,
    Consumer,
}

impl Kind {
    fn parse(v: &Value) -> Kind {
        let n = match v {
            Value::Number(n) => n.as_i64().unwrap_or(0),
            Value::String(s) => match s.trim_start_matches("SPAN_KIND_") {
                "INTERNAL" => 1,
                "SERVER" => 2,
                "CLIENT" => 3,
                "PRODUCER" => 4,
                "CONSUMER" => 5,
                other => other.parse().unwrap_or(0),
            },
            _ => 0,
        };
        match n {
            1 => Kind::Internal,
            2 => Kind::Server,
            3 => Kind::Client,
            4 => Kind::Producer,
            5 => Kind::Consumer,
            _ => Kind::Unspecified,
        }
    }

    /// Four characters at most: `SRV`, `CLI`, `INT`, `PROD`, `CONS`, `-`.
    pub fn abbrev(self) -> &'static str {
        match self {
            Kind::Unspecified => "-",
            Kind::Internal => "INT",
            Kind::Server => "SRV",
            Kind::Client => "CLI",
            Kind::Producer => "PROD",
            Kind::Consumer => "CONS",
        }
    }
}

/// The spans of a trace-by-id answer, in any of the accepted shapes.
pub fn parse_trace(json: &Value) -> anyhow::Result<Vec<Span>> {
    let resource_spans = json
        .get("batches")
        .or_else(|| json.get("trace").and_then(|t| t.get("resourceSpans")))
        .or_else(|| json.get("resourceSpans"))
        .context("the answer has neither `batches` (v1) nor `trace.resourceSpans` (v2)")?;
    let Some(resource_spans) = resource_spans.as_array() else {
        bail!("`batches` / `resourceSpans` is not an array");
    };
    let mut spans = Vec::new();
    for rs in resource_spans {
        let service = rs["resource"]["attributes"]
            .as_array()
            .and_then(|a| a.iter().find(|kv| kv["key"] == "service.name"))
            .map(|kv| any_value(&kv["value"]))
            .unwrap_or_default();
        // Very old Tempo answers say `instrumentationLibrarySpans`.
        let scopes = rs
            .get("scopeSpans")
            .or_else(|| rs.get("instrumentationLibrarySpans"))
            .and_then(Value::as_array);
        for ss in scopes.into_iter().flatten() {
            for s in ss["spans"].as_array().into_iter().flatten() {
                spans.push(parse_span(s, &service)?);
            }
        }
    }
    Ok(spans)
}

fn parse_span(s: &Value, service: &str) -> anyhow::Result<Span> {
    let name = s["name"].as_str().unwrap_or_default().to_owned();
    let id = |key: &str| -> anyhow::Result<String> {
        id_hex(s[key].as_str().unwrap_or_default())
            .with_context(|| format!("span {name:?}: bad {key}"))
    };
    let parent = id("parentSpanId")?;
    Ok(Span {
        trace_id: id("traceId")?,
        span_id: id("spanId")?,
        parent_id: (!parent.is_empty() && parent.bytes().any(|b| b != b'0')).then_some(parent),
        service: service.to_owned(),
        kind: Kind::parse(&s["kind"]),
        start: int(&s["startTimeUnixNano"]),
        end: int(&s["endTimeUnixNano"]),
        error: matches!(
            &s["status"]["code"],
            Value::String(c) if c == "STATUS_CODE_ERROR" || c == "2"
        ) || s["status"]["code"] == 2,
        status_message: s["status"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        attributes: attributes(&s["attributes"]),
        events: s["events"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| Event {
                name: e["name"].as_str().unwrap_or_default().to_owned(),
                time: int(&e["timeUnixNano"]),
                attributes: attributes(&e["attributes"]),
            })
            .collect(),
        name,
    })
}

/// A span or trace id as lowercase hex: hex (OTLP/JSON, 16 or 32 digits) stays, anything else
/// is read as base64 (Tempo's jsonpb). Empty stays empty.
pub fn id_hex(s: &str) -> anyhow::Result<String> {
    if s.is_empty() {
        return Ok(String::new());
    }
    if (s.len() == 16 || s.len() == 32) && s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(s.to_ascii_lowercase());
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(s)
        .with_context(|| format!("{s:?} is neither hex nor base64"))?;
    Ok(hex::encode(bytes))
}

/// A 64-bit integer that jsonpb wrote as a string (or a plain JSON number).
pub fn int(v: &Value) -> u64 {
    match v {
        Value::String(s) => s.parse().unwrap_or(0),
        Value::Number(n) => n.as_u64().unwrap_or(0),
        _ => 0,
    }
}

fn attributes(v: &Value) -> Vec<(String, String)> {
    v.as_array()
        .into_iter()
        .flatten()
        .map(|kv| {
            (
                kv["key"].as_str().unwrap_or_default().to_owned(),
                any_value(&kv["value"]),
            )
        })
        .collect()
}

/// An OTLP `AnyValue` as text.
pub fn any_value(v: &Value) -> String {
    let Some((kind, inner)) = v.as_object().and_then(|o| o.iter().next()) else {
        return String::new();
    };
    match (kind.as_str(), inner) {
        (_, Value::String(s)) => s.clone(),
        ("arrayValue", a) => format!(
            "[{}]",
            a["values"]
                .as_array()
                .into_iter()
                .flatten()
                .map(any_value)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        ("kvlistValue", l) => format!(
            "{{{}}}",
            attributes(&l["values"])
                .into_iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        (_, other) => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn jsonpb_and_otlp_json_read_alike() {
        let jsonpb = json!({"batches": [{
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "svc"}}]},
            "scopeSpans": [{"spans": [{
                "traceId": "AAAAAAAAAAAAAAAAAAAAAQ==", "spanId": "AAAAAAAAAAI=", "parentSpanId": "AAAAAAAAAAE=",
                "name": "op", "kind": "SPAN_KIND_CLIENT",
                "startTimeUnixNano": "1000", "endTimeUnixNano": "3500",
                "status": {"code": "STATUS_CODE_ERROR", "message": "boom"},
                "attributes": [{"key": "n", "value": {"intValue": "7"}}, {"key": "b", "value": {"boolValue": true}}],
                "events": [{"name": "e", "timeUnixNano": "2000", "attributes": []}]
            }]}]
        }]});
        let otlp = json!({"trace": {"resourceSpans": [{
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "svc"}}]},
            "scopeSpans": [{"spans": [{
                "traceId": "00000000000000000000000000000001", "spanId": "0000000000000002", "parentSpanId": "0000000000000001",
                "name": "op", "kind": 3,
                "startTimeUnixNano": 1000, "endTimeUnixNano": 3500,
                "status": {"code": 2, "message": "boom"},
                "attributes": [{"key": "n", "value": {"intValue": 7}}, {"key": "b", "value": {"boolValue": true}}],
                "events": [{"name": "e", "timeUnixNano": "2000"}]
            }]}]
        }]}});
        let a = parse_trace(&jsonpb).unwrap();
        let b = parse_trace(&otlp).unwrap();
        assert_eq!(a, b);
        let s = &a[0];
        assert_eq!(s.trace_id, "00000000000000000000000000000001");
        assert_eq!(s.parent_id.as_deref(), Some("0000000000000001"));
        assert_eq!((s.kind, s.duration(), s.error), (Kind::Client, 2500, true));
        assert_eq!(s.attr("n"), Some("7"));
        assert_eq!(s.attr("b"), Some("true"));
        assert_eq!(s.service, "svc");
    }

    #[test]
    fn roots_and_bad_shapes() {
        let root = json!({"batches": [{"scopeSpans": [{"spans": [{
            "traceId": "AAAAAAAAAAAAAAAAAAAAAQ==", "spanId": "AAAAAAAAAAI=", "name": "r"
        }]}]}]});
        let spans = parse_trace(&root).unwrap();
        assert_eq!(spans[0].parent_id, None);
        assert_eq!(spans[0].kind, Kind::Unspecified);
        assert!(parse_trace(&json!({"nope": 1})).is_err());
    }
}
