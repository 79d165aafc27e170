//! The query bounds over the real HTTP API: nesting depth (128), expression depth (256),
//! query length (16 KiB) and regex size, each refused with a 400 naming the problem and
//! counted in `/metrics`; the largest accepted queries run without exhausting the stack.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use trace_desk::traceql::parser::{MAX_EXPR_DEPTH, MAX_NESTING, MAX_QUERY_BYTES};

/// `levels` nesting levels: `levels - 1` parentheses around `{ }`.
fn nested_spansets(levels: usize) -> String {
    format!("{}{{ }}{}", "(".repeat(levels - 1), ")".repeat(levels - 1))
}

/// `levels` nesting levels inside one filter: `{` plus `levels - 1` parentheses.
fn nested_fields(levels: usize) -> String {
    format!(
        "{{ {}name = \"root\"{} }}",
        "(".repeat(levels - 1),
        ")".repeat(levels - 1)
    )
}

/// `{ } && { } && …` with `ops` operators: an expression tree `ops + 2` levels deep.
fn chain(ops: usize) -> String {
    let mut q = "{ }".to_string();
    for _ in 0..ops {
        q.push_str("&&{ }");
    }
    q
}

async fn desk_with_a_trace() -> trace_desk::RunningDesk {
    let desk = desk(1_000).await;
    let spans = [
        Sp::new(1, 1, "root"),
        Sp::new(1, 2, "child").parent(1).at(1, 5),
    ];
    post_protobuf(&desk, &request("limits", &spans)).await;
    desk
}

async fn status_and_text(desk: &trace_desk::RunningDesk, q: &str) -> (u16, String) {
    let r = get(desk, &format!("/api/search?q={}", url_enc(q))).await;
    (r.status().as_u16(), r.text().await.unwrap())
}

async fn assert_ok(desk: &trace_desk::RunningDesk, q: &str, traces: usize) {
    let (status, body) = status_and_text(desk, q).await;
    assert_eq!(status, 200, "{}…: {body}", &q[..q.len().min(40)]);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["traces"].as_array().unwrap().len(), traces, "{body}");
}

async fn assert_refused(desk: &trace_desk::RunningDesk, q: &str, words: &str) {
    let (status, body) = status_and_text(desk, q).await;
    assert_eq!(status, 400, "{}…: {body}", &q[..q.len().min(40)]);
    assert!(body.contains(words), "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn limits_at_their_edges_over_http() {
    assert_eq!(MAX_NESTING, 128);
    assert_eq!(MAX_QUERY_BYTES, 16 * 1024);
    let desk = desk_with_a_trace().await;

    // Nesting: 128 levels answer, 129 are refused; far deeper ones too, without a crash.
    assert_ok(&desk, &nested_spansets(128), 1).await;
    assert_refused(&desk, &nested_spansets(129), "deeper than 128 levels").await;
    assert_ok(&desk, &nested_fields(128), 1).await;
    assert_refused(&desk, &nested_fields(129), "deeper than 128 levels").await;
    assert_refused(&desk, &"(".repeat(700), "deeper than 128 levels").await;
    assert_refused(
        &desk,
        &format!("{{ {}", "(".repeat(3_000)),
        "deeper than 128",
    )
    .await;
    assert_refused(
        &desk,
        &format!("{{ {}", "!(".repeat(3_000)),
        "deeper than 128",
    )
    .await;
    // `!(` and parentheses in strings: strings do not nest.
    assert_ok(&desk, &format!("{{ name != \"{}\" }}", "(".repeat(500)), 1).await;

    // Expression depth: chained operators nest the tree; 256 levels answer, 257 are refused.
    assert_eq!(MAX_EXPR_DEPTH, 256);
    assert_ok(&desk, &chain(MAX_EXPR_DEPTH - 2), 1).await;
    assert_refused(&desk, &chain(MAX_EXPR_DEPTH - 1), "deeper than 256 levels").await;
    let longest_chain = chain((MAX_QUERY_BYTES - 3) / 5);
    assert!(longest_chain.len() <= MAX_QUERY_BYTES);
    assert_refused(&desk, &longest_chain, "deeper than 256 levels").await;

    // Length: 16 KiB answer, one byte more is refused.
    let pad = |len: usize| {
        let q = format!("{{ name != \"{}\" }}", "x".repeat(len - 14));
        assert_eq!(q.len(), len);
        q
    };
    assert_ok(&desk, &pad(MAX_QUERY_BYTES), 1).await;
    assert_refused(&desk, &pad(MAX_QUERY_BYTES + 1), "at most 16384 bytes").await;

    // Regex size: an ordinary regex answers, one compiling past the bound is refused.
    assert_ok(&desk, r#"{ name =~ "ro{1,100}t" }"#, 1).await;
    assert_refused(
        &desk,
        r#"{ name =~ "(?:a{1,1000}){1000}" }"#,
        "compiles to more than",
    )
    .await;
    assert_refused(
        &desk,
        r#"{ name =~ "\\w{100000}" }"#,
        "compiles to more than",
    )
    .await;

    let text = get(&desk, "/metrics").await.text().await.unwrap();
    let rejected = |reason: &str| {
        metric_value(
            &text,
            &format!("trace_desk_queries_rejected_total{{reason=\"{reason}\"}}"),
        )
    };
    assert_eq!(rejected("too_deep"), 7, "{text}");
    assert_eq!(rejected("too_long"), 1);
    assert_eq!(rejected("regex_too_big"), 2);
    assert_eq!(rejected("syntax"), 0);
    assert!(text.contains("# TYPE trace_desk_queries_rejected_total counter"));
    assert_refused(&desk, "{ nope }", "column").await;
    let text = get(&desk, "/metrics").await.text().await.unwrap();
    assert_eq!(
        metric_value(
            &text,
            "trace_desk_queries_rejected_total{reason=\"syntax\"}"
        ),
        1
    );
    desk.shutdown().await;
}

/// The deepest accepted queries parse and evaluate on a thread with 2 MiB of stack, the size
/// of the tokio worker and blocking threads that serve them (and of Rust's default thread).
/// In a debug build, 128 nesting levels take about 1 MiB (winnow's frames are large unoptimised),
/// so the bound leaves the stack half free; release frames are far smaller.
#[test]
fn deepest_accepted_queries_fit_a_default_stack() {
    let run = || {
        let store = trace_desk::Store::new(100);
        store.ingest(
            request(
                "limits",
                &[Sp::new(1, 1, "root"), Sp::new(1, 2, "c").parent(1)],
            )
            .resource_spans,
        );
        // Right-associative `^` and prefix `-`/`!` recurse once per operator in the parser.
        let pow_chain = |n: usize| format!("{{ span.a{} < 1 || true }}", " ^ 1".repeat(n));
        let neg_chain = |n: usize| format!("{{ {}span.a < 1 || true }}", "-".repeat(n));
        let not_chain = |n: usize| format!("{{ {}true }}", "!".repeat(n));
        for q in [
            nested_spansets(128),
            nested_fields(128),
            chain(MAX_EXPR_DEPTH - 2),
            pow_chain(MAX_EXPR_DEPTH - 8),
            neg_chain(MAX_EXPR_DEPTH - 8),
            not_chain(MAX_EXPR_DEPTH - 8),
        ] {
            let mut params = std::collections::HashMap::new();
            params.insert("q".to_string(), q);
            let p = trace_desk::search::SearchParams::from_query(&params).expect("accepted");
            let v = trace_desk::search::search(&store, &p);
            assert_eq!(v["traces"].as_array().map(Vec::len), Some(1));
        }
        for q in [
            nested_spansets(3_000),
            chain(4_000),
            pow_chain(4_000),
            neg_chain(4_000),
            not_chain(4_000),
        ] {
            assert!(trace_desk::traceql::parse(&q).is_err());
        }
    };
    std::thread::Builder::new()
        .stack_size(2 * 1024 * 1024)
        .spawn(run)
        .unwrap()
        .join()
        .expect("no stack overflow");
}
