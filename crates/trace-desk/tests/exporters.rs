//! Spans sent by the real opentelemetry-otlp exporter (gRPC and HTTP/protobuf)
//! read back through the Tempo API.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use opentelemetry::trace::{Span as _, SpanKind, TraceContextExt, Tracer, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use serde_json::{Value, json};

struct Sent {
    trace_id: [u8; 16],
    parent_id: [u8; 8],
    child_id: [u8; 8],
}

/// Makes a SERVER parent and a CLIENT child, then flushes the provider.
async fn send_pair(provider: SdkTracerProvider) -> Sent {
    let tracer = provider.tracer("desk-test");
    let parent = tracer
        .span_builder("GET /orders/{id}")
        .with_kind(SpanKind::Server)
        .with_attributes(vec![KeyValue::new("http.route", "/orders/{id}")])
        .start(&tracer);
    let cx = Context::current_with_span(parent);
    let mut child = tracer
        .span_builder("SELECT orders")
        .with_kind(SpanKind::Client)
        .with_attributes(vec![
            KeyValue::new("db.system.name", "postgresql"),
            KeyValue::new("db.rows", 42i64),
        ])
        .start_with_context(&tracer, &cx);
    let child_id = child.span_context().span_id().to_bytes();
    child.set_status(opentelemetry::trace::Status::error("db down"));
    child.end();
    let span_ref = cx.span();
    let parent_sc = span_ref.span_context().clone();
    span_ref.end();
    let sent = Sent {
        trace_id: parent_sc.trace_id().to_bytes(),
        parent_id: parent_sc.span_id().to_bytes(),
        child_id,
    };
    tokio::task::spawn_blocking(move || {
        provider.force_flush().expect("flush");
        provider.shutdown().expect("shutdown");
    })
    .await
    .expect("join");
    sent
}

fn resource(service: &str) -> Resource {
    Resource::builder()
        .with_service_name(service.to_string())
        .build()
}

async fn check(desk: &trace_desk::RunningDesk, sent: &Sent, service: &str) {
    let hex_id = hex::encode(sent.trace_id);
    for (path, key) in [
        (format!("/api/traces/{hex_id}"), "/batches"),
        (format!("/api/v2/traces/{hex_id}"), "/trace/resourceSpans"),
    ] {
        let body = if key == "/batches" {
            wait_for_trace(desk, &hex_id, 2).await
        } else {
            get_json(desk, &path).await
        };
        let batches = body.pointer(key).cloned().unwrap_or(Value::Null);
        let rs = &batches[0];
        assert_eq!(
            resource_attr(rs, "service.name"),
            Some(json!({"stringValue": service}))
        );
        let spans = all_spans(&batches);
        assert_eq!(spans.len(), 2, "{path}: {body}");
        let parent = spans
            .iter()
            .find(|s| s["spanId"] == b64(&sent.parent_id))
            .expect("parent by base64 id");
        let child = spans
            .iter()
            .find(|s| s["spanId"] == b64(&sent.child_id))
            .expect("child by base64 id");
        assert_eq!(parent["traceId"], b64(&sent.trace_id));
        assert_eq!(child["traceId"], b64(&sent.trace_id));
        assert_eq!(parent["kind"], "SPAN_KIND_SERVER");
        assert_eq!(child["kind"], "SPAN_KIND_CLIENT");
        assert!(
            parent.get("parentSpanId").is_none(),
            "root has no parentSpanId"
        );
        assert_eq!(child["parentSpanId"], b64(&sent.parent_id));
        // 64-bit integers are strings.
        let start = parent["startTimeUnixNano"].as_str().expect("string start");
        let end = parent["endTimeUnixNano"].as_str().expect("string end");
        assert!(start.parse::<u64>().unwrap() <= end.parse::<u64>().unwrap());
        let rows = child["attributes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|kv| kv["key"] == "db.rows")
            .expect("db.rows");
        assert_eq!(rows["value"], json!({"intValue": "42"}));
        assert_eq!(child["status"]["code"], "STATUS_CODE_ERROR");
        assert_eq!(child["status"]["message"], "db down");
        assert_eq!(rs["scopeSpans"][0]["scope"]["name"], "desk-test");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn grpc_exporter_round_trip() {
    let desk = desk(10_000).await;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(format!("http://{}", desk.otlp_grpc_addr()))
        .build()
        .expect("grpc exporter");
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource("grpc-svc"))
        .build();
    let sent = send_pair(provider).await;
    check(&desk, &sent, "grpc-svc").await;
    assert_eq!(desk.store().stats().spans_received, 2);
    desk.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn http_protobuf_exporter_round_trip() {
    let desk = desk(10_000).await;
    let endpoint = format!("http://{}/v1/traces", desk.otlp_http_addr());
    // The blocking reqwest client must be built and dropped outside async context.
    let provider = tokio::task::spawn_blocking(move || {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(endpoint)
            .build()
            .expect("http exporter");
        SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource("http-svc"))
            .build()
    })
    .await
    .expect("join");
    let sent = send_pair(provider).await;
    check(&desk, &sent, "http-svc").await;
    desk.shutdown().await;
}
