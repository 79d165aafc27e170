//! OpenTelemetry's attribute limits at intake, the byte estimate of what is kept, and the
//! request size limit (gzip bombs included), over the real OTLP/HTTP intake.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write as _;

use common::*;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Av;
use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};
use prost::Message as _;
use serde_json::Value;
use trace_desk::DeskConfig;
use trace_desk::limits::AttributeLimits;

fn attrs(n: usize) -> Vec<KeyValue> {
    (0..n).map(|i| kv(&format!("k{i}"), s("v"))).collect()
}

async fn post(desk: &trace_desk::RunningDesk, body: Vec<u8>, gzip: bool) -> reqwest::Response {
    let mut req = client()
        .post(format!("http://{}/v1/traces", desk.otlp_http_addr()))
        .header("content-type", "application/x-protobuf");
    if gzip {
        req = req.header("content-encoding", "gzip");
    }
    req.body(body).send().await.unwrap()
}

fn stored_span(v: &Value) -> Value {
    all_spans(&v["batches"])[0].clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn limits_drop_and_cut_at_their_edges_and_count_it() {
    let desk = desk(1_000).await;
    // At the edges: 128 attributes and a 4,096-byte value are kept whole.
    let mut req = request("limits", &[Sp::new(1, 1, "edge")]);
    let span = &mut req.resource_spans[0].scope_spans[0].spans[0];
    span.attributes = attrs(127);
    span.attributes.push(kv("long", s(&"x".repeat(4096))));
    span.events = (0..128)
        .map(|i| Event {
            name: format!("e{i}"),
            attributes: attrs(128),
            ..Default::default()
        })
        .collect();
    span.links = (0..128)
        .map(|_| Link {
            trace_id: vec![9; 16],
            span_id: vec![9; 8],
            attributes: attrs(128),
            ..Default::default()
        })
        .collect();
    post_protobuf(&desk, &req).await;
    let v = get_json(&desk, &format!("/api/traces/{}", hex_trace(1))).await;
    let sp = stored_span(&v);
    assert_eq!(sp["attributes"].as_array().unwrap().len(), 128);
    assert!(sp.get("droppedAttributesCount").is_none());
    assert_eq!(sp["events"].as_array().unwrap().len(), 128);
    assert!(sp.get("droppedEventsCount").is_none());
    assert_eq!(
        sp["attributes"][127]["value"]["stringValue"]
            .as_str()
            .unwrap()
            .len(),
        4096
    );
    let text = get(&desk, "/metrics").await.text().await.unwrap();
    for m in [
        "trace_desk_attributes_dropped_total",
        "trace_desk_events_dropped_total",
        "trace_desk_links_dropped_total",
        "trace_desk_values_truncated_total",
    ] {
        assert_eq!(metric_value(&text, m), 0, "{m}");
    }

    // One past each edge: dropped (counted on the span) and cut.
    let mut req = request("limits", &[Sp::new(2, 1, "over")]);
    let rs = &mut req.resource_spans[0];
    let resource = rs.resource.as_mut().unwrap();
    resource.attributes.extend(attrs(127)); // 2 + 127 = 129
    resource.attributes[0] = kv("service.name", s(&format!("{}é", "s".repeat(4095))));
    let span = &mut rs.scope_spans[0].spans[0];
    span.attributes = attrs(129);
    span.attributes[0] = kv("bytes", Av::BytesValue(vec![1; 5000]));
    span.events = (0..129)
        .map(|_| Event {
            attributes: attrs(129),
            ..Default::default()
        })
        .collect();
    span.links = (0..129)
        .map(|_| Link {
            trace_id: vec![9; 16],
            span_id: vec![9; 8],
            attributes: attrs(130),
            ..Default::default()
        })
        .collect();
    post_protobuf(&desk, &req).await;
    let v = get_json(&desk, &format!("/api/traces/{}", hex_trace(2))).await;
    let sp = stored_span(&v);
    assert_eq!(sp["attributes"].as_array().unwrap().len(), 128);
    assert_eq!(sp["droppedAttributesCount"], 1);
    assert_eq!(sp["events"].as_array().unwrap().len(), 128);
    assert_eq!(sp["droppedEventsCount"], 1);
    assert_eq!(sp["events"][0]["droppedAttributesCount"], 1);
    assert_eq!(sp["links"].as_array().unwrap().len(), 128);
    assert_eq!(sp["droppedLinksCount"], 1);
    assert_eq!(sp["links"][0]["droppedAttributesCount"], 2);
    let r = &v["batches"][0]["resource"];
    assert_eq!(r["attributes"].as_array().unwrap().len(), 128);
    assert_eq!(r["droppedAttributesCount"], 1);
    // 4,095 + a 2-byte character: cut on the character boundary.
    let svc = r["attributes"][0]["value"]["stringValue"].as_str().unwrap();
    assert_eq!(svc.len(), 4095);
    let text = get(&desk, "/metrics").await.text().await.unwrap();
    assert_eq!(
        metric_value(&text, "trace_desk_attributes_dropped_total"),
        1 + 1 + 128 + 128 * 2
    );
    assert_eq!(metric_value(&text, "trace_desk_events_dropped_total"), 1);
    assert_eq!(metric_value(&text, "trace_desk_links_dropped_total"), 1);
    assert_eq!(metric_value(&text, "trace_desk_values_truncated_total"), 2);
    desk.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn resources_and_attributes_count_in_the_estimate() {
    // A value limit above the body size, so only the estimate stands between a big resource
    // and memory.
    let limits = AttributeLimits {
        max_value_bytes: 8 << 20,
        ..AttributeLimits::default()
    };
    let desk = trace_desk::start(DeskConfig::ephemeral(1_000).with_attribute_limits(limits))
        .await
        .unwrap();
    let mut req = request("big", &[Sp::new(1, 1, "a")]);
    req.resource_spans[0]
        .resource
        .as_mut()
        .unwrap()
        .attributes
        .push(kv("blob", s(&"r".repeat(1 << 20))));
    post_protobuf(&desk, &req).await;
    let held = desk.store().stats().bytes_held;
    assert!(
        held > 1 << 20,
        "a 1 MiB resource attribute estimated at {held} bytes"
    );
    // Many small attributes cost more than their encoded bytes.
    let mut req = request("many", &[Sp::new(2, 1, "b")]);
    req.resource_spans[0].scope_spans[0].spans[0].attributes = attrs(128);
    let encoded = req.encoded_len() as u64;
    post_protobuf(&desk, &req).await;
    let grew = desk.store().stats().bytes_held - held;
    assert!(
        grew > encoded + 128 * 64,
        "{grew} for {encoded} encoded bytes"
    );
    desk.shutdown().await;
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_and_bomb_bodies_get_413() {
    let desk = desk(1_000).await;
    let limit = trace_desk::otlp::MAX_BODY_BYTES;
    // A valid export padded to exactly the limit is taken, compressed or not.
    let mut req = request("size", &[Sp::new(1, 1, "pad")]);
    let pad_len = limit - req.encoded_len() - 8;
    req.resource_spans[0].scope_spans[0].spans[0]
        .attributes
        .push(kv("pad", s(&"p".repeat(pad_len))));
    let fit = |req: &mut ExportTraceServiceRequest| {
        let over = req.encoded_len() as i64 - limit as i64;
        let attrs = &mut req.resource_spans[0].scope_spans[0].spans[0].attributes;
        let Some(Av::StringValue(p)) = attrs
            .last_mut()
            .unwrap()
            .value
            .as_mut()
            .unwrap()
            .value
            .as_mut()
        else {
            panic!()
        };
        let len = (p.len() as i64 - over) as usize;
        p.truncate(len.min(p.len()));
        while p.len() < len {
            p.push('p');
        }
    };
    for _ in 0..3 {
        fit(&mut req);
    }
    let body = req.encode_to_vec();
    assert_eq!(body.len(), limit);
    assert_eq!(post(&desk, body.clone(), false).await.status(), 200);
    assert_eq!(post(&desk, gzip(&body), true).await.status(), 200);

    // One byte more is refused, and so is a small gzip bomb that inflates past the limit.
    let mut over = body.clone();
    over.push(0);
    let r = post(&desk, over, false).await;
    assert_eq!(r.status(), 413);
    let bomb = gzip(&vec![0u8; 64 << 20]);
    assert!(bomb.len() < 1 << 20, "a {} byte bomb", bomb.len());
    let r = post(&desk, bomb, true).await;
    assert_eq!(r.status(), 413);
    let status = trace_desk::otlp::RpcStatus::decode(r.bytes().await.unwrap()).unwrap();
    assert!(
        status.message.contains("decompressed body exceeds"),
        "{status:?}"
    );
    let text = get(&desk, "/metrics").await.text().await.unwrap();
    assert_eq!(
        metric_value(&text, "trace_desk_requests_too_large_total"),
        2
    );
    desk.shutdown().await;
}
