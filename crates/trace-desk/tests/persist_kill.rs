//! The stated loss bound of persistence, on the real `trace-desk` binary: SIGKILL during
//! continuous intake from several concurrent senders (OTLP/HTTP and gRPC) loses no
//! acknowledged span, and loses nothing beyond the exports in flight at the kill (at most one
//! per sender, none of them acknowledged). Compactions run during the intake too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::*;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use prost::Message as _;

const SENDERS: u64 = 4;
/// Spans per export.
const SPANS: u64 = 5;
/// Exports per trace (a trace's spans arrive over several exports).
const PER_TRACE: u64 = 10;

fn desk_command(dir: &Path) -> Command {
    with_desk_env(Command::new(env!("CARGO_BIN_EXE_trace-desk")), dir)
}

fn with_desk_env(cmd: Command, dir: &Path) -> Command {
    let mut cmd = on_free_ports(cmd);
    cmd.env("DESK_DATA_DIR", dir)
        // Compactions during the intake, by time and by WAL size.
        .env("DESK_COMPACT_INTERVAL", "300ms")
        .env("DESK_WAL_MAX_BYTES", "64KiB");
    cmd
}

fn start_desk(dir: &Path) -> DeskProcess {
    spawn_desk(desk_command(dir))
}

/// Export `n` of `sender`: spans `span_no(sender, n, 0..SPANS)` of trace `trace_no(sender, n)`.
fn trace_no(sender: u64, n: u64) -> u64 {
    sender * 1_000_000 + n / PER_TRACE + 1
}

fn span_no(sender: u64, n: u64, i: u64) -> u64 {
    (sender * 10_000_000 + n) * 10 + i + 1
}

fn export(
    sender: u64,
    n: u64,
) -> opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest {
    let spans: Vec<Sp> = (0..SPANS)
        .map(|i| Sp::new(trace_no(sender, n), span_no(sender, n, i), "work").at(n, 1))
        .collect();
    request(&format!("sender-{sender}"), &spans)
}

#[derive(Debug, Default)]
struct Outcome {
    /// Exports answered with success.
    acked: BTreeSet<(u64, u64)>,
    /// Exports sent but not answered with success (in flight at the kill).
    unacked: BTreeSet<(u64, u64)>,
}

/// Sends exports `from..` until one fails (the kill); sender 0 over gRPC, the rest over
/// OTLP/HTTP protobuf.
async fn sender(
    sender: u64,
    from: u64,
    http: SocketAddr,
    grpc: SocketAddr,
    acked: Arc<AtomicU64>,
) -> Outcome {
    let mut out = Outcome::default();
    let http_client = client();
    let mut grpc_client = if sender == 0 {
        Some(
            TraceServiceClient::connect(format!("http://{grpc}"))
                .await
                .unwrap(),
        )
    } else {
        None
    };
    for n in from.. {
        let req = export(sender, n);
        let ok = match grpc_client.as_mut() {
            Some(c) => c.export(req).await.is_ok(),
            None => http_client
                .post(format!("http://{http}/v1/traces"))
                .header("content-type", "application/x-protobuf")
                .body(req.encode_to_vec())
                .send()
                .await
                .is_ok_and(|r| r.status() == 200),
        };
        if ok {
            out.acked.insert((sender, n));
            acked.fetch_add(1, Ordering::Relaxed);
        } else {
            out.unacked.insert((sender, n));
            return out;
        }
    }
    out
}

/// Span numbers the restarted desk holds for `senders`' traces up to export `max_n`.
async fn present_spans(desk: &DeskProcess, max_n: &BTreeMap<u64, u64>) -> BTreeSet<u64> {
    let mut present = BTreeSet::new();
    for (&s, &max) in max_n {
        let traces: BTreeSet<u64> = (0..=max).map(|n| trace_no(s, n)).collect();
        for t in traces {
            let resp = client()
                .get(format!("http://{}/api/traces/{}", desk.api, hex_trace(t)))
                .send()
                .await
                .unwrap();
            if resp.status() == 404 {
                continue;
            }
            let v: serde_json::Value = resp.json().await.unwrap();
            for span in all_spans(&v["batches"]) {
                use base64::Engine as _;
                let id = base64::engine::general_purpose::STANDARD
                    .decode(span["spanId"].as_str().unwrap())
                    .unwrap();
                let id = u64::from_be_bytes(id.try_into().unwrap());
                present.insert(id - 0x1000_0000_0000_0000);
            }
        }
    }
    present
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_kill_during_intake_loses_no_acknowledged_span() {
    let dir = tempfile::tempdir().unwrap();
    let mut all = Outcome::default();
    let mut next_n: BTreeMap<u64, u64> = (0..SENDERS).map(|s| (s, 0)).collect();
    for round in 0..2 {
        let mut desk = start_desk(dir.path());
        let acked = Arc::new(AtomicU64::new(0));
        let tasks: Vec<_> = (0..SENDERS)
            .map(|s| {
                tokio::spawn(sender(
                    s,
                    next_n[&s],
                    desk.otlp_http,
                    desk.otlp_grpc,
                    Arc::clone(&acked),
                ))
            })
            .collect();
        // Well into the intake, with compactions behind it, at a moment that varies per run.
        let began = Instant::now();
        loop {
            let m = process_metrics(&desk).await;
            if acked.load(Ordering::Relaxed) >= 150
                && metric_value(&m, "trace_desk_persist_compactions_total") >= 1
            {
                break;
            }
            assert!(
                began.elapsed() < Duration::from_secs(60),
                "round {round}: intake too slow: {} acked\n{m}",
                acked.load(Ordering::Relaxed)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let jitter = u64::from(began.elapsed().subsec_nanos()) % 150;
        tokio::time::sleep(Duration::from_millis(jitter)).await;
        desk.child.kill().unwrap(); // SIGKILL
        desk.child.wait().unwrap();
        for task in tasks {
            let out = task.await.unwrap();
            for &(s, n) in out.acked.iter().chain(&out.unacked) {
                let next = next_n.get_mut(&s).unwrap();
                *next = (*next).max(n + 1);
            }
            all.acked.extend(out.acked);
            all.unacked.extend(out.unacked);
        }
        drop(desk);

        let desk = start_desk(dir.path());
        let max_n: BTreeMap<u64, u64> = next_n.iter().map(|(s, n)| (*s, n - 1)).collect();
        let present = present_spans(&desk, &max_n).await;
        let spans_of = |&(s, n): &(u64, u64)| (0..SPANS).map(move |i| span_no(s, n, i));
        let acked_spans: BTreeSet<u64> = all.acked.iter().flat_map(spans_of).collect();
        let sent_spans: BTreeSet<u64> = all
            .acked
            .iter()
            .chain(&all.unacked)
            .flat_map(spans_of)
            .collect();
        let lost: Vec<u64> = acked_spans.difference(&present).copied().collect();
        assert!(
            lost.is_empty(),
            "round {round}: {} acknowledged spans lost, e.g. {:?}",
            lost.len(),
            &lost[..lost.len().min(10)]
        );
        assert!(
            present.is_subset(&sent_spans),
            "round {round}: spans never sent"
        );
        // Whatever is missing belongs to the unacknowledged exports in flight, at most one per
        // sender per kill.
        let missing = sent_spans.difference(&present).count() as u64;
        assert!(all.unacked.len() as u64 <= SENDERS * (round + 1));
        assert!(missing <= all.unacked.len() as u64 * SPANS);
        let m = process_metrics(&desk).await;
        assert_eq!(
            metric_value(&m, "trace_desk_persist_replayed_spans"),
            present.len() as u64,
            "round {round}"
        );
        assert_eq!(
            metric_value(&m, "trace_desk_spans_held"),
            present.len() as u64
        );
        eprintln!(
            "round {round}: {} exports acknowledged, {} in flight at the kill, {} spans replayed, {} spans of in-flight exports missing",
            all.acked.len(),
            all.unacked.len(),
            present.len(),
            missing
        );
    }
}

#[test]
fn the_binary_refuses_a_foreign_data_file_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(trace_desk::persist::DB_FILE),
        b"this is not a database, but someone's notes\n".repeat(200),
    )
    .unwrap();
    let out = desk_command(dir.path()).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("not a usable trace desk data file"),
        "{stderr}"
    );
    assert!(stderr.contains("move it away"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// A disk that refuses writes (the file size limit, `ulimit -f`, with SIGXFSZ ignored so the
/// write fails with EFBIG instead of killing the desk): exports are answered 503 / UNAVAILABLE,
/// counted, and kept out of memory; what was acknowledged before is still replayed after.
#[tokio::test(flavor = "multi_thread")]
async fn a_failed_write_is_answered_retryable_and_nothing_of_it_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let mut limited = Command::new("sh");
    // 2 MiB (512-byte blocks) or 4 MiB (1 KiB blocks), depending on the shell.
    limited.args([
        "-c",
        "trap '' XFSZ; ulimit -f 4096; exec \"$0\"",
        env!("CARGO_BIN_EXE_trace-desk"),
    ]);
    let desk = spawn_desk(with_desk_env(limited, dir.path()));
    let big = "x".repeat(2000);
    let export = |n: u64| {
        let spans: Vec<Sp> = (0..100)
            .map(|i| {
                Sp::new(trace_no(9, n), span_no(9, n, i), "work").attr("payload", common::s(&big))
            })
            .collect();
        request("big", &spans)
    };
    let mut acked = 0u64;
    let mut refused = None;
    for n in 0..100 {
        let resp = client()
            .post(format!("http://{}/v1/traces", desk.otlp_http))
            .header("content-type", "application/json")
            .body(serde_json::to_vec(&export(n)).unwrap())
            .send()
            .await
            .unwrap();
        if resp.status() == 200 {
            acked += 1;
            continue;
        }
        let status = resp.status();
        let body: serde_json::Value = resp.json().await.unwrap();
        refused = Some((status, body));
        break;
    }
    let (status, body) = refused.expect("the size limit was never reached");
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["code"], 14, "UNAVAILABLE: {body}");
    assert!(acked > 0);
    // gRPC: UNAVAILABLE.
    let mut grpc = TraceServiceClient::connect(format!("http://{}", desk.otlp_grpc))
        .await
        .unwrap();
    let err = grpc.export(export(1000)).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err}");
    let m = process_metrics(&desk).await;
    assert!(
        metric_value(&m, "trace_desk_persist_write_errors_total") >= 2,
        "{m}"
    );
    assert_eq!(
        metric_value(&m, "trace_desk_spans_held"),
        acked * 100,
        "{m}"
    );
    drop(desk);

    let desk = start_desk(dir.path());
    let m = process_metrics(&desk).await;
    assert_eq!(
        metric_value(&m, "trace_desk_persist_replayed_spans"),
        acked * 100,
        "{m}"
    );
}
