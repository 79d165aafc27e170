//! `fleet load` against a real fleet: the summary must agree with what the desk received.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::*;

/// Runs `fleet load ARGS --json TMP --quiet` to completion; returns the JSON summary and stdout.
async fn fleet_load(args: &[&str]) -> (Value, String) {
    let json_path =
        std::env::temp_dir().join(format!("fleet-load-{}.json", uuid::Uuid::new_v4().simple()));
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_fleet"))
        .arg("load")
        .args(args)
        .arg("--json")
        .arg(&json_path)
        .arg("--quiet")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("run fleet load");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "fleet load failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let summary: Value =
        serde_json::from_slice(&std::fs::read(&json_path).expect("summary JSON written"))
            .expect("summary is JSON");
    let _ = std::fs::remove_file(&json_path);
    (summary, stdout)
}

/// Every trace in the desk: padded id → root span name.
async fn desk_traces(desk: &str) -> HashMap<String, String> {
    let reply = get(&format!("{desk}/api/search?limit=10000")).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    reply.body["traces"]
        .as_array()
        .expect("traces")
        .iter()
        .map(|t| {
            (
                format!("{:0>32}", t["traceID"].as_str().expect("traceID")),
                t["rootTraceName"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// Waits until the desk holds `want` traces, then a little longer to be sure no more arrive.
async fn wait_for_trace_count(desk: &str, want: usize) -> HashMap<String, String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let traces = desk_traces(desk).await;
        if traces.len() >= want && traces.values().all(|root| !root.is_empty()) {
            // Spans are exported every 100 ms in the tests: a second more lets stragglers land.
            tokio::time::sleep(Duration::from_millis(1500)).await;
            return desk_traces(desk).await;
        }
        assert!(
            Instant::now() < deadline,
            "the desk holds {} traces after 30 s, want {want}",
            traces.len()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn count(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

fn endpoint_count(summary: &Value, route: &str) -> u64 {
    summary["endpoints"]
        .as_array()
        .expect("endpoints")
        .iter()
        .find(|e| e["endpoint"] == route)
        .map(|e| count(&e["count"]))
        .unwrap_or_else(|| panic!("no endpoint {route} in {summary}"))
}

/// Every request of the run, plus the catalogue read at start, is one trace in the desk; the
/// root span names split the same way as the summary's per-endpoint counts.
async fn assert_desk_matches(desk: &str, summary: &Value, before: usize) {
    let requests = count(&summary["requests"]);
    let setup: Vec<String> = summary["setup_trace_ids"]
        .as_array()
        .expect("setup_trace_ids")
        .iter()
        .map(|v| v.as_str().expect("id").to_owned())
        .collect();
    let want = before + usize::try_from(requests).unwrap() + setup.len();
    let traces = wait_for_trace_count(desk, want).await;
    assert_eq!(
        traces.len(),
        want,
        "desk traces vs the summary's {requests} requests (+{} setup, +{before} before)",
        setup.len()
    );
    if before == 0 {
        let mut roots: HashMap<&str, u64> = HashMap::new();
        for root in traces.values() {
            *roots.entry(root.as_str()).or_default() += 1;
        }
        for route in ["POST /checkout", "GET /products", "GET /orders/{id}"] {
            let extra = if route == "GET /products" {
                setup.len() as u64
            } else {
                0
            };
            assert_eq!(
                roots.get(route).copied().unwrap_or(0),
                endpoint_count(summary, route) + extra,
                "root spans {route}: {roots:?}"
            );
        }
    }
    for id in &setup {
        assert!(traces.contains_key(id), "setup trace {id} not in the desk");
    }
    for list in ["slowest", "failed"] {
        for entry in summary[list].as_array().expect(list) {
            let id = entry["trace_id"]
                .as_str()
                .unwrap_or_else(|| panic!("{list} entry without a trace id: {entry}"));
            assert_eq!(id.len(), 32, "{id}");
            assert!(traces.contains_key(id), "{list} trace {id} not in the desk");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn open_model_sends_rate_times_duration_and_every_request_is_a_trace() {
    let fleet = Fleet::start(FleetOptions::default()).await;
    let (summary, stdout) = fleet_load(&[
        "--url",
        fleet.gateway(),
        "--rate",
        "40",
        "--duration",
        "5s",
        "--seed",
        "7",
        "--decline-rate",
        "0.2",
        "--tempo",
        fleet.desk(),
    ])
    .await;

    let requests = count(&summary["requests"]);
    assert!(
        (196..=204).contains(&requests),
        "40 req/s for 5 s is 200 requests (±2 %), got {requests}\n{stdout}"
    );
    assert_eq!(summary["model"], "open");
    assert_eq!(count(&summary["dropped"]), 0, "{stdout}");
    assert_eq!(count(&summary["transport_errors"]), 0, "{stdout}");
    assert_eq!(count(&summary["answered"]), requests);
    assert_eq!(
        count(&summary["untraced"]),
        0,
        "every answer has x-trace-id"
    );
    assert_eq!(count(&summary["unexpected_errors"]), 0, "{stdout}");
    let achieved = summary["achieved_rate"].as_f64().unwrap();
    assert!((39.2..=40.8).contains(&achieved), "achieved {achieved}");
    let statuses: u64 = summary["statuses"]
        .as_object()
        .unwrap()
        .values()
        .map(count)
        .sum();
    assert_eq!(statuses, requests);
    let per_endpoint: u64 = ["POST /checkout", "GET /products", "GET /orders/{id}"]
        .iter()
        .map(|r| endpoint_count(&summary, r))
        .sum();
    assert_eq!(per_endpoint, requests);
    // A fifth of the checkouts are declined on purpose: there are failed traces to list.
    assert!(count(&summary["statuses"]["402"]) > 0, "{stdout}");
    assert!(!summary["failed"].as_array().unwrap().is_empty());
    assert_eq!(summary["slowest"].as_array().unwrap().len(), 10);
    let l = &summary["latency"];
    let (p50, p90, p99, max) = (
        l["p50_ms"].as_f64().unwrap(),
        l["p90_ms"].as_f64().unwrap(),
        l["p99_ms"].as_f64().unwrap(),
        l["max_ms"].as_f64().unwrap(),
    );
    assert!(0.0 < p50 && p50 <= p90 && p90 <= p99 && p99 <= max, "{l}");
    let slowest = summary["slowest"][0]["latency_ms"].as_f64().unwrap();
    assert!(
        (slowest - max).abs() <= max * 0.01 + 0.01,
        "{slowest} vs {max}"
    );

    // The table names the traces and how to read them.
    assert!(stdout.contains("p99"), "{stdout}");
    assert!(stdout.contains("slowest"), "{stdout}");
    let slowest_id = summary["slowest"][0]["trace_id"].as_str().unwrap();
    assert!(stdout.contains(slowest_id), "{stdout}");
    assert!(
        stdout.contains(&format!("{}/api/traces/", fleet.desk())),
        "{stdout}"
    );

    assert_desk_matches(fleet.desk(), &summary, 0).await;
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn closed_model_sends_exactly_the_requests_asked_for() {
    let fleet = Fleet::start(FleetOptions::default()).await;
    let (summary, stdout) = fleet_load(&[
        "--url",
        fleet.gateway(),
        "--concurrency",
        "4",
        "--requests",
        "40",
        "--mix",
        "checkout=1,order=1",
    ])
    .await;
    assert_eq!(summary["model"], "closed");
    assert_eq!(count(&summary["requests"]), 40, "{stdout}");
    assert_eq!(count(&summary["answered"]), 40, "{stdout}");
    assert_eq!(count(&summary["unexpected_errors"]), 0, "{stdout}");
    assert_eq!(endpoint_count(&summary, "GET /products"), 0);
    assert_desk_matches(fleet.desk(), &summary, 0).await;
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_stops_an_unbounded_run_with_a_summary() {
    let fleet = Fleet::start(FleetOptions::default()).await;
    let json_path =
        std::env::temp_dir().join(format!("fleet-load-{}.json", uuid::Uuid::new_v4().simple()));
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_fleet"))
        .args(["load", "--url", fleet.gateway(), "--rate", "20"])
        .args(["--duration", "0s", "--quiet", "--json"])
        .arg(&json_path)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start fleet load");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pid = child.id().expect("running").to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let output = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("fleet load stops within 30 s of SIGTERM")
        .expect("wait");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}\n{stdout}", output.status);
    assert!(stdout.contains("(interrupted)"), "{stdout}");
    let summary: Value = serde_json::from_slice(&std::fs::read(&json_path).unwrap()).unwrap();
    let _ = std::fs::remove_file(&json_path);
    assert_eq!(summary["interrupted"], true);
    let requests = count(&summary["requests"]);
    assert!(
        (20..=80).contains(&requests),
        "about 2 s at 20/s: {requests}"
    );
    assert_eq!(count(&summary["answered"]), requests);
    assert_desk_matches(fleet.desk(), &summary, 0).await;
    fleet.stop().await;
}
