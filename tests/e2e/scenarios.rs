//! Every named scenario leaves its signature in the traces, and turning it off heals the shape.

use crate::support::*;

async fn fleet_with(scenario: &str, database_url: Option<String>) -> Fleet {
    let fleet = Fleet::start(FleetOptions {
        database_url,
        ..Default::default()
    })
    .await;
    let out = fleet.command(&["scenario", "on", scenario]).await;
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("TraceQL"),
        "the scenario says how to find it"
    );
    fleet
}

/// After `scenario off`, a checkout has the healthy 20-span shape with no fault events.
async fn healed(fleet: &Fleet) {
    fleet.command(&["scenario", "off"]).await;
    let status = fleet.command(&["scenario", "status"]).await;
    let text = String::from_utf8_lossy(&status.stdout).to_string();
    assert_eq!(
        text.lines().filter(|l| l.ends_with("healthy")).count(),
        fleet::topology::admin_targets().count(),
        "{text}"
    );
    let reply = post_json(
        &format!("{}/checkout", fleet.gateway()),
        &order_body(
            "healed@example.com",
            &[("COFFEE-250G", 1), ("MUG-CERAMIC", 1)],
            CARD_OK,
        ),
        &[],
    )
    .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let spans = wait_for_trace(fleet.desk(), &reply.trace_id(), 20).await;
    assert_eq!(spans.len(), 20, "healthy shape:\n{}", describe(&spans));
    assert!(
        spans
            .iter()
            .all(|s| s.events.iter().all(|e| e != "fault.injected"))
    );
    assert!(
        spans.iter().all(|s| s.duration_ms() < 400.0),
        "nothing slow when healthy:\n{}",
        describe(&spans)
    );
}

fn checkouts(traces: &[Vec<Span>]) -> Vec<&Vec<Span>> {
    roots_named(traces, "POST /checkout")
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_payment_makes_the_provider_call_the_bottleneck() {
    let fleet = fleet_with("slow-payment", None).await;
    fleet.load_checkouts(4).await;
    let traces = fleet.all_traces(5).await;
    let checkouts = checkouts(&traces);
    assert_eq!(checkouts.len(), 4);
    for spans in checkouts {
        let worst = largest_self_time(spans);
        assert_eq!(
            (worst.service.as_str(), worst.name.as_str()),
            ("payment-api", "POST /v1/charges"),
            "{}",
            describe(spans)
        );
        let ms = worst.duration_ms();
        assert!(
            (800.0..1400.0).contains(&ms),
            "latency 800ms + jitter ≤ 200ms, got {ms}"
        );
    }
    healed(&fleet).await;
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_database_is_a_slow_insert_with_pg_sleep_in_its_text() {
    let db = TestDb::create().await;
    let fleet = fleet_with("slow-database", Some(db.url.clone())).await;
    fleet.load_checkouts(3).await;
    let traces = fleet.all_traces(4).await;
    for spans in checkouts(&traces) {
        let worst = largest_self_time(spans);
        assert_eq!(worst.name, "INSERT orders", "{}", describe(spans));
        assert!(worst.duration_ms() >= 600.0, "{}", worst.duration_ms());
        assert!(
            worst
                .attr("db.query.text")
                .is_some_and(|q| q.contains("pg_sleep"))
        );
        assert_eq!(worst.attr("db.system.name").as_deref(), Some("postgresql"));
        assert!(
            find(spans, "order-api", "createOrder")
                .events
                .contains(&"fault.injected".to_owned())
        );
    }
    healed(&fleet).await;
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn n_plus_one_yields_one_query_per_item() {
    let fleet = fleet_with("n-plus-one", None).await;
    let reply = post_json(
        &format!("{}/checkout", fleet.gateway()),
        &order_body(
            "n1@example.com",
            &[
                ("COFFEE-250G", 1),
                ("MUG-CERAMIC", 2),
                ("FILTER-V60", 1),
                ("SCALE-01", 1),
            ],
            CARD_OK,
        ),
        &[],
    )
    .await;
    assert_eq!(reply.status, 201);
    let spans = wait_for_trace(fleet.desk(), &reply.trace_id(), 23).await;
    let create = find(&spans, "order-api", "createOrder");
    let selects: Vec<_> = spans
        .iter()
        .filter(|s| {
            s.parent_span_id.as_deref() == Some(create.span_id.as_str())
                && s.name == "SELECT order_items"
        })
        .collect();
    assert_eq!(
        selects.len(),
        5,
        "one list query and one per item (4):\n{}",
        describe(&spans)
    );
    let by_line = selects
        .iter()
        .filter(|s| {
            s.attr("db.query.text")
                .is_some_and(|q| q.contains("line_no = $2"))
        })
        .count();
    assert_eq!(by_line, 4);
    healed(&fleet).await;
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sequential_calls_make_the_reply_wait_for_the_email() {
    let fleet = fleet_with("sequential-calls", None).await;
    let reply = post_json(
        &format!("{}/checkout", fleet.gateway()),
        &order_body("seq@example.com", &[("TEA-SENCHA", 1)], CARD_OK),
        &[],
    )
    .await;
    assert_eq!(
        (reply.status, reply.body["email"].as_str()),
        (201, Some("sent"))
    );
    let spans = wait_for_trace(fleet.desk(), &reply.trace_id(), 19).await;
    let root = find(&spans, "api-gateway", "POST /checkout");
    let email = find(&spans, "notification", "sendEmail");
    assert!(email.duration_ms() >= 400.0);
    assert!(email.end <= root.end, "the reply waited for the email");
    assert!(root.duration_ms() >= 400.0);
    assert!(
        spans.iter().all(|s| s.name != "send confirmation"),
        "no background task when sequential"
    );
    healed(&fleet).await;
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn retry_storm_shows_each_attempt_with_errors_on_the_failed_ones() {
    let fleet = fleet_with("retry-storm", None).await;
    fleet.load_checkouts(12).await;
    let traces = fleet.all_traces(13).await;
    let mut retried = 0;
    for spans in checkouts(&traces) {
        let sdk = find(spans, "payment-api", "stripe-sdk.request");
        let mut attempts: Vec<_> = spans
            .iter()
            .filter(|s| {
                s.parent_span_id.as_deref() == Some(sdk.span_id.as_str())
                    && s.name == "POST /v1/charges"
            })
            .collect();
        attempts.sort_by_key(|s| s.start);
        assert!(
            !attempts.is_empty() && attempts.len() <= 5,
            "at most 1 + 4 retries"
        );
        for (i, a) in attempts.iter().enumerate() {
            let resend = a.attr("http.request.resend_count");
            assert_eq!(resend, (i > 0).then(|| i.to_string()), "attempt {i}");
            if i + 1 < attempts.len() {
                assert_eq!(a.status, "STATUS_CODE_ERROR", "a retried attempt failed");
                assert_eq!(a.attr("http.response.status_code").as_deref(), Some("503"));
            }
        }
        if attempts.len() > 1 {
            retried += 1;
            // Backoff doubles: the gap before attempt 2 is at least 50 ms, before 3 at least 100 ms.
            for (i, pair) in attempts.windows(2).enumerate() {
                let gap_ms = (pair[1].start - pair[0].end) as f64 / 1e6;
                assert!(
                    gap_ms >= 50.0 * 2f64.powi(i as i32) * 0.9,
                    "gap {gap_ms} ms before attempt {}",
                    i + 2
                );
            }
        }
    }
    assert!(
        retried >= 3,
        "with p=0.6 most of 12 checkouts retry; saw {retried}"
    );
    healed(&fleet).await;
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn timeout_cascade_leaves_orphaned_work_that_still_pays() {
    let fleet = fleet_with("timeout-cascade", None).await;
    let reply = post_json(
        &format!("{}/checkout", fleet.gateway()),
        &order_body("late@example.com", &[("KETTLE-GOOSE", 1)], CARD_OK),
        &[],
    )
    .await;
    assert_eq!(reply.status, 504, "{}", reply.body);
    assert_eq!(reply.body["error"]["dependency"], "order-api");
    let spans = wait_for_trace(fleet.desk(), &reply.trace_id(), 15).await;
    let root = find(&spans, "api-gateway", "POST /checkout");
    assert!(
        (1400.0..2400.0).contains(&root.duration_ms()),
        "gave up at the 1.5 s timeout: {}",
        root.duration_ms()
    );
    assert_eq!(
        root.attr("http.response.status_code").as_deref(),
        Some("504")
    );
    let server = find(&spans, "order-api", "POST /orders");
    assert!(
        server.end > root.end,
        "order-api kept working after the gateway gave up"
    );
    let order_id = find(&spans, "order-api", "createOrder")
        .attr("app.order.id")
        .expect("order id");
    let order = get(&format!("{}/orders/{order_id}", fleet.gateway())).await;
    assert_eq!(
        order.body["status"], "paid",
        "the customer got a 504 and was charged anyway"
    );
    healed(&fleet).await;
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pool_exhaustion_shows_requests_waiting_for_a_connection() {
    let fleet = fleet_with("pool-exhaustion", None).await;
    fleet.load_checkouts(10).await;
    let traces = fleet.all_traces(11).await;
    let waits: Vec<f64> = checkouts(&traces)
        .iter()
        .map(|spans| find(spans, "order-api", "sqlx.pool.acquire").duration_ms())
        .collect();
    assert!(
        waits.iter().any(|w| *w >= 400.0),
        "someone waited ~500 ms for a connection: {waits:?}"
    );
    healed(&fleet).await;
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn broken_propagation_splits_the_trace_in_two() {
    let fleet = fleet_with("broken-propagation", None).await;
    let reply = post_json(
        &format!("{}/checkout", fleet.gateway()),
        &order_body("split@example.com", &[("COFFEE-250G", 1)], CARD_OK),
        &[],
    )
    .await;
    assert_eq!(reply.status, 201);
    let traces = fleet.all_traces(2).await;
    assert_eq!(traces.len(), 2, "one checkout, two traces");
    let main = traces
        .iter()
        .find(|t| t.iter().any(|s| s.trace_id == reply.trace_id()))
        .expect("checkout trace");
    let orphan = traces
        .iter()
        .find(|t| t.iter().all(|s| s.trace_id != reply.trace_id()))
        .expect("second trace");
    let client = find(main, "order-api", "payment.v1.PaymentService/Charge");
    assert!(
        main.iter().all(|s| s.service != "payment-api"),
        "payment-api is missing from the checkout trace"
    );
    assert!(
        main.iter()
            .all(|s| s.parent_span_id.as_deref() != Some(client.span_id.as_str())),
        "the client span has no child"
    );
    let root = orphan
        .iter()
        .find(|s| s.parent_span_id.is_none())
        .expect("orphan root");
    assert_eq!(
        (
            root.service.as_str(),
            root.name.as_str(),
            root.kind.as_str()
        ),
        (
            "payment-api",
            "payment.v1.PaymentService/Charge",
            "SPAN_KIND_SERVER"
        )
    );
    healed(&fleet).await;
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn error_burst_marks_payment_api_spans_failed() {
    let fleet = fleet_with("error-burst", None).await;
    fleet.load_checkouts(10).await;
    let traces = fleet.all_traces(11).await;
    let mut failed = 0;
    for spans in checkouts(&traces) {
        let server = spans
            .iter()
            .find(|s| s.service == "payment-api" && s.kind == "SPAN_KIND_SERVER")
            .expect("server span");
        if server.status == "STATUS_CODE_ERROR" {
            failed += 1;
            assert_eq!(server.attr("rpc.status_code").as_deref(), Some("INTERNAL"));
            assert!(
                find(spans, "payment-api", "charge")
                    .events
                    .contains(&"fault.injected".to_owned())
            );
            let root = spans
                .iter()
                .find(|s| s.parent_span_id.is_none())
                .expect("root");
            assert_eq!(
                root.attr("http.response.status_code").as_deref(),
                Some("502")
            );
        }
    }
    assert!(failed >= 2, "p=0.5 over 10 checkouts: {failed} failed");
    healed(&fleet).await;
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn noisy_neighbour_makes_an_ordinary_insert_wait_on_a_lock() {
    let db = TestDb::create().await;
    let fleet = fleet_with("noisy-neighbour", Some(db.url.clone())).await;
    fleet.load_checkouts(10).await;
    let traces = fleet.all_traces(11).await;
    let slow: Vec<_> = checkouts(&traces)
        .into_iter()
        .map(|spans| find(spans, "order-api", "INSERT orders").clone())
        // The neighbour holds the lock 400 ms from the moment it has it; the INSERT starts a
        // little later, and on a loaded machine later still, so it waits somewhat less. Over
        // 200 ms is what the scenario's TraceQL looks for (an ordinary INSERT takes a few ms).
        .filter(|s| s.duration_ms() > 200.0)
        .collect();
    assert!(
        !slow.is_empty(),
        "some INSERT waited on the lock (over 200 ms)"
    );
    for insert in slow {
        assert!(
            insert
                .attr("db.query.text")
                .is_some_and(|q| !q.contains("pg_sleep")),
            "the query itself is ordinary"
        );
    }
    healed(&fleet).await;
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn overloaded_orders_are_shed_at_once_and_say_so_in_the_trace() {
    let fleet = fleet_with("overloaded-orders", None).await;
    // A burst of checkouts at once: each admitted order waits 300 ms on the provider, so with
    // two in flight at order-api the rest arrive to a full service.
    const BURST: usize = 8;
    let url = format!("{}/checkout", fleet.gateway());
    let mut burst = tokio::task::JoinSet::new();
    for i in 0..BURST {
        let url = url.clone();
        burst.spawn(async move {
            let body = order_body(
                &format!("burst{i}@example.com"),
                &[("TEA-SENCHA", 1)],
                CARD_OK,
            );
            post_json(&url, &body, &[]).await
        });
    }
    let replies = burst.join_all().await;
    let served = replies.iter().filter(|r| r.status == 201).count();
    let shed: Vec<_> = replies.iter().filter(|r| r.status == 503).collect();
    assert_eq!(
        served + shed.len(),
        BURST,
        "each checkout is served or shed: {:?}",
        replies
            .iter()
            .map(|r| (r.status, &r.body))
            .collect::<Vec<_>>()
    );
    assert!(served >= 1, "the first orders in are served");
    assert!(
        shed.len() >= BURST / 2,
        "at most two in flight: {} of {BURST} shed",
        shed.len()
    );
    for reply in &shed {
        assert_eq!(reply.body["error"]["code"], "overloaded", "{}", reply.body);
        assert_eq!(reply.headers["retry-after"], "1");
        let spans = wait_for_trace(fleet.desk(), &reply.trace_id(), 3).await;
        let root = find(&spans, "api-gateway", "POST /checkout");
        assert_eq!(root.status, "STATUS_CODE_ERROR", "{}", describe(&spans));
        assert_eq!(
            root.attr("http.response.status_code").as_deref(),
            Some("503")
        );
        let call = spans
            .iter()
            .find(|s| {
                (s.service.as_str(), s.name.as_str(), s.kind.as_str())
                    == ("api-gateway", "POST /orders", "SPAN_KIND_CLIENT")
            })
            .unwrap_or_else(|| panic!("the gateway's call to order-api:\n{}", describe(&spans)));
        assert_eq!(
            call.attr("http.response.status_code").as_deref(),
            Some("503")
        );
        assert_eq!(
            call.attr("http.response.header.retry-after").as_deref(),
            Some("1")
        );
        let server = find(&spans, "order-api", "POST /orders");
        assert_eq!(
            server.parent_span_id.as_deref(),
            Some(call.span_id.as_str())
        );
        assert_eq!(server.status, "STATUS_CODE_ERROR");
        assert_eq!(server.attr("error.type").as_deref(), Some("overloaded"));
        assert_eq!(
            server.attr("http.response.header.retry-after").as_deref(),
            Some("1")
        );
        assert!(
            server.events.contains(&"fault.injected".to_owned()),
            "the lowered limit is evidence on the span"
        );
        assert!(
            spans
                .iter()
                .all(|s| s.parent_span_id.as_deref() != Some(server.span_id.as_str())),
            "refused before any work: no children\n{}",
            describe(&spans)
        );
        assert!(
            server.duration_ms() < 300.0,
            "refused at once, not after the provider's 300 ms: {} ms",
            server.duration_ms()
        );
    }
    // The scenario's TraceQL finds exactly the shed checkouts.
    let traceql = fleet::scenario::SCENARIOS
        .iter()
        .find(|s| s.name == "overloaded-orders")
        .expect("scenario")
        .traceql;
    let found = reqwest::Client::new()
        .get(format!("{}/api/search", fleet.desk()))
        .query(&[("q", traceql), ("limit", "100")])
        .send()
        .await
        .expect("search")
        .json::<serde_json::Value>()
        .await
        .expect("search JSON");
    let mut found: Vec<String> = found["traces"]
        .as_array()
        .unwrap_or_else(|| panic!("{found}"))
        .iter()
        .map(|t| format!("{:0>32}", t["traceID"].as_str().expect("traceID")))
        .collect();
    let mut expected: Vec<String> = shed.iter().map(|r| r.trace_id()).collect();
    found.sort();
    expected.sort();
    assert_eq!(found, expected, "{traceql}");
    healed(&fleet).await;
    fleet.stop().await;
}
