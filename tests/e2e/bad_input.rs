//! Bad input gets a clear error and writes nothing; failed payments end `payment_failed`.

use serde_json::json;

use crate::support::*;

fn error_code(reply: &Reply) -> &str {
    reply.body["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("no error.code in {}", reply.body))
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_is_refused_with_a_named_problem_and_leaves_no_rows() {
    let db = TestDb::create().await;
    let fleet = Fleet::on_postgres(&db).await;
    let checkout = format!("{}/checkout", fleet.gateway());

    let cases: Vec<(&str, serde_json::Value, u16, &str, Option<&str>)> = vec![
        ("unknown sku", order_body("a@example.com", &[("NO-SUCH-SKU", 1)], CARD_OK), 422, "unknown_sku", Some("items[0].sku")),
        ("quantity 0", order_body("a@example.com", &[("COFFEE-250G", 0)], CARD_OK), 422, "invalid_quantity", Some("items[0].quantity")),
        ("negative quantity", order_body("a@example.com", &[("MUG-CERAMIC", 1), ("COFFEE-250G", -3)], CARD_OK), 422, "invalid_quantity", Some("items[1].quantity")),
        ("huge quantity", order_body("a@example.com", &[("COFFEE-250G", 1_000_000_000)], CARD_OK), 422, "invalid_quantity", Some("items[0].quantity")),
        ("invalid email", order_body("not-an-email", &[("COFFEE-250G", 1)], CARD_OK), 422, "invalid_customer_email", Some("customer_email")),
        ("no items", order_body("a@example.com", &[], CARD_OK), 422, "invalid_items", Some("items")),
        ("card fails Luhn", order_body("a@example.com", &[("COFFEE-250G", 1)], "4242424242424241"), 422, "invalid_card_number", Some("card_number")),
        ("missing field", json!({"customer_email": "a@example.com", "items": []}), 422, "invalid_body", None),
        ("quantity not a number", json!({"customer_email": "a@example.com", "items": [{"sku": "COFFEE-250G", "quantity": "two"}], "card_number": CARD_OK}), 422, "invalid_body", None),
        ("quantity beyond i64", serde_json::from_str(r#"{"customer_email":"a@example.com","items":[{"sku":"COFFEE-250G","quantity":99999999999999999999999}],"card_number":"4242424242424242"}"#).expect("json"), 422, "invalid_body", None),
    ];
    for (what, body, status, code, field) in cases {
        let reply = post_json(&checkout, &body, &[]).await;
        assert_eq!(reply.status, status, "{what}: {}", reply.body);
        assert_eq!(error_code(&reply), code, "{what}: {}", reply.body);
        assert!(
            reply.body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{what}: message"
        );
        assert_eq!(
            reply.body["error"]["field"].as_str(),
            field,
            "{what}: field"
        );
    }

    let reply = post_raw(
        &checkout,
        "application/json",
        b"{\"customer_email\": ".to_vec(),
    )
    .await;
    assert_eq!(
        (reply.status, error_code(&reply)),
        (400, "malformed_json"),
        "{}",
        reply.body
    );
    let reply = post_raw(&checkout, "text/plain", b"hello".to_vec()).await;
    assert_eq!(
        (reply.status, error_code(&reply)),
        (415, "unsupported_media_type"),
        "{}",
        reply.body
    );
    let big = format!(
        r#"{{"customer_email":"a@example.com","items":[],"card_number":"{}"}}"#,
        "4".repeat(200_000)
    );
    let reply = post_raw(&checkout, "application/json", big.into_bytes()).await;
    assert_eq!(
        (reply.status, error_code(&reply)),
        (413, "body_too_large"),
        "{}",
        reply.body
    );

    let reply = get(&format!("{}/orders/not-a-uuid", fleet.gateway())).await;
    assert_eq!(
        (reply.status, error_code(&reply)),
        (400, "invalid_order_id")
    );
    let reply = get(&format!(
        "{}/orders/{}",
        fleet.gateway(),
        "7d0c1a52-8f3e-4b8e-9a51-1c2b3d4e5f60"
    ))
    .await;
    assert_eq!((reply.status, error_code(&reply)), (404, "order_not_found"));
    let reply = get(&format!("{}/no/such/route", fleet.gateway())).await;
    assert_eq!((reply.status, error_code(&reply)), (404, "route_not_found"));

    assert_eq!(
        db.count("SELECT count(*) FROM orders").await,
        0,
        "bad input wrote an order"
    );
    assert_eq!(db.count("SELECT count(*) FROM order_items").await, 0);
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn declines_and_provider_faults_end_payment_failed_with_the_dependency_named() {
    let db = TestDb::create().await;
    let fleet = Fleet::on_postgres(&db).await;
    let checkout = format!("{}/checkout", fleet.gateway());

    let reply = post_json(
        &checkout,
        &order_body("b@example.com", &[("KETTLE-GOOSE", 1)], CARD_DECLINED),
        &[],
    )
    .await;
    assert_eq!(reply.status, 402, "{}", reply.body);
    assert_eq!(error_code(&reply), "payment_declined");
    assert!(
        reply.body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("insufficient_funds")),
        "{}",
        reply.body
    );
    let declined = reply.body["error"]["details"]["order_id"]
        .as_str()
        .expect("order id of the declined order")
        .to_owned();
    assert_eq!(
        db.status_of(&declined).await.as_deref(),
        Some("payment_failed")
    );
    let spans = wait_for_trace(fleet.desk(), &reply.trace_id(), 12).await;
    let client = find(&spans, "order-api", "payment.v1.PaymentService/Charge");
    assert_eq!(client.kind, "SPAN_KIND_CLIENT");
    assert_eq!(
        client.attr("rpc.status_code").as_deref(),
        Some("FAILED_PRECONDITION")
    );
    assert_eq!(
        client.status, "STATUS_CODE_ERROR",
        "every non-OK code is an error on the client"
    );
    let server = spans
        .iter()
        .find(|s| s.service == "payment-api" && s.kind == "SPAN_KIND_SERVER")
        .expect("payment-api server span");
    assert_eq!(
        server.attr("rpc.status_code").as_deref(),
        Some("FAILED_PRECONDITION")
    );
    assert_ne!(
        server.status, "STATUS_CODE_ERROR",
        "a decline is not a server fault"
    );
    let provider = find(&spans, "payment-api", "POST /v1/charges");
    assert_eq!(
        provider.attr("http.response.status_code").as_deref(),
        Some("402")
    );
    assert_eq!(
        provider.status, "STATUS_CODE_ERROR",
        "4xx is an error on an HTTP client span"
    );
    let root = find(&spans, "api-gateway", "POST /checkout");
    assert_ne!(
        root.status, "STATUS_CODE_ERROR",
        "4xx is not a server error"
    );
    assert!(
        spans.iter().all(|s| s.service != "notification"),
        "no email for a failed payment"
    );

    let reply = post_json(
        &checkout,
        &order_body("c@example.com", &[("SCALE-01", 1)], CARD_PROVIDER_FAULT),
        &[],
    )
    .await;
    assert_eq!(reply.status, 503, "{}", reply.body);
    assert_eq!(reply.body["error"]["dependency"], "payment-api");
    let failed = reply.body["error"]["details"]["order_id"]
        .as_str()
        .expect("order id")
        .to_owned();
    assert_eq!(
        db.status_of(&failed).await.as_deref(),
        Some("payment_failed")
    );
    let spans = wait_for_trace(fleet.desk(), &reply.trace_id(), 12).await;
    let root = find(&spans, "api-gateway", "POST /checkout");
    assert_eq!(root.status, "STATUS_CODE_ERROR");
    assert_eq!(root.attr("error.type").as_deref(), Some("503"));
    let server = spans
        .iter()
        .find(|s| s.service == "payment-api" && s.kind == "SPAN_KIND_SERVER")
        .expect("payment-api server span");
    assert_eq!(
        server.attr("rpc.status_code").as_deref(),
        Some("UNAVAILABLE")
    );
    assert_eq!(server.status, "STATUS_CODE_ERROR");

    assert_eq!(
        db.count("SELECT count(*) FROM orders WHERE status NOT IN ('paid', 'payment_failed')")
            .await,
        0
    );
    fleet.stop().await;
}
