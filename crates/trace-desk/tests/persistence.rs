//! Persistence (`DESK_DATA_DIR`): real desks on real files in temporary directories, restarted
//! in-process on the same directory.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use serde_json::Value;
use trace_desk::{DeskConfig, PersistConfig, RunningDesk};

fn persist(dir: &Path) -> PersistConfig {
    PersistConfig {
        // Compactions only when a test asks for one.
        compact_interval: Duration::from_secs(3600),
        ..PersistConfig::new(dir)
    }
}

async fn start(config: DeskConfig) -> RunningDesk {
    trace_desk::start(config).await.expect("desk starts")
}

async fn metrics(desk: &RunningDesk) -> String {
    get(desk, "/metrics").await.text().await.unwrap()
}

/// `traces` traces of `per` spans each, every span its own export (so the WAL holds
/// `traces * per` batches), over protobuf and OTLP/JSON alternately; one trace after the other.
async fn send_traces(desk: &RunningDesk, first: u64, traces: u64, per: u64) {
    send_spans(desk, first, traces, 0..per).await;
}

/// Spans numbered `spans` of traces `first..first + traces`, each its own export.
async fn send_spans(desk: &RunningDesk, first: u64, traces: u64, spans: std::ops::Range<u64>) {
    for t in first..first + traces {
        for i in spans.clone() {
            let mut sp = Sp::new(t, t * 100 + i + 1, "work")
                .at(t + i, 5)
                .attr("i", s(&i.to_string()));
            if i > 0 {
                sp = sp.parent(t * 100 + 1);
            }
            let req = request(&format!("svc-{}", t % 3), &[sp]);
            if (t + i) % 2 == 0 {
                post_protobuf(desk, &req).await;
            } else {
                let resp = client()
                    .post(format!("http://{}/v1/traces", desk.otlp_http_addr()))
                    .header("content-type", "application/json")
                    .body(serde_json::to_vec(&req).unwrap())
                    .send()
                    .await
                    .unwrap();
                assert_eq!(resp.status(), 200);
            }
        }
    }
}

/// Every held trace by id, as the API answers it.
async fn all_traces(desk: &RunningDesk) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for (id, _) in desk.store().snapshot() {
        let hex_id = hex::encode(id);
        let v = get_json(desk, &format!("/api/traces/{hex_id}")).await;
        out.push((hex_id, v));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn span_count(traces: &[(String, Value)]) -> usize {
    traces
        .iter()
        .map(|(_, v)| all_spans(&v["batches"]).len())
        .sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn restart_keeps_every_trace_from_the_wal_and_from_compacted_rows() {
    let dir = tempfile::tempdir().unwrap();
    let config = DeskConfig::ephemeral(100_000).with_persist(persist(dir.path()));

    let desk = start(config.clone()).await;
    send_traces(&desk, 1, 20, 3).await;
    let before = all_traces(&desk).await;
    assert_eq!((before.len(), span_count(&before)), (20, 60));
    let m = metrics(&desk).await;
    assert_eq!(metric_value(&m, "trace_desk_persist_enabled"), 1);
    assert_eq!(
        metric_value(&m, "trace_desk_persist_batches_written_total"),
        60
    );
    assert_eq!(metric_value(&m, "trace_desk_persist_wal_batches"), 60);
    assert!(metric_value(&m, "trace_desk_persist_commits_total") >= 1);
    let search_before = get_json(&desk, "/api/search?q=%7B%7D&limit=100").await;
    desk.shutdown().await;

    // From the WAL alone.
    let desk = start(config.clone()).await;
    assert_eq!(all_traces(&desk).await, before);
    let m = metrics(&desk).await;
    assert_eq!(metric_value(&m, "trace_desk_persist_replayed_spans"), 60);
    assert_eq!(metric_value(&m, "trace_desk_persist_replayed_batches"), 60);
    assert_eq!(metric_value(&m, "trace_desk_spans_held"), 60);
    let mut search_after = get_json(&desk, "/api/search?q=%7B%7D&limit=100").await;
    // Search answers carry their own timing; the traces must be the same.
    search_after["metrics"] = search_before["metrics"].clone();
    assert_eq!(search_after, search_before);

    // Compacted: every trace becomes one row and the WAL empties.
    let report = desk.persist().unwrap().compact().await.unwrap();
    assert_eq!((report.traces_written, report.traces_deleted), (20, 0));
    let m = metrics(&desk).await;
    assert_eq!(metric_value(&m, "trace_desk_persist_wal_batches"), 0);
    assert_eq!(metric_value(&m, "trace_desk_persist_wal_bytes"), 0);
    assert_eq!(metric_value(&m, "trace_desk_persist_compactions_total"), 1);
    // Half the traces get one more span after the compaction (rows plus WAL at replay).
    send_spans(&desk, 1, 10, 3..4).await;
    let more = all_traces(&desk).await;
    assert_eq!(span_count(&more), 70);
    desk.shutdown().await;

    let desk = start(config.clone()).await;
    assert_eq!(all_traces(&desk).await, more);
    let m = metrics(&desk).await;
    assert_eq!(metric_value(&m, "trace_desk_persist_replayed_traces"), 20);
    assert_eq!(metric_value(&m, "trace_desk_persist_replayed_batches"), 10);
    assert_eq!(metric_value(&m, "trace_desk_spans_held"), 70);
    desk.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn compaction_keeps_every_held_span_and_shrinks_the_wal() {
    let dir = tempfile::tempdir().unwrap();
    // 60 spans held: of 40 traces of 3 spans, the 20 newest.
    let config = DeskConfig::ephemeral(60).with_persist(persist(dir.path()));
    let desk = start(config.clone()).await;
    send_traces(&desk, 1, 40, 3).await;
    let held = all_traces(&desk).await;
    assert_eq!((held.len(), span_count(&held)), (20, 60));
    let wal_bytes = metric_value(&metrics(&desk).await, "trace_desk_persist_wal_bytes");
    assert!(wal_bytes > 0);
    let r = desk.persist().unwrap().compact().await.unwrap();
    assert_eq!(r.traces_written, 20, "only held traces are written");
    assert_eq!(
        metric_value(&metrics(&desk).await, "trace_desk_persist_wal_bytes"),
        0
    );
    // 10 new traces evict 10 written ones: the next compaction deletes their rows.
    send_traces(&desk, 41, 10, 3).await;
    let r = desk.persist().unwrap().compact().await.unwrap();
    assert_eq!((r.traces_written, r.traces_deleted), (10, 10));
    let held = all_traces(&desk).await;
    assert_eq!((held.len(), span_count(&held)), (20, 60));
    desk.shutdown().await;

    let desk = start(config.clone()).await;
    assert_eq!(all_traces(&desk).await, held);
    let m = metrics(&desk).await;
    assert_eq!(metric_value(&m, "trace_desk_persist_replayed_traces"), 20);
    assert_eq!(metric_value(&m, "trace_desk_persist_replayed_batches"), 0);
    assert_eq!(metric_value(&m, "trace_desk_spans_evicted_total"), 0);
    desk.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_compactor_runs_when_the_wal_passes_its_bound() {
    let dir = tempfile::tempdir().unwrap();
    let mut pc = persist(dir.path());
    pc.wal_max_bytes = 4096;
    let desk = start(DeskConfig::ephemeral(100_000).with_persist(pc)).await;
    send_traces(&desk, 1, 40, 1).await;
    let mut compactions = 0;
    for _ in 0..100 {
        compactions = metric_value(
            &metrics(&desk).await,
            "trace_desk_persist_compactions_total",
        );
        if compactions > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(compactions > 0, "no compaction past DESK_WAL_MAX_BYTES");
    let m = metrics(&desk).await;
    assert!(
        metric_value(&m, "trace_desk_persist_wal_bytes") < 4096 + 1024,
        "{m}"
    );
    assert!(metric_value(&m, "trace_desk_persist_disk_bytes") > 0);
    desk.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn replay_respects_the_span_and_byte_bounds() {
    let dir = tempfile::tempdir().unwrap();
    let desk = start(DeskConfig::ephemeral(100_000).with_persist(persist(dir.path()))).await;
    send_traces(&desk, 1, 40, 2).await;
    desk.persist().unwrap().compact().await.unwrap();
    send_traces(&desk, 41, 20, 2).await;
    let all = all_traces(&desk).await;
    let bytes_all = metric_value(&metrics(&desk).await, "trace_desk_bytes_held");
    desk.shutdown().await;
    assert_eq!(span_count(&all), 120);

    // A tighter span bound: the oldest traces go first, as at intake (rows, then the WAL).
    let desk = start(DeskConfig::ephemeral(50).with_persist(persist(dir.path()))).await;
    let m = metrics(&desk).await;
    assert_eq!(metric_value(&m, "trace_desk_spans_held"), 50);
    let kept: Vec<String> = all_traces(&desk)
        .await
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    let newest: Vec<String> = {
        let mut ids: Vec<String> = (36..=60).map(hex_trace).collect();
        ids.sort();
        ids
    };
    assert_eq!(kept, newest);
    desk.shutdown().await;

    // A tighter byte bound.
    let max_bytes = bytes_all / 3;
    let desk = start(
        DeskConfig::ephemeral(100_000)
            .with_max_bytes(max_bytes)
            .with_persist(persist(dir.path())),
    )
    .await;
    let m = metrics(&desk).await;
    let held = metric_value(&m, "trace_desk_bytes_held");
    assert!(held <= max_bytes && held > 0, "{held} > {max_bytes}");
    assert!(metric_value(&m, "trace_desk_traces_evicted_total") > 0);
    assert!(
        get(&desk, &format!("/api/traces/{}", hex_trace(60)))
            .await
            .status()
            == 200
    );
    assert!(
        get(&desk, &format!("/api/traces/{}", hex_trace(1)))
            .await
            .status()
            == 404
    );
    desk.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn replay_and_compaction_drop_data_past_the_retention_age() {
    let retention = Duration::from_secs(4);
    let config = |dir: &Path| {
        DeskConfig::ephemeral(100_000).with_persist(PersistConfig {
            retention,
            ..persist(dir)
        })
    };
    async fn status(desk: &RunningDesk, t: u64) -> u16 {
        let url = format!("/api/traces/{}", hex_trace(t));
        get(desk, &url).await.status().as_u16()
    }

    // WAL rows: trace 1 ages out before the restart, trace 2 does not.
    let wal_dir = tempfile::tempdir().unwrap();
    // Compacted rows: trace 1 is written before it ages out, then dropped at replay.
    let rows_dir = tempfile::tempdir().unwrap();
    // Compaction itself: trace 1 is past the age when compacted and never written.
    let compact_dir = tempfile::tempdir().unwrap();
    let wal = start(config(wal_dir.path())).await;
    let rows = start(config(rows_dir.path())).await;
    let compact = start(config(compact_dir.path())).await;
    for desk in [&wal, &rows, &compact] {
        send_traces(desk, 1, 1, 2).await;
    }
    rows.persist().unwrap().compact().await.unwrap();
    tokio::time::sleep(retention + Duration::from_millis(500)).await;
    for desk in [&wal, &rows, &compact] {
        send_traces(desk, 2, 1, 2).await;
    }
    let r = compact.persist().unwrap().compact().await.unwrap();
    assert_eq!(r.traces_written, 1, "only the young trace is written");
    let m = metrics(&compact).await;
    assert_eq!(
        metric_value(&m, "trace_desk_persist_retention_dropped_total"),
        1
    );
    // Memory keeps what it holds until evicted; retention applies to what is kept on disk.
    assert_eq!(status(&compact, 1).await, 200);

    for (desk, dir) in [(wal, &wal_dir), (rows, &rows_dir), (compact, &compact_dir)] {
        desk.shutdown().await;
        let desk = start(config(dir.path())).await;
        assert_eq!(status(&desk, 1).await, 404, "{:?}", dir.path());
        assert_eq!(status(&desk, 2).await, 200, "{:?}", dir.path());
        assert_eq!(
            metric_value(&metrics(&desk).await, "trace_desk_spans_held"),
            2
        );
        desk.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_file_that_is_not_a_desk_data_file_stops_the_start_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(trace_desk::persist::DB_FILE);
    let garbage: Vec<u8> = (0..64 * 1024u32).map(|i| (i * 7919 % 251) as u8).collect();
    std::fs::write(&path, &garbage).unwrap();
    let config = DeskConfig::ephemeral(100).with_persist(persist(dir.path()));
    let err = trace_desk::start(config.clone()).await.unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("not a usable trace desk data file"), "{msg}");
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        garbage,
        "the file is left as it was"
    );

    // A desk data file whose rows do not decode.
    let dir = tempfile::tempdir().unwrap();
    let config = DeskConfig::ephemeral(100).with_persist(persist(dir.path()));
    let desk = start(config.clone()).await;
    send_traces(&desk, 1, 1, 1).await;
    desk.shutdown().await;
    {
        let db = redb::Database::create(dir.path().join(trace_desk::persist::DB_FILE)).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut wal = txn
                .open_table(redb::TableDefinition::<u64, &[u8]>::new("wal"))
                .unwrap();
            // Received "in the future", so the retention age does not skip it.
            let mut fresh = u64::MAX.to_le_bytes().to_vec();
            fresh.extend_from_slice(&[0xff; 40]);
            wal.insert(1000, fresh.as_slice()).unwrap();
        }
        txn.commit().unwrap();
    }
    let msg = format!("{:#}", trace_desk::start(config.clone()).await.unwrap_err());
    assert!(msg.contains("WAL row 1000 does not decode"), "{msg}");

    // Two desks on one directory: the second is told so.
    let dir = tempfile::tempdir().unwrap();
    let config = DeskConfig::ephemeral(100).with_persist(persist(dir.path()));
    let first = start(config.clone()).await;
    let msg = format!("{:#}", trace_desk::start(config).await.unwrap_err());
    assert!(msg.contains("in use by another process"), "{msg}");
    first.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn grpc_exports_are_persisted_too() {
    use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
    let dir = tempfile::tempdir().unwrap();
    let config = DeskConfig::ephemeral(100).with_persist(persist(dir.path()));
    let desk = start(config.clone()).await;
    let mut grpc = TraceServiceClient::connect(format!("http://{}", desk.otlp_grpc_addr()))
        .await
        .unwrap();
    let req = request(
        "grpc",
        &[Sp::new(7, 1, "root"), Sp::new(7, 2, "child").parent(1)],
    );
    grpc.export(req).await.unwrap();
    let before = all_traces(&desk).await;
    desk.shutdown().await;
    let desk = start(config).await;
    assert_eq!(all_traces(&desk).await, before);
    assert_eq!(span_count(&before), 2);
    desk.shutdown().await;
}
