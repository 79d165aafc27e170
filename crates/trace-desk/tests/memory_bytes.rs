//! The byte bound (`DESK_MAX_BYTES`): whole traces go, oldest first, so that the estimated bytes
//! held never exceed it; `/metrics` reports the same numbers as the store.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Av;
use trace_desk::DeskConfig;
use trace_desk::store::{SPAN_OVERHEAD_BYTES, estimated_request_bytes};

fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

/// Four spans of trace `n`, each with a payload attribute so the sizes are not trivial.
fn trace_spans(n: u64) -> Vec<Sp> {
    let payload = "x".repeat(200 + (n as usize % 7) * 10);
    (0..4u64)
        .map(|i| {
            let sp = Sp::new(n, n * 10 + i, "work")
                .at(n * 100 + i, 5)
                .attr("payload", Av::StringValue(payload.clone()));
            if i == 0 { sp } else { sp.parent(n * 10) }
        })
        .collect()
}

/// The estimate of trace `n` sent as two exports (as the tests send it): its spans, plus its
/// resource and scope once per export.
fn trace_bytes(n: u64) -> u64 {
    let spans = trace_spans(n);
    estimated_request_bytes(&request("bytes", &spans[..2]).resource_spans)
        + estimated_request_bytes(&request("bytes", &spans[2..]).resource_spans)
}

#[tokio::test(flavor = "multi_thread")]
async fn byte_bound_evicts_oldest_whole_traces() {
    // Room for about five of these traces; the span bound is far away.
    let max_bytes = 5 * trace_bytes(1) + 100;
    assert!(trace_bytes(1) > 4 * SPAN_OVERHEAD_BYTES);
    let desk = trace_desk::start(DeskConfig::ephemeral(1_000_000).with_max_bytes(max_bytes))
        .await
        .expect("desk starts");
    let store = desk.store();
    assert_eq!(store.max_bytes(), max_bytes);

    let traces = 40u64;
    let mut sent_bytes = 0;
    for n in 1..=traces {
        // Two exports per trace: a trace grows after it arrived, as real traces do.
        let spans = trace_spans(n);
        post_protobuf(&desk, &request("bytes", &spans[..2])).await;
        post_protobuf(&desk, &request("bytes", &spans[2..])).await;
        sent_bytes += trace_bytes(n);
        let stats = store.stats();
        assert!(
            stats.bytes_held <= max_bytes,
            "held {} > bound {max_bytes} after trace {n}",
            stats.bytes_held
        );
        assert!(stats.bytes_held > 0);
    }
    let stats = store.stats();
    assert!(
        sent_bytes > 4 * max_bytes,
        "the test must overflow the bound"
    );
    assert_eq!(stats.spans_received, traces * 4);
    assert!(stats.traces_evicted >= traces - 6, "{stats:?}");
    assert_eq!(stats.spans_held, stats.traces_held * 4, "whole traces only");
    assert_eq!(stats.spans_evicted, stats.traces_evicted * 4);

    // The newest traces are there, whole; everything older than the held ones is gone.
    let held = stats.traces_held;
    assert!((4..=5).contains(&held), "held {held} traces");
    let first_held = traces - held + 1;
    let mut held_bytes = 0;
    for n in first_held..=traces {
        let v = get_json(&desk, &format!("/api/traces/{}", hex_trace(n))).await;
        assert_eq!(all_spans(&v["batches"]).len(), 4, "trace {n}");
        held_bytes += trace_bytes(n);
    }
    for n in 1..first_held {
        let r = get(&desk, &format!("/api/traces/{}", hex_trace(n))).await;
        assert_eq!(r.status(), 404, "trace {n} should be evicted");
    }
    assert_eq!(stats.bytes_held, held_bytes, "the estimate is per trace");

    let text = get(&desk, "/metrics").await.text().await.unwrap();
    assert_eq!(metric(&text, "trace_desk_bytes_held"), stats.bytes_held);
    assert_eq!(metric(&text, "trace_desk_max_bytes"), max_bytes);
    assert_eq!(metric(&text, "trace_desk_traces_held"), held);
    assert_eq!(
        metric(&text, "trace_desk_traces_evicted_total"),
        stats.traces_evicted
    );
    assert_eq!(
        metric(&text, "trace_desk_spans_evicted_total"),
        stats.spans_evicted
    );
    assert!(text.contains("# TYPE trace_desk_bytes_held gauge"));
    assert!(text.contains("# TYPE trace_desk_max_bytes gauge"));
    desk.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_trace_larger_than_the_bound_is_not_kept() {
    let max_bytes = trace_bytes(1) / 2;
    let desk = trace_desk::start(DeskConfig::ephemeral(1_000).with_max_bytes(max_bytes))
        .await
        .expect("desk starts");
    post_protobuf(&desk, &request("bytes", &trace_spans(1))).await;
    let stats = desk.store().stats();
    assert!(stats.bytes_held <= max_bytes);
    assert_eq!(stats.traces_held, 0);
    assert_eq!(stats.traces_evicted, 1);
    let text = get(&desk, "/metrics").await.text().await.unwrap();
    assert_eq!(metric(&text, "trace_desk_bytes_held"), 0);
    desk.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn default_bound_is_reported() {
    let desk = desk(100).await;
    let text = get(&desk, "/metrics").await.text().await.unwrap();
    assert_eq!(metric(&text, "trace_desk_max_bytes"), 256 << 20);
    assert_eq!(metric(&text, "trace_desk_bytes_held"), 0);
    let req = request("bytes", &trace_spans(3));
    post_protobuf(&desk, &req).await;
    let text = get(&desk, "/metrics").await.text().await.unwrap();
    assert_eq!(
        metric(&text, "trace_desk_bytes_held"),
        estimated_request_bytes(&req.resource_spans)
    );
    desk.shutdown().await;
}
