//! TraceQL metrics over HTTP (`/api/metrics/query_range`, `/api/metrics/query`): series checked
//! against values worked out by hand from spans with known start times and durations.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;
use trace_desk::DeskConfig;

/// Unix seconds of `T0`.
const T0S: u64 = T0 / 1_000_000_000;
/// Unix milliseconds of `T0`.
const T0MS: u64 = T0 / MS;

/// The fixture: service `a` has spans starting 1 s, 2 s (error), 3 s, 12 s, 31 s, 60 s and
/// 61 s after T0; service `b` 5 s, 25 s (error) and 26 s. Asked for T0..T0+60 s in 10 s
/// steps, Tempo aligns the window to (T0-10 s, T0+60 s]: seven steps reported at T0, T0+10 s,
/// ..., T0+60 s, step `i` holding spans that started in (T0+10(i-1) s, T0+10i s]. So:
///
/// | step (reported at) | T0 | +10 | +20 | +30 | +40 | +50 | +60 |
/// |---|---|---|---|---|---|---|---|
/// | a | 0 | 3 (1 s, 2 s, 3 s) | 1 (12 s) | 0 | 1 (31 s) | 0 | 1 (60 s) |
/// | b | 0 | 1 (5 s) | 0 | 2 (25 s, 26 s) | 0 | 0 | 0 |
///
/// The span at 61 s is past the window.
async fn fixture() -> trace_desk::RunningDesk {
    let desk = desk(10_000).await;
    let a = [
        vec![
            Sp::new(1, 1, "GET /a").at(1_000, 100),
            Sp::new(1, 2, "db").parent(1).at(2_000, 100).error(),
            Sp::new(1, 3, "db").parent(1).at(3_000, 300),
        ],
        vec![Sp::new(2, 4, "GET /a").at(12_000, 50)],
        vec![Sp::new(3, 5, "GET /a").at(31_000, 1_000)],
        vec![Sp::new(4, 6, "GET /a").at(60_000, 10)],
        vec![Sp::new(5, 7, "GET /a").at(61_000, 10)],
    ];
    for spans in &a {
        post_protobuf(&desk, &request("a", spans)).await;
    }
    let b = [
        vec![Sp::new(6, 8, "GET /b").at(5_000, 20)],
        vec![
            Sp::new(7, 9, "GET /b").at(25_000, 200).error(),
            Sp::new(7, 10, "cache").parent(9).at(26_000, 200),
        ],
    ];
    for spans in &b {
        post_protobuf(&desk, &request("b", spans)).await;
    }
    wait_for_trace(&desk, &hex_trace(7), 2).await;
    desk
}

fn range(q: &str, extra: &str) -> String {
    format!(
        "/api/metrics/query_range?q={}&start={T0S}&end={}&step=10s{extra}",
        url_enc(q),
        T0S + 60
    )
}

/// The series whose labels include `key` = string `value`.
fn series<'a>(v: &'a Value, key: &str, value: &str) -> &'a Value {
    v["series"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| {
            s["labels"]
                .as_array()
                .unwrap()
                .iter()
                .any(|l| l["key"] == key && l["value"]["stringValue"] == value)
        })
        .unwrap_or_else(|| panic!("no series with {key}={value} in {v}"))
}

/// `(timestampMs - T0 in ms, value)` of each sample; a missing value reads 0 (jsonpb omits it).
fn samples(s: &Value) -> Vec<(u64, f64)> {
    s["samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let ts: u64 = p["timestampMs"].as_str().unwrap().parse().unwrap();
            (ts - T0MS, p["value"].as_f64().unwrap_or(0.0))
        })
        .collect()
}

/// Values at the seven steps T0 .. T0+60 s.
fn values(s: &Value) -> Vec<f64> {
    let got = samples(s);
    assert_eq!(
        got.iter().map(|p| p.0).collect::<Vec<_>>(),
        (0..7).map(|i| i * 10_000).collect::<Vec<_>>(),
        "{s}"
    );
    got.into_iter().map(|p| p.1).collect()
}

fn close(got: &[f64], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() < 1e-9, "{got:?} vs {want:?}");
    }
}

fn label_keys(s: &Value) -> Vec<String> {
    s["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["key"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn counts_and_rates_per_step_by_service() {
    let desk = fixture().await;
    let v = get_json(
        &desk,
        &range("{ } | count_over_time() by (resource.service.name)", ""),
    )
    .await;
    assert_eq!(v["series"].as_array().unwrap().len(), 2, "{v}");
    close(
        &values(series(&v, "resource.service.name", "a")),
        &[0., 3., 1., 0., 1., 0., 1.],
    );
    close(
        &values(series(&v, "resource.service.name", "b")),
        &[0., 1., 0., 2., 0., 0., 0.],
    );
    // Steps without spans are still reported, without a value (jsonpb omits zeros).
    let first = &series(&v, "resource.service.name", "b")["samples"][0];
    assert_eq!(first["timestampMs"], T0MS.to_string());
    assert!(first.get("value").is_none(), "{first}");
    assert_eq!(v["metrics"]["inspectedSpans"], "9", "{v}");

    // rate = count / step seconds.
    let v = get_json(&desk, &range("{ } | rate() by (resource.service.name)", "")).await;
    close(
        &values(series(&v, "resource.service.name", "a")),
        &[0., 0.3, 0.1, 0., 0.1, 0., 0.1],
    );
    close(
        &values(series(&v, "resource.service.name", "b")),
        &[0., 0.1, 0., 0.2, 0., 0., 0.],
    );

    // No by(): one series named after the function.
    let v = get_json(&desk, &range("{}|rate()", "")).await;
    let s = series(&v, "__name__", "rate");
    assert_eq!(v["series"].as_array().unwrap().len(), 1);
    close(&values(s), &[0., 0.4, 0.1, 0.2, 0.1, 0., 0.1]);
    assert_eq!(s["promLabels"], r#"{__name__="rate"}"#);

    // Every error span, roots or not (Drilldown counts roots: drilldown_root_span_errors_by_service).
    let v = get_json(
        &desk,
        &range("{ status = error } | rate() by (resource.service.name)", ""),
    )
    .await;
    close(
        &values(series(&v, "resource.service.name", "a")),
        &[0., 0.1, 0., 0., 0., 0., 0.],
    );
    close(
        &values(series(&v, "resource.service.name", "b")),
        &[0., 0., 0., 0.1, 0., 0., 0.],
    );

    // A structural filter: spans with a parent in the trace.
    let v = get_json(&desk, &range("{ } > { } | count_over_time() by (name)", "")).await;
    close(
        &values(series(&v, "name", "db")),
        &[0., 2., 0., 0., 0., 0., 0.],
    );
    close(
        &values(series(&v, "name", "cache")),
        &[0., 0., 0., 1., 0., 0., 0.],
    );
    assert_eq!(v["series"].as_array().unwrap().len(), 2, "{v}");

    // Prometheus' `query` parameter works too; a missing attribute groups under nil.
    let v = get_json(
        &desk,
        &format!(
            "/api/metrics/query_range?query={}&start={T0S}&end={}&step=10",
            url_enc("{ } | count_over_time() by (span.nope)"),
            T0S + 60
        ),
    )
    .await;
    let s = &v["series"][0];
    assert_eq!(s["labels"][0]["key"], "span.nope", "{v}");
    assert_eq!(s["labels"][0]["value"], serde_json::json!({}));
    close(&values(s), &[0., 4., 1., 2., 1., 0., 1.]);
    desk.shutdown().await;
}

/// Grafana Traces Drilldown's RED errors panel counts root spans only (`nestedSetParent < 0`):
/// service a's error is on a child span, service b's on its root.
#[tokio::test(flavor = "multi_thread")]
async fn drilldown_root_span_errors_by_service() {
    let desk = fixture().await;
    let v = get_json(
        &desk,
        &range(
            "{ nestedSetParent < 0 && status = error } | rate() by (resource.service.name)",
            "",
        ),
    )
    .await;
    close(
        &values(series(&v, "resource.service.name", "b")),
        &[0., 0., 0., 0.1, 0., 0., 0.],
    );
    let a_errors = v["series"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["labels"].to_string().contains(r#""a""#))
        .flat_map(values)
        .sum::<f64>();
    assert_eq!(a_errors, 0.0, "a's only error is not on a root span: {v}");
}

#[tokio::test]
async fn over_time_functions_in_seconds() {
    let desk = fixture().await;
    for (f, a, b) in [
        (
            "avg_over_time",
            vec![
                (10_000, 0.5 / 3.0),
                (20_000, 0.05),
                (40_000, 1.0),
                (60_000, 0.01),
            ],
            vec![(10_000, 0.02), (30_000, 0.2)],
        ),
        (
            "min_over_time",
            vec![(10_000, 0.1), (20_000, 0.05), (40_000, 1.0), (60_000, 0.01)],
            vec![(10_000, 0.02), (30_000, 0.2)],
        ),
        (
            "max_over_time",
            vec![(10_000, 0.3), (20_000, 0.05), (40_000, 1.0), (60_000, 0.01)],
            vec![(10_000, 0.02), (30_000, 0.2)],
        ),
        (
            "sum_over_time",
            vec![(10_000, 0.5), (20_000, 0.05), (40_000, 1.0), (60_000, 0.01)],
            vec![(10_000, 0.02), (30_000, 0.4)],
        ),
    ] {
        let v = get_json(
            &desk,
            &range(
                &format!("{{ }} | {f}(duration) by (resource.service.name)"),
                "",
            ),
        )
        .await;
        // Steps without spans have no sample at all (NaN in Tempo).
        for (svc, want) in [("a", a), ("b", b)] {
            let got = samples(series(&v, "resource.service.name", svc));
            assert_eq!(got.len(), want.len(), "{f} {svc}: {got:?}");
            for ((gt, gv), (wt, wv)) in got.iter().zip(&want) {
                assert_eq!(gt, wt, "{f} {svc}: {got:?}");
                assert!((gv - wv).abs() < 1e-9, "{f} {svc}: {got:?} vs {want:?}");
            }
        }
    }
    // Ungrouped: named after the function.
    let v = get_json(&desk, &range("{ } | max_over_time(duration)", "")).await;
    assert_eq!(label_keys(&v["series"][0]), ["__name__"]);
    assert_eq!(
        v["series"][0]["labels"][0]["value"]["stringValue"],
        "max_over_time"
    );
    desk.shutdown().await;
}

/// Bucket bounds are powers of two of nanoseconds, in seconds: 10 ms → 2^24 ns, 20 ms → 2^25,
/// 50 ms → 2^26, 100 ms → 2^27, 200 ms → 2^28, 300 ms → 2^29, 1 s → 2^30.
#[tokio::test]
async fn histograms_use_log2_buckets() {
    let desk = fixture().await;
    let v = get_json(&desk, &range("{ } | histogram_over_time(duration)", "")).await;
    let got: Vec<(f64, Vec<f64>)> = v["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            assert_eq!(label_keys(s), ["__bucket"], "{s}");
            (
                s["labels"][0]["value"]["doubleValue"].as_f64().unwrap(),
                values(s),
            )
        })
        .collect();
    let step = |i: usize, n: f64| {
        let mut v = vec![0.0; 7];
        v[i] = n;
        v
    };
    let want = vec![
        (0.016777216, step(6, 1.0)),
        (0.033554432, step(1, 1.0)),
        (0.067108864, step(2, 1.0)),
        (0.134217728, step(1, 2.0)),
        (0.268435456, step(3, 2.0)),
        (0.536870912, step(1, 1.0)),
        (1.073741824, step(4, 1.0)),
    ];
    assert_eq!(got, want, "{v}");

    let v = get_json(
        &desk,
        &range(
            "{ } | histogram_over_time(duration) by (resource.service.name)",
            "",
        ),
    )
    .await;
    assert_eq!(v["series"].as_array().unwrap().len(), 7);
    assert_eq!(
        label_keys(&v["series"][0]),
        ["resource.service.name", "__bucket"]
    );
    desk.shutdown().await;
}

#[tokio::test]
async fn several_quantiles_at_once() {
    let desk = fixture().await;
    let v = get_json(
        &desk,
        &range(
            "{ } | quantile_over_time(duration, .5, .9) by (resource.service.name)",
            "",
        ),
    )
    .await;
    assert_eq!(v["series"].as_array().unwrap().len(), 4, "{v}");
    let q = |svc: &str, p: f64| {
        v["series"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| {
                s["labels"][0]["value"]["stringValue"] == svc
                    && s["labels"][1]["key"] == "p"
                    && s["labels"][1]["value"]["doubleValue"].as_f64() == Some(p)
            })
            .map(values)
            .unwrap_or_else(|| panic!("no {svc} p{p} in {v}"))
    };
    // a, step +10 s: buckets 2^27 ns ×2 and 2^29 ns ×1. p50 reads 2 of 3 samples: the bound of
    // 2^27; p90 reads 3: the bound of 2^29. Single-span steps read their bucket's bound. Steps
    // without spans read 0.
    close(
        &q("a", 0.5),
        &[
            0.,
            0.134217728,
            0.067108864,
            0.,
            1.073741824,
            0.,
            0.016777216,
        ],
    );
    close(
        &q("a", 0.9),
        &[
            0.,
            0.536870912,
            0.067108864,
            0.,
            1.073741824,
            0.,
            0.016777216,
        ],
    );
    // b, step +30 s: two spans in 2^28. p50 reads 1 of 2: halfway through the bucket, on the
    // log scale: 2^(28 - 0.5) ns.
    let half = 0.268435456 / 2f64.sqrt();
    close(&q("b", 0.5), &[0., 0.033554432, 0., half, 0., 0., 0.]);
    close(
        &q("b", 0.9),
        &[0., 0.033554432, 0., 0.268435456, 0., 0., 0.],
    );

    // Drilldown's duration panel without by(): labelled by `p` alone.
    let v = get_json(&desk, &range("{ } | quantile_over_time(duration, .99)", "")).await;
    assert_eq!(v["series"].as_array().unwrap().len(), 1);
    assert_eq!(label_keys(&v["series"][0]), ["p"]);
    desk.shutdown().await;
}

#[tokio::test]
async fn instant_queries_answer_one_value_per_series() {
    let desk = fixture().await;
    let path = |q: &str| {
        format!(
            "/api/metrics/query?q={}&start={T0S}&end={}",
            url_enc(q),
            T0S + 60
        )
    };
    // (T0, T0+60 s]: a's spans at 1, 2, 3, 12, 31 and 60 s; b's three.
    let v = get_json(
        &desk,
        &path("{ } | count_over_time() by (resource.service.name)"),
    )
    .await;
    assert_eq!(
        series(&v, "resource.service.name", "a")["value"],
        6.0,
        "{v}"
    );
    assert_eq!(
        series(&v, "resource.service.name", "b")["value"],
        3.0,
        "{v}"
    );
    assert!(v["series"][0].get("samples").is_none());
    let v = get_json(&desk, &path("{ } | rate() by (resource.service.name)")).await;
    assert_eq!(
        series(&v, "resource.service.name", "a")["value"],
        0.1,
        "{v}"
    );
    assert_eq!(
        series(&v, "resource.service.name", "b")["value"],
        0.05,
        "{v}"
    );
    let v = get_json(&desk, &path("{ } | quantile_over_time(duration, 1)")).await;
    assert_eq!(v["series"][0]["value"], 1.073741824, "{v}");
    desk.shutdown().await;
}

#[tokio::test]
async fn exemplars_point_at_spans() {
    let desk = fixture().await;
    let v = get_json(&desk, &range("{ } | rate() by (resource.service.name)", "")).await;
    let a = series(&v, "resource.service.name", "a");
    let ex = a["exemplars"].as_array().unwrap();
    // One per trace with counted spans: traces 1, 2, 3 and 4.
    assert_eq!(ex.len(), 4, "{a}");
    let first = &ex[0];
    assert_eq!(first["labels"][0]["key"], "trace:id");
    assert_eq!(first["labels"][0]["value"]["stringValue"], hex_trace(1));
    assert_eq!(first["labels"][1]["key"], "span:id");
    assert_eq!(
        first["labels"][1]["value"]["stringValue"],
        hex::encode(span_id(1))
    );
    assert_eq!(first["timestampMs"], (T0MS + 1_000).to_string());
    // Counts carry no value (NaN in jsonpb).
    assert_eq!(first["value"], "NaN");
    assert_eq!(
        series(&v, "resource.service.name", "b")["exemplars"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // `exemplars` bounds them across the answer.
    let v = get_json(
        &desk,
        &range("{ } | rate() by (resource.service.name)", "&exemplars=1"),
    )
    .await;
    let n: usize = v["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["exemplars"].as_array().map_or(0, Vec::len))
        .sum();
    assert_eq!(n, 1, "{v}");

    // Duration exemplars carry the duration in seconds and sit on the quantile they fall under.
    let v = get_json(
        &desk,
        &range(
            "{ resource.service.name = \"a\" } | quantile_over_time(duration, .5, .99)",
            "",
        ),
    )
    .await;
    let ex = |p: f64| -> Vec<f64> {
        v["series"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["labels"][0]["value"]["doubleValue"].as_f64() == Some(p))
            .unwrap()["exemplars"]
            .as_array()
            .map(|e| e.iter().map(|e| e["value"].as_f64().unwrap()).collect())
            .unwrap_or_default()
    };
    // Over the whole range a's six durations (buckets 2^24, 2^26, 2^27 ×2, 2^29, 2^30 ns)
    // give p50 = halfway into 2^27 on the log scale (2^26.5 ns = 0.0949 s) and p99 = the
    // 2^30 ns bound. The first span of each trace is an exemplar (0.1, 0.05, 1 and 0.01 s),
    // on the lowest quantile at or above it.
    assert_eq!(ex(0.5), vec![0.05, 0.01]);
    assert_eq!(ex(0.99), vec![0.1, 1.0]);
    desk.shutdown().await;
}

#[tokio::test]
async fn topk_bottomk_and_filters_per_step() {
    let desk = fixture().await;
    let by = "{ } | count_over_time() by (resource.service.name)";
    let v = get_json(&desk, &range(&format!("{by} | topk(1)"), "")).await;
    // Ties (both 0) go to the first by label text.
    let a: Vec<u64> = samples(series(&v, "resource.service.name", "a"))
        .iter()
        .map(|p| p.0)
        .collect();
    assert_eq!(a, [0, 10_000, 20_000, 40_000, 50_000, 60_000]);
    assert_eq!(
        samples(series(&v, "resource.service.name", "b")),
        [(30_000, 2.0)]
    );

    let v = get_json(&desk, &range(&format!("{by} | bottomk(1)"), "")).await;
    let steps = |svc: &str| -> Vec<u64> {
        samples(series(&v, "resource.service.name", svc))
            .iter()
            .map(|p| p.0)
            .collect()
    };
    assert_eq!(steps("a"), [0, 30_000, 50_000]);
    assert_eq!(steps("b"), [10_000, 20_000, 40_000, 60_000]);

    let v = get_json(&desk, &range(&format!("{by} > 1"), "")).await;
    assert_eq!(
        samples(series(&v, "resource.service.name", "a")),
        [(10_000, 3.0)]
    );
    assert_eq!(
        samples(series(&v, "resource.service.name", "b")),
        [(30_000, 2.0)]
    );
    // A filter no sample passes leaves no series.
    let v = get_json(&desk, &range(&format!("{by} >= 100"), "")).await;
    assert_eq!(v["series"], serde_json::json!([]));

    // with() hints are accepted (and ignored).
    let v = get_json(
        &desk,
        &range(&format!("{by} with(sample=true, exemplars=3)"), ""),
    )
    .await;
    close(
        &values(series(&v, "resource.service.name", "b")),
        &[0., 1., 0., 2., 0., 0., 0.],
    );
    desk.shutdown().await;
}

#[tokio::test]
async fn compare_splits_selection_from_baseline() {
    let desk = fixture().await;
    let v = get_json(&desk, &range("{ } | compare({ status = error })", "")).await;
    let find = |meta: &str, key: &str, value: Option<&str>| -> Vec<f64> {
        v["series"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| {
                s["labels"][0]["key"] == "__meta_type"
                    && s["labels"][0]["value"]["stringValue"] == meta
                    && s["labels"][1]["key"] == key
                    && match value {
                        Some(val) => s["labels"][1]["value"]["stringValue"] == val,
                        None => s["labels"][1]["value"] == serde_json::json!({}),
                    }
            })
            .map(values)
            .unwrap_or_else(|| panic!("no {meta} {key}={value:?} in {v}"))
    };
    // Selection: the error spans (a at 2 s, b at 25 s); baseline: the other seven.
    close(
        &find("selection", "resource.service.name", Some("a")),
        &[0., 1., 0., 0., 0., 0., 0.],
    );
    close(
        &find("selection", "resource.service.name", Some("b")),
        &[0., 0., 0., 1., 0., 0., 0.],
    );
    close(
        &find("baseline", "resource.service.name", Some("a")),
        &[0., 2., 1., 0., 1., 0., 1.],
    );
    close(
        &find("baseline", "resource.service.name", Some("b")),
        &[0., 1., 0., 1., 0., 0., 0.],
    );
    close(
        &find("selection", "status", Some("error")),
        &[0., 1., 0., 1., 0., 0., 0.],
    );
    close(
        &find("baseline", "status", Some("unset")),
        &[0., 3., 1., 1., 1., 0., 1.],
    );
    close(
        &find("baseline_total", "name", None),
        &[0., 3., 1., 1., 1., 0., 1.],
    );
    close(
        &find("selection_total", "name", None),
        &[0., 1., 0., 1., 0., 0., 0.],
    );
    // One exemplar per trace (its first counted span), on the totals of its side: trace 7
    // starts with b's error span; traces 1, 2, 3, 4 and 6 with baseline spans.
    let exemplars = |meta: &str| -> Vec<String> {
        v["series"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| {
                s["labels"][0]["value"]["stringValue"] == meta && s["labels"][1]["key"] == "name"
            })
            .unwrap()["exemplars"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                e["labels"][0]["value"]["stringValue"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect()
    };
    assert_eq!(exemplars("selection_total"), [hex_trace(7)]);
    assert_eq!(exemplars("baseline_total").len(), 5);

    // topN keeps the most frequent values per attribute: the baseline's span names are
    // GET /a (4), GET /b (1), db (1) and cache (1).
    let v = get_json(&desk, &range("{ } | compare({ status = error }, 1)", "")).await;
    let names: Vec<&Value> = v["series"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| {
            s["labels"][0]["value"]["stringValue"] == "baseline" && s["labels"][1]["key"] == "name"
        })
        .map(|s| &s["labels"][1]["value"]["stringValue"])
        .collect();
    assert_eq!(names, ["GET /a"], "{v}");
    desk.shutdown().await;
}

#[tokio::test]
async fn default_step_and_window_follow_tempo() {
    let desk = fixture().await;
    // One hour without a step: Tempo's default of range/240 rounded down to 5 s = 15 s, and the
    // window aligned to it with a leading step. From T0 - 5 s (a multiple of 15 s): 241
    // samples, 15 s apart, the first at T0 - 5 s.
    let start = T0S - 5;
    let v = get_json(
        &desk,
        &format!(
            "/api/metrics/query_range?q={}&start={start}&end={}",
            url_enc("{ } | count_over_time()"),
            start + 3600
        ),
    )
    .await;
    let got: Vec<(u64, f64)> = v["series"][0]["samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["timestampMs"].as_str().unwrap().parse().unwrap(),
                p["value"].as_f64().unwrap_or(0.0),
            )
        })
        .collect();
    assert_eq!(got.len(), 241);
    assert_eq!(got[0].0, start * 1000);
    assert_eq!(got[1].0, start * 1000 + 15_000);
    // (T0 - 5 s, T0 + 10 s] holds the spans at 1, 2, 3 and 5 s; (T0 + 10 s, T0 + 25 s] those
    // at 12 and 25 s.
    assert_eq!((got[1].1, got[2].1), (4.0, 2.0));
    // Off the step, the window widens to whole steps: from T0 (1_700_000_000 = 15 × 113333333
    // + 5) down to T0 - 5 s, less the leading step.
    let v = get_json(
        &desk,
        &format!(
            "/api/metrics/query_range?q={}&start={T0S}&end={}&step=15s",
            url_enc("{ } | count_over_time()"),
            T0S + 60
        ),
    )
    .await;
    let first: u64 = v["series"][0]["samples"][0]["timestampMs"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(first, (T0S - 5) * 1000);
    assert_eq!(v["series"][0]["samples"].as_array().unwrap().len(), 6);
    // Nanosecond and RFC 3339 timestamps are accepted like Tempo's.
    let v = get_json(
        &desk,
        &format!(
            "/api/metrics/query_range?q={}&start={}&end=2023-11-14T22:14:20Z&step=10s",
            url_enc("{ } | count_over_time()"),
            T0
        ),
    )
    .await;
    close(&values(&v["series"][0]), &[0., 4., 1., 2., 1., 0., 1.]);
    desk.shutdown().await;
}

async fn status_and_body(desk: &trace_desk::RunningDesk, path: &str) -> (u16, String) {
    let r = get(desk, path).await;
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test]
async fn bad_requests_are_400_naming_the_problem() {
    let desk = desk(100).await;
    let q = |q: &str, rest: &str| format!("/api/metrics/query_range?q={}{rest}", url_enc(q));
    let cases = [
        ("/api/metrics/query_range".to_string(), "missing q"),
        (q("{ } | rate(", ""), "column 11"),
        (q("{ span.x = } | rate()", ""), "column 12"),
        (q("{ } | search()", ""), "not a metrics query"),
        (q("{ } | rate() by (resource.service.name", ""), "column 17"),
        (
            q("{ } | quantile_over_time(duration, 2)", ""),
            "between 0 and 1",
        ),
        (q("{ } | rate() | topk(x)", ""), "positive integer"),
        (q("{ } | rate()", "&step=soon"), "invalid step"),
        (q("{ } | rate()", "&start=later"), "'start'"),
        (
            q("{ } | rate()", "&start=2000&end=1000"),
            "end must be greater than start",
        ),
        (q("{ } | rate()", "&since=forever"), "'since'"),
        (q("{ } | rate()", "&exemplars=-1"), "invalid exemplars"),
    ];
    for (path, want) in &cases {
        let (status, body) = status_and_body(&desk, path).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert!(body.contains(want), "{path}: {body}");
    }
    let text = get(&desk, "/metrics").await.text().await.unwrap();
    assert_eq!(
        metric_value(
            &text,
            r#"trace_desk_metrics_queries_rejected_total{reason="syntax"}"#
        ),
        6
    );
    assert_eq!(
        metric_value(
            &text,
            r#"trace_desk_metrics_queries_rejected_total{reason="bad_parameter"}"#
        ),
        6
    );
    assert_eq!(metric_value(&text, "trace_desk_metrics_queries_total"), 0);
    desk.shutdown().await;
}

/// At most 10,000 steps per series (Tempo's `max_intervals` default), checked before alignment.
#[tokio::test]
async fn step_bound_edge() {
    let desk = fixture().await;
    let path = |secs: u64| {
        format!(
            "/api/metrics/query_range?q={}&start={T0S}&end={}&step=1s",
            url_enc("{ } | count_over_time()"),
            T0S + secs
        )
    };
    let v = get_json(&desk, &path(10_000)).await;
    // 10,000 steps plus the leading one.
    assert_eq!(samples(&v["series"][0]).len(), 10_001);
    let (status, body) = status_and_body(&desk, &path(10_001)).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body.starts_with("step of 1s is too small, minimum step for given range is 1.0001s"),
        "{body}"
    );
    let text = get(&desk, "/metrics").await.text().await.unwrap();
    assert_eq!(
        metric_value(
            &text,
            r#"trace_desk_metrics_queries_rejected_total{reason="too_many_steps"}"#
        ),
        1
    );
    assert_eq!(metric_value(&text, "trace_desk_metrics_queries_total"), 1);
    desk.shutdown().await;
}

/// At most 1,000 series per answer (Tempo's `max_response_series` default); past it the
/// answer is marked partial and counted.
#[tokio::test]
async fn series_bound_edge() {
    let desk = desk(10_000).await;
    let store = desk.store();
    let spans: Vec<Sp> = (0..1_001u64)
        .map(|i| {
            Sp::new(1, i + 1, "op").at(1_000, 5).attr(
                "n",
                opentelemetry_proto::tonic::common::v1::any_value::Value::IntValue(i as i64),
            )
        })
        .collect();
    store.ingest(request("many", &spans[..1_000]).resource_spans);
    let q = range("{ } | count_over_time() by (span.n)", "");
    let v = get_json(&desk, &q).await;
    assert_eq!(v["series"].as_array().unwrap().len(), 1_000);
    assert!(v.get("status").is_none(), "{}", v["message"]);
    store.ingest(request("many", &spans[1_000..]).resource_spans);
    let v = get_json(&desk, &q).await;
    assert_eq!(v["series"].as_array().unwrap().len(), 1_000);
    assert_eq!(v["status"], "PARTIAL");
    assert!(
        v["message"].as_str().unwrap().contains("1000 series"),
        "{v}"
    );
    let text = get(&desk, "/metrics").await.text().await.unwrap();
    assert_eq!(
        metric_value(&text, "trace_desk_metrics_series_capped_total"),
        1
    );
    desk.shutdown().await;
}

/// At most 500,000 step values per answer: at 10,001 steps that is 49 series (49 × 10,001 =
/// 490,049; a 50th would make 500,050).
#[tokio::test]
async fn step_value_bound_edge() {
    let desk = desk(10_000).await;
    let store = desk.store();
    let spans: Vec<Sp> = (0..50u64)
        .map(|i| {
            Sp::new(1, i + 1, "op").at(1_000, 5).attr(
                "n",
                opentelemetry_proto::tonic::common::v1::any_value::Value::IntValue(i as i64),
            )
        })
        .collect();
    let q = format!(
        "/api/metrics/query_range?q={}&start={T0S}&end={}&step=1s",
        url_enc("{ } | count_over_time() by (span.n)"),
        T0S + 10_000
    );
    store.ingest(request("many", &spans[..49]).resource_spans);
    let v = get_json(&desk, &q).await;
    assert_eq!(v["series"].as_array().unwrap().len(), 49);
    assert_eq!(v["series"][0]["samples"].as_array().unwrap().len(), 10_001);
    assert!(v.get("status").is_none(), "{}", v["message"]);
    store.ingest(request("many", &spans[49..]).resource_spans);
    let v = get_json(&desk, &q).await;
    assert_eq!(v["series"].as_array().unwrap().len(), 49);
    assert_eq!(v["status"], "PARTIAL");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("500000 step values"),
        "{}",
        v["message"]
    );
    let text = get(&desk, "/metrics").await.text().await.unwrap();
    assert_eq!(
        metric_value(&text, "trace_desk_metrics_series_capped_total"),
        1
    );
    desk.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_exhausted_budget_answers_partial_series() {
    let config = DeskConfig::ephemeral(100_000).with_query_timeout(Duration::from_nanos(1));
    let desk = trace_desk::start(config).await.unwrap();
    let store = desk.store();
    for t in 0..200u64 {
        store.ingest(request("budget", &[Sp::new(t + 1, t + 1, "op").at(1_000, 5)]).resource_spans);
    }
    let v = get_json(&desk, &range("{ } | rate()", "")).await;
    assert_eq!(v["status"], "PARTIAL", "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("DESK_QUERY_TIMEOUT")
    );
    let text = get(&desk, "/metrics").await.text().await.unwrap();
    assert_eq!(
        metric_value(&text, "trace_desk_metrics_queries_partial_total"),
        1
    );
    assert_eq!(metric_value(&text, "trace_desk_metrics_queries_total"), 1);
    desk.shutdown().await;

    // With the default budget the same query completes: 200 spans in (T0, T0+10 s].
    let desk = desk_default().await;
    let store = desk.store();
    for t in 0..200u64 {
        store.ingest(request("budget", &[Sp::new(t + 1, t + 1, "op").at(1_000, 5)]).resource_spans);
    }
    let v = get_json(&desk, &range("{ } | count_over_time()", "")).await;
    assert!(v.get("status").is_none(), "{v}");
    close(&values(&v["series"][0]), &[0., 200., 0., 0., 0., 0., 0.]);
    desk.shutdown().await;
}

async fn desk_default() -> trace_desk::RunningDesk {
    desk(100_000).await
}

/// Metrics queries run like searches, on blocking threads in the search slots: with more heavy
/// ones in flight than the runtime has workers, `/ready` still answers before any completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_answers_while_heavy_metrics_queries_run() {
    let desk = desk(1_000_000).await;
    fill_chains(&desk, 6_000);
    let url = format!(
        "http://{}{}",
        desk.api_addr(),
        range(
            r#"{ name =~ ".*o.*r.*k" } >> { name != "x" } | count_over_time() by (name)"#,
            ""
        )
    );
    let queries: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move {
                let began = std::time::Instant::now();
                let r = client().get(url).send().await.unwrap();
                assert_eq!(r.status(), 200);
                let v: Value = r.json().await.unwrap();
                (began.elapsed(), v)
            })
        })
        .collect();
    // Let the queries reach the desk (not a timing assertion: only an ordering one below).
    tokio::time::sleep(Duration::from_millis(100)).await;
    let r = get(&desk, "/ready").await;
    assert_eq!(r.status(), 200);
    let finished = queries.iter().filter(|h| h.is_finished()).count();
    assert_eq!(
        finished, 0,
        "/ready answered only after a metrics query completed"
    );
    for h in queries {
        let (took, v) = h.await.unwrap();
        assert!(v.get("status").is_none(), "{v}");
        // Four descendants per chain, all started in (T0, T0 + 10 s].
        close(
            &values(series(&v, "name", "work")),
            &[0., 24_000., 0., 0., 0., 0., 0.],
        );
        eprintln!("metrics query took {took:?}");
    }
    desk.shutdown().await;
}
