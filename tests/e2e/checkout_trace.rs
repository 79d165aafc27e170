//! One checkout, one trace, shaped like the whiteboard.

use crate::support::*;

/// The whiteboard trace: gateway → order-api (db spans, payment-api → provider), gateway → notification.
fn assert_whiteboard(spans: &[Span], db_system: &str) {
    let trace_ids: std::collections::HashSet<_> =
        spans.iter().map(|s| s.trace_id.as_str()).collect();
    assert_eq!(trace_ids.len(), 1, "one trace id");

    let roots: Vec<_> = spans
        .iter()
        .filter(|s| s.parent_span_id.is_none())
        .collect();
    assert_eq!(roots.len(), 1, "exactly one root:\n{}", describe(spans));
    let ids: std::collections::HashSet<_> = spans.iter().map(|s| s.span_id.as_str()).collect();
    for s in spans {
        if let Some(p) = &s.parent_span_id {
            assert!(
                ids.contains(p.as_str()),
                "parent of {} missing:\n{}",
                s.name,
                describe(spans)
            );
        }
    }

    let root = roots[0];
    assert_eq!(
        (
            root.service.as_str(),
            root.name.as_str(),
            root.kind.as_str()
        ),
        ("api-gateway", "POST /checkout", "SPAN_KIND_SERVER")
    );
    assert_eq!(root.attr("http.route").as_deref(), Some("/checkout"));
    assert_eq!(
        root.attr("http.response.status_code").as_deref(),
        Some("201")
    );

    // HTTP hop: CLIENT in the gateway, SERVER in order-api beneath it.
    let orders_client = child_of(spans, root, "api-gateway", "POST /orders");
    assert_eq!(orders_client.kind, "SPAN_KIND_CLIENT");
    assert_eq!(
        orders_client.attr("http.request.method").as_deref(),
        Some("POST")
    );
    assert!(
        orders_client
            .attr("url.full")
            .is_some_and(|u| u.ends_with("/orders"))
    );
    assert!(orders_client.attr("server.port").is_some());
    let orders_server = child_of(spans, &orders_client, "order-api", "POST /orders");
    assert_eq!(orders_server.kind, "SPAN_KIND_SERVER");

    let create = child_of(spans, &orders_server, "order-api", "createOrder");
    assert_eq!(create.kind, "SPAN_KIND_INTERNAL");
    let insert = child_of(spans, &create, "order-api", "INSERT orders");
    assert_eq!(insert.kind, "SPAN_KIND_CLIENT");
    assert_eq!(insert.attr("db.system.name").as_deref(), Some(db_system));
    assert_eq!(insert.attr("db.operation.name").as_deref(), Some("INSERT"));
    assert_eq!(insert.attr("db.collection.name").as_deref(), Some("orders"));
    assert!(insert.attr("db.namespace").is_some_and(|n| !n.is_empty()));
    let query = insert.attr("db.query.text").unwrap_or_default();
    assert!(
        query.starts_with("INSERT INTO orders") && !query.contains("@example.com"),
        "parameterised: {query}"
    );

    // gRPC hop to payment-api, then the provider call under the SDK span.
    let charge_client = child_of(
        spans,
        &create,
        "order-api",
        "payment.v1.PaymentService/Charge",
    );
    assert_eq!(charge_client.kind, "SPAN_KIND_CLIENT");
    assert_eq!(
        charge_client.attr("rpc.system.name").as_deref(),
        Some("grpc")
    );
    assert_eq!(
        charge_client.attr("rpc.method").as_deref(),
        Some("payment.v1.PaymentService/Charge")
    );
    assert_eq!(charge_client.attr("rpc.status_code").as_deref(), Some("OK"));
    let charge_server = child_of(
        spans,
        &charge_client,
        "payment-api",
        "payment.v1.PaymentService/Charge",
    );
    assert_eq!(charge_server.kind, "SPAN_KIND_SERVER");
    let charge = child_of(spans, &charge_server, "payment-api", "charge");
    let sdk = child_of(spans, &charge, "payment-api", "stripe-sdk.request");
    let provider_call = child_of(spans, &sdk, "payment-api", "POST /v1/charges");
    assert_eq!(provider_call.kind, "SPAN_KIND_CLIENT");
    assert_eq!(
        provider_call.attr("http.response.status_code").as_deref(),
        Some("200")
    );
    assert!(
        spans.iter().all(|s| s.service != "payment-provider"),
        "the provider exports nothing; it appears only as the client span"
    );

    // gRPC hop to notification.
    let background = child_of(spans, root, "api-gateway", "send confirmation");
    let email_client = child_of(
        spans,
        &background,
        "api-gateway",
        "notification.v1.NotificationService/SendEmail",
    );
    assert_eq!(email_client.kind, "SPAN_KIND_CLIENT");
    let email_server = child_of(
        spans,
        &email_client,
        "notification",
        "notification.v1.NotificationService/SendEmail",
    );
    assert_eq!(email_server.kind, "SPAN_KIND_SERVER");
    child_of(spans, &email_server, "notification", "sendEmail");

    // Every span sits inside its parent's time and none is an error.
    for s in spans {
        assert!(s.end >= s.start, "{} ends before it starts", s.name);
        assert_ne!(s.status, "STATUS_CODE_ERROR", "{} is an error", s.name);
    }
    let services: std::collections::BTreeSet<_> =
        spans.iter().map(|s| s.service.as_str()).collect();
    assert_eq!(
        services.into_iter().collect::<Vec<_>>(),
        ["api-gateway", "notification", "order-api", "payment-api"]
    );
}

async fn checkout_makes_one_trace(fleet: &Fleet, db_system: &str) -> String {
    let reply = post_json(
        &format!("{}/checkout", fleet.gateway()),
        &order_body(
            "ada@example.com",
            &[("COFFEE-250G", 2), ("MUG-CERAMIC", 1)],
            CARD_OK,
        ),
        &[],
    )
    .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert_eq!(reply.body["status"], "paid");
    assert_eq!(reply.body["total_cents"], 2 * 1450 + 1200);
    assert_eq!(
        reply.body["email"], "queued",
        "the email goes out beside the reply"
    );
    let trace_id = reply.trace_id();
    assert_eq!(
        reply.body["trace_id"],
        trace_id.as_str(),
        "body and header agree"
    );
    let traceresponse = reply.headers["traceresponse"]
        .to_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        traceresponse.starts_with(&format!("00-{trace_id}-")),
        "{traceresponse}"
    );

    let spans = wait_for_trace(fleet.desk(), &trace_id, 20).await;
    assert_whiteboard(&spans, db_system);
    // Exactly one trace in the desk: health probes are not traced, nothing split off.
    assert_eq!(desk_trace_ids(fleet.desk()).await, vec![trace_id.clone()]);

    // The order is readable through the gateway, and the email is in the outbox.
    let order_id = reply.body["order_id"]
        .as_str()
        .expect("order_id")
        .to_owned();
    let order = get(&format!("{}/orders/{order_id}", fleet.gateway())).await;
    assert_eq!(order.status, 200);
    assert_eq!(order.body["status"], "paid");
    assert_eq!(order.body["items"].as_array().map(Vec::len), Some(2));
    let outbox = get(&format!(
        "{}/outbox?to=ada@example.com",
        fleet.urls["notification"]
    ))
    .await;
    assert_eq!(outbox.body["emails"][0]["order_id"], order_id.as_str());
    order_id
}

#[tokio::test(flavor = "multi_thread")]
async fn checkout_trace_over_otlp_http_with_postgres() {
    let db = TestDb::create().await;
    let fleet = Fleet::on_postgres(&db).await;
    let order_id = checkout_makes_one_trace(&fleet, "postgresql").await;
    assert_eq!(db.status_of(&order_id).await.as_deref(), Some("paid"));
    assert_eq!(db.count("SELECT count(*) FROM order_items").await, 2);
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn checkout_trace_over_otlp_grpc_with_postgres() {
    let db = TestDb::create().await;
    let fleet = Fleet::start(FleetOptions {
        database_url: Some(db.url.clone()),
        env: vec![("OTEL_EXPORTER_OTLP_PROTOCOL".into(), "grpc".into())],
    })
    .await;
    checkout_makes_one_trace(&fleet, "postgresql").await;
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn checkout_works_on_the_embedded_sqlite_default() {
    let fleet = Fleet::start(FleetOptions::default()).await;
    checkout_makes_one_trace(&fleet, "sqlite").await;
    let products = get(&format!("{}/products", fleet.gateway())).await;
    assert_eq!(products.status, 200);
    assert!(
        products.body["products"]
            .as_array()
            .is_some_and(|p| p.len() >= 8)
    );
    fleet.stop().await;
}
