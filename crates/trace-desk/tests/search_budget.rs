//! The search time budget (`DESK_QUERY_TIMEOUT`) and evaluation off the async workers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use trace_desk::DeskConfig;

#[tokio::test(flavor = "multi_thread")]
async fn an_exhausted_budget_answers_partial_results_and_counts_them() {
    let config = DeskConfig::ephemeral(100_000).with_query_timeout(Duration::from_nanos(1));
    let desk = trace_desk::start(config).await.unwrap();
    fill_chains(&desk, 200);
    let v = get_json(&desk, &format!("/api/search?q={}", url_enc("{ } >> { }"))).await;
    assert_eq!(v["partial"], true, "{v}");
    assert!(
        v["partialReason"]
            .as_str()
            .unwrap()
            .contains("DESK_QUERY_TIMEOUT")
    );
    let (done, total) = (
        v["metrics"]["completedJobs"].as_u64().unwrap(),
        v["metrics"]["totalJobs"].as_u64().unwrap(),
    );
    assert!(done < total, "{v}");
    assert_eq!(total, 200);
    let text = get(&desk, "/metrics").await.text().await.unwrap();
    assert_eq!(metric_value(&text, "trace_desk_searches_partial_total"), 1);
    assert_eq!(metric_value(&text, "trace_desk_searches_total"), 1);
    assert_eq!(metric_value(&text, "trace_desk_query_timeout_seconds"), 0);
    desk.shutdown().await;

    // With the default budget the same search completes and is not marked.
    let desk = common::desk(100_000).await;
    fill_chains(&desk, 200);
    let v = get_json(&desk, &format!("/api/search?q={}", url_enc("{ } >> { }"))).await;
    assert!(v.get("partial").is_none(), "{v}");
    assert_eq!(v["metrics"]["completedJobs"], v["metrics"]["totalJobs"]);
    assert_eq!(v["traces"].as_array().unwrap().len(), 20);
    let text = get(&desk, "/metrics").await.text().await.unwrap();
    assert_eq!(metric_value(&text, "trace_desk_searches_partial_total"), 0);
    assert_eq!(metric_value(&text, "trace_desk_query_timeout_seconds"), 10);
    desk.shutdown().await;
}

/// Heavy searches run on the search threads, two at a time: with more of them in flight than
/// the runtime has workers, `/ready` still answers while they run. (When searches ran on the
/// async workers, `/ready` waited for one to finish.) The test waits for the desk's own gauges
/// to show two searches evaluating and two waiting, so it does not depend on how fast a search
/// is; it only needs one to last longer than two local round trips.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_answers_while_heavy_searches_run() {
    const TRACES: u64 = 20_000;
    let desk = desk(1_000_000).await;
    fill_chains(&desk, TRACES);
    let url = format!(
        // Matches no trace (each chain has 4 spans below its root) and no trace summary rules
        // it out: the search evaluates every trace.
        "http://{}/api/search?limit=5&q={}",
        desk.api_addr(),
        url_enc(r#"{ name =~ ".*o.*r.*k" } >> { name != "x" } | count() > 4"#)
    );
    let searches: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move {
                let began = std::time::Instant::now();
                let r = client().get(url).send().await.unwrap();
                assert_eq!(r.status(), 200);
                let v: serde_json::Value = r.json().await.unwrap();
                (began.elapsed(), v)
            })
        })
        .collect();
    let gauges = |text: &str| {
        (
            metric_value(text, "trace_desk_searches_running"),
            metric_value(text, "trace_desk_searches_waiting"),
        )
    };
    let give_up = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let text = get(&desk, "/metrics").await.text().await.unwrap();
        if gauges(&text) == (2, 2) {
            break;
        }
        assert_eq!(
            metric_value(&text, "trace_desk_searches_total"),
            0,
            "{text}"
        );
        assert!(std::time::Instant::now() < give_up, "{text}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let r = get(&desk, "/ready").await;
    assert_eq!(r.status(), 200);
    let text = get(&desk, "/metrics").await.text().await.unwrap();
    assert_eq!(
        metric_value(&text, "trace_desk_searches_total"),
        0,
        "/ready answered only after a search completed"
    );
    for h in searches {
        let (took, v) = h.await.unwrap();
        assert!(v.get("partial").is_none(), "{v}");
        assert_eq!(v["traces"].as_array().unwrap().len(), 0);
        assert_eq!(v["metrics"]["inspectedTraces"], TRACES);
        eprintln!("search took {took:?}");
    }
    let text = get(&desk, "/metrics").await.text().await.unwrap();
    assert_eq!(gauges(&text), (0, 0), "{text}");
    assert_eq!(metric_value(&text, "trace_desk_searches_total"), 4);
    desk.shutdown().await;
}
