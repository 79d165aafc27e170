//! The semantic-convention rules a live checker (OpenTelemetry Weaver's `registry live-check`)
//! would apply, written as a test over the spans the services really emit: Weaver is not
//! installable here (not on crates.io; its releases come from GitHub). Conventions: v1.44 plus
//! the RPC rename after it (`rpc.status_code`); the fleet's own attributes come from its
//! registry, `semconv/registry/fleet.yaml`.
//!
//! Checked for every span of a run that covers checkouts, a decline, bad input, a missing
//! route and reads: kind and name per convention, required attributes present, every attribute
//! known (convention or project registry), value types, no deprecated names, and `error.type`
//! on every span whose status is Error.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::time::Duration;

use opentelemetry::Value;
use opentelemetry::trace::{SpanKind, Status};
use opentelemetry_sdk::trace::SpanData;

mod support;

/// Attribute names of the conventions the fleet implements (HTTP, RPC, database, error),
/// with the type each must have.
const CONVENTION: &[(&str, Kind)] = &[
    ("http.request.method", Kind::Str),
    ("http.request.method_original", Kind::Str),
    ("http.route", Kind::Str),
    ("http.response.status_code", Kind::Int),
    ("http.request.resend_count", Kind::Int),
    ("url.path", Kind::Str),
    ("url.query", Kind::Str),
    ("url.scheme", Kind::Str),
    ("url.full", Kind::Str),
    ("url.template", Kind::Str),
    ("server.address", Kind::Str),
    ("server.port", Kind::Int),
    ("client.address", Kind::Str),
    ("client.port", Kind::Int),
    ("network.peer.address", Kind::Str),
    ("network.peer.port", Kind::Int),
    ("network.protocol.version", Kind::Str),
    ("network.transport", Kind::Str),
    ("network.type", Kind::Str),
    ("user_agent.original", Kind::Str),
    ("rpc.system.name", Kind::Str),
    ("rpc.method", Kind::Str),
    ("rpc.method_original", Kind::Str),
    ("rpc.status_code", Kind::Str),
    ("db.system.name", Kind::Str),
    ("db.namespace", Kind::Str),
    ("db.operation.name", Kind::Str),
    ("db.collection.name", Kind::Str),
    ("db.query.text", Kind::Str),
    ("db.query.summary", Kind::Str),
    ("db.response.status_code", Kind::Str),
    ("db.client.connection.pool.name", Kind::Str),
    ("error.type", Kind::Str),
    ("session.id", Kind::Str),
    ("user.id", Kind::Str),
];

/// Names the conventions have deprecated (or never had) that must not appear.
const DEPRECATED: &[&str] = &[
    "rpc.system",
    "rpc.service",
    "rpc.grpc.status_code",
    "rpc.response.status_code",
    "http.method",
    "http.status_code",
    "http.url",
    "http.target",
    "http.scheme",
    "net.peer.name",
    "net.peer.port",
    "net.host.name",
    "db.system",
    "db.statement",
    "db.name",
    "db.operation",
    "db.sql.table",
    "otel.tracing_event_count",
    "exception.message",
];

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Str,
    Int,
}

/// The project's own attributes and their types, read from its Weaver registry.
fn project_registry() -> Vec<(String, Kind)> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../semconv/registry/fleet.yaml"
    );
    let text = std::fs::read_to_string(path).unwrap();
    let mut out = Vec::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let Some(id) = line.trim().strip_prefix("- id: ") else {
            continue;
        };
        if !(id.starts_with("app.") || id.starts_with("fault.")) {
            continue;
        }
        let kind = match lines.peek().map(|l| l.trim()) {
            Some("type: int") => Kind::Int,
            _ => Kind::Str, // strings and string enums
        };
        out.push((id.to_owned(), kind));
    }
    assert!(out.len() >= 5, "the registry scan found {out:?}");
    out
}

fn kind_of(v: &Value) -> Option<Kind> {
    match v {
        Value::String(_) => Some(Kind::Str),
        Value::I64(_) => Some(Kind::Int),
        _ => None,
    }
}

fn attr<'a>(span: &'a SpanData, key: &str) -> Option<&'a Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| &kv.value)
}

fn check(span: &SpanData, known: &[(String, Kind)]) -> Vec<String> {
    let mut v = Vec::new();
    let name = span.name.as_ref();
    let has = |k: &str| attr(span, k).is_some();
    let s = |k: &str| attr(span, k).map(|x| x.as_str().into_owned());
    for kv in &span.attributes {
        let key = kv.key.as_str();
        if DEPRECATED.contains(&key) {
            v.push(format!("{name}: deprecated attribute {key}"));
            continue;
        }
        let expected = CONVENTION
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, t)| *t)
            .or_else(|| known.iter().find(|(k, _)| k == key).map(|(_, t)| *t));
        match expected {
            None => v.push(format!("{name}: attribute {key} is in no registry")),
            Some(t) if kind_of(&kv.value) != Some(t) => {
                v.push(format!("{name}: {key} should be {t:?}, is {:?}", kv.value))
            }
            _ => {}
        }
    }
    if matches!(span.status, Status::Error { .. }) && !has("error.type") {
        v.push(format!("{name}: status Error without error.type"));
    }
    let require = |v: &mut Vec<String>, keys: &[&str]| {
        for k in keys {
            if !has(k) {
                v.push(format!("{name}: required {k} missing"));
            }
        }
    };
    if has("rpc.system.name") {
        require(&mut v, &["rpc.method", "rpc.status_code", "server.address"]);
        if !matches!(span.span_kind, SpanKind::Client | SpanKind::Server) {
            v.push(format!("{name}: an RPC span must be CLIENT or SERVER"));
        }
        if s("rpc.method").as_deref() != Some(name) && name != "grpc" {
            v.push(format!("{name}: RPC span name must be rpc.method"));
        }
    } else if has("http.request.method") {
        match span.span_kind {
            SpanKind::Server => {
                require(
                    &mut v,
                    &["url.path", "url.scheme", "http.response.status_code"],
                );
                let method = s("http.request.method").unwrap_or_default();
                let expected = match s("http.route") {
                    Some(route) => format!("{method} {route}"),
                    None => method.clone(),
                };
                if method != "_OTHER" && name != expected {
                    v.push(format!(
                        "{name}: HTTP server span name should be {expected:?}"
                    ));
                }
            }
            SpanKind::Client => {
                require(&mut v, &["url.full", "server.address", "server.port"]);
                if let Some(full) = s("url.full")
                    && (full.contains('@') || full.contains("token="))
                {
                    v.push(format!("{name}: url.full carries credentials: {full}"));
                }
            }
            _ => v.push(format!("{name}: an HTTP span must be CLIENT or SERVER")),
        }
    } else if has("db.system.name") && span.span_kind == SpanKind::Client {
        require(
            &mut v,
            &[
                "db.operation.name",
                "db.collection.name",
                "db.query.summary",
            ],
        );
        if s("db.query.summary").as_deref() != Some(name) {
            v.push(format!(
                "{name}: a database span is named by its db.query.summary"
            ));
        }
    } else if span.span_kind != SpanKind::Internal {
        v.push(format!(
            "{name}: a {:?} span with no protocol attributes",
            span.span_kind
        ));
    }
    v
}

#[tokio::test(flavor = "multi_thread")]
async fn every_span_of_a_varied_run_follows_the_conventions() {
    let (_guard, spans) = fleet_telemetry::testing::capture("semconv").unwrap();
    let (services, url, dir) = support::start().await;
    let http = reqwest::Client::new();
    let ok = http
        .post(format!("{url}/checkout"))
        .json(&support::checkout_body())
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 201);
    let order: serde_json::Value = ok.json().await.unwrap();
    let mut declined = support::checkout_body();
    declined["card_number"] = "4000000000009995".into();
    for (body, status) in [
        (declined, 402),
        (serde_json::json!({"customer_email": "nope"}), 422),
    ] {
        let r = http
            .post(format!("{url}/checkout?access_token=secret"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), status);
    }
    for path in [
        format!("/orders/{}", order["order_id"].as_str().unwrap()),
        "/products".into(),
        "/no-such-route".into(),
    ] {
        http.get(format!("{url}{path}")).send().await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    support::stop(services, dir).await;

    let known = project_registry();
    let all = spans.spans();
    assert!(all.len() >= 40, "only {} spans", all.len());
    let violations: BTreeSet<String> = all.iter().flat_map(|s| check(s, &known)).collect();
    assert!(violations.is_empty(), "{violations:#?}");
    // The redaction reached the span.
    let queries: Vec<String> = all
        .iter()
        .filter_map(|s| attr(s, "url.query").map(|q| q.as_str().into_owned()))
        .collect();
    assert!(queries.iter().all(|q| !q.contains("secret")), "{queries:?}");
    assert!(
        queries.iter().any(|q| q == "access_token=REDACTED"),
        "{queries:?}"
    );
}

#[test]
fn the_checker_catches_what_it_claims_to() {
    use opentelemetry::KeyValue;
    let known = project_registry();
    let base = |name: &'static str, kind: SpanKind, attrs: Vec<KeyValue>| SpanData {
        span_context: opentelemetry::trace::SpanContext::empty_context(),
        parent_span_id: opentelemetry::trace::SpanId::INVALID,
        parent_span_is_remote: false,
        span_kind: kind,
        name: name.into(),
        start_time: std::time::SystemTime::now(),
        end_time: std::time::SystemTime::now(),
        attributes: attrs,
        dropped_attributes_count: 0,
        events: Default::default(),
        links: Default::default(),
        status: Status::Unset,
        instrumentation_scope: Default::default(),
    };
    let deprecated = base(
        "payment.v1.PaymentService/Charge",
        SpanKind::Server,
        vec![
            KeyValue::new("rpc.system.name", "grpc"),
            KeyValue::new("rpc.method", "payment.v1.PaymentService/Charge"),
            KeyValue::new("rpc.response.status_code", "OK"),
            KeyValue::new("server.address", "x"),
        ],
    );
    let v = check(&deprecated, &known);
    assert!(
        v.iter()
            .any(|m| m.contains("deprecated attribute rpc.response.status_code")),
        "{v:?}"
    );
    assert!(
        v.iter().any(|m| m.contains("required rpc.status_code")),
        "{v:?}"
    );
    let typed = base(
        "GET /products",
        SpanKind::Server,
        vec![
            KeyValue::new("http.request.method", "GET"),
            KeyValue::new("http.route", "/products"),
            KeyValue::new("url.path", "/products"),
            KeyValue::new("url.scheme", "http"),
            KeyValue::new("http.response.status_code", "200"),
            KeyValue::new("app.undeclared", 1),
        ],
    );
    let v = check(&typed, &known);
    assert!(v.iter().any(|m| m.contains("should be Int")), "{v:?}");
    assert!(
        v.iter()
            .any(|m| m.contains("app.undeclared is in no registry")),
        "{v:?}"
    );
    let mut failed = base("createOrder", SpanKind::Internal, vec![]);
    failed.status = Status::error("boom");
    assert!(
        check(&failed, &known)
            .iter()
            .any(|m| m.contains("without error.type"))
    );
}
