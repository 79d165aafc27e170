//! Resident memory against `DESK_MAX_BYTES` under hostile shapes: attribute bombs, a huge
//! resource, spans at every limit, and many small spans. The desk runs as its own process (the
//! `trace-desk` binary) so that neither the test's requests nor other tests' allocations mix in;
//! its resident set is read from `/proc/<pid>/status` (Linux only).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

use common::*;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use prost::Message as _;

/// The bound under test.
const MAX_BYTES: u64 = 64 << 20;
/// Stated bound on peak resident growth: 2 x `DESK_MAX_BYTES` for what is held, plus the decode
/// of one export in flight, up to 8 x its body (a 16 MiB body of tiny attributes decodes to
/// ~120 MiB before the limits drop them, and the allocator keeps that memory for reuse). That
/// transient does not scale with `DESK_MAX_BYTES`, so it is stated apart. Measured at 64 MiB:
/// peak growth 2.24x and 3.01x `DESK_MAX_BYTES` in two runs (debug build, glibc malloc), against
/// this bound's 4x; see docs/trace-desk.md.
const HELD_FACTOR: u64 = 2;
const MAX_BODY: u64 = 16 << 20;
const DECODE_FACTOR: u64 = 8;
const BOUND: u64 = HELD_FACTOR * MAX_BYTES + DECODE_FACTOR * MAX_BODY;

fn start_desk() -> DeskProcess {
    let mut cmd = on_free_ports(Command::new(env!("CARGO_BIN_EXE_trace-desk")));
    cmd.env("DESK_MAX_SPANS", "10000000")
        .env("DESK_MAX_BYTES", MAX_BYTES.to_string());
    spawn_desk(cmd)
}

/// (current, peak) resident set of the desk in bytes.
fn rss(desk: &DeskProcess) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{}/status", desk.child.id())).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap()
            * 1024
    };
    (field("VmRSS:"), field("VmHWM:"))
}

async fn send(desk: &DeskProcess, req: &ExportTraceServiceRequest) {
    let body = req.encode_to_vec();
    assert!(
        body.len() <= trace_desk::otlp::MAX_BODY_BYTES,
        "{}",
        body.len()
    );
    let r = client()
        .post(format!("http://{}/v1/traces", desk.otlp_http))
        .header("content-type", "application/x-protobuf")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn resident_memory_stays_within_a_factor_of_the_byte_bound() {
    let desk = start_desk();
    send(&desk, &request("warm", &[Sp::new(1, 1, "warm")])).await;
    let (base, _) = rss(&desk);
    let mut trace = 10u64;
    let mut worst = 0f64;
    let mut check = async |phase: &str, desk: &DeskProcess| {
        let text = process_metrics(desk).await;
        let stats = Stats {
            bytes_held: metric_value(&text, "trace_desk_bytes_held"),
            spans_held: metric_value(&text, "trace_desk_spans_held"),
            traces_evicted: metric_value(&text, "trace_desk_traces_evicted_total"),
        };
        let (now, peak) = rss(desk);
        let growth = peak.saturating_sub(base);
        worst = worst.max(growth as f64 / MAX_BYTES as f64);
        eprintln!(
            "{phase}: held {} MiB estimated, {} spans; RSS {} MiB (+{} MiB), peak +{} MiB = {:.2}x DESK_MAX_BYTES",
            stats.bytes_held >> 20,
            stats.spans_held,
            now >> 20,
            now.saturating_sub(base) >> 20,
            growth >> 20,
            growth as f64 / MAX_BYTES as f64
        );
        assert!(stats.bytes_held <= MAX_BYTES);
        assert!(
            growth <= BOUND,
            "{phase}: peak RSS grew {growth} bytes, over {HELD_FACTOR} x {MAX_BYTES} + {DECODE_FACTOR} x {MAX_BODY}"
        );
        stats
    };

    // 1. Attribute bombs: one span with 900,000 attributes per export (the SDK limit keeps 128).
    for _ in 0..3 {
        trace += 1;
        let mut req = request("bomb", &[Sp::new(trace, 1, "bomb")]);
        req.resource_spans[0].scope_spans[0].spans[0].attributes =
            (0..900_000).map(|i| kv(&format!("k{i}"), s("v"))).collect();
        send(&desk, &req).await;
    }
    check("attribute bombs", &desk).await;

    // 2. A 15 MiB resource attribute, ten times (cut to 4 KiB).
    for _ in 0..10 {
        trace += 1;
        let mut req = request("huge-resource", &[Sp::new(trace, 1, "r")]);
        req.resource_spans[0]
            .resource
            .as_mut()
            .unwrap()
            .attributes
            .push(kv("blob", s(&"r".repeat(15 << 20))));
        send(&desk, &req).await;
    }
    check("huge resources", &desk).await;

    // 3. Spans at every limit: 128 attributes of 4 KiB each, 28 spans an export.
    let big: Vec<KeyValue> = (0..128)
        .map(|i| kv(&format!("a{i}"), s(&"v".repeat(4096))))
        .collect();
    for _ in 0..12 {
        trace += 1;
        let spans: Vec<Sp> = (0..28)
            .map(|i| {
                let mut sp = Sp::new(trace, i + 1, "full");
                sp.attrs = big.clone();
                sp
            })
            .collect();
        send(&desk, &request("full", &spans)).await;
    }
    check("spans at the limits", &desk).await;

    // 4. Many small spans: four traces of 1,000 spans an export, 3x the bound in all.
    let mut sent = 0u64;
    while sent < 3 * MAX_BYTES {
        let spans: Vec<Sp> = (0..4_000u64)
            .map(|i| {
                let t = trace + 1 + i / 1_000;
                Sp::new(t, i + 1, "small").at(i, 1)
            })
            .collect();
        trace += 4;
        let req = request("small", &spans);
        sent += trace_desk::store::estimated_request_bytes(&req.resource_spans);
        send(&desk, &req).await;
    }
    let stats = check("many small spans", &desk).await;
    assert!(stats.traces_evicted > 0, "{stats:?}");
    assert!(
        stats.bytes_held > MAX_BYTES / 2,
        "the store was filled: {stats:?}"
    );
    eprintln!("worst peak growth: {worst:.2} x DESK_MAX_BYTES");
}

#[derive(Debug)]
struct Stats {
    bytes_held: u64,
    spans_held: u64,
    traces_evicted: u64,
}
