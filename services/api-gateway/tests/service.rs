//! api-gateway in-process on port 0 against real order-api (SQLite), payment-api, the provider
//! stand-in and notification, all in-process; spans from an in-memory exporter.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

mod support;

use support::{checkout_body, start, stop};

#[tokio::test(flavor = "multi_thread")]
async fn a_checkout_is_one_trace_and_carries_its_idempotency_key() {
    let (_guard, spans) = fleet_telemetry::testing::capture("api-gateway").unwrap();
    let (services, url, dir) = start().await;
    let http = reqwest::Client::new();
    let first = http
        .post(format!("{url}/checkout"))
        .json(&checkout_body())
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 201);
    let generated = first.headers()["idempotency-key"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        uuid::Uuid::parse_str(&generated).map(|_| ()),
        Ok(()),
        "a fresh key"
    );
    let first: serde_json::Value = first.json().await.unwrap();

    // The same key again: the same order, charged once.
    let again = http
        .post(format!("{url}/checkout"))
        .header("idempotency-key", &generated)
        .json(&checkout_body())
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 201);
    assert_eq!(again.headers()["idempotency-key"], generated.as_str());
    let again: serde_json::Value = again.json().await.unwrap();
    assert_eq!(again["order_id"], first["order_id"]);

    // A bad key is refused before anything is written.
    let bad = http
        .post(format!("{url}/checkout"))
        .header("idempotency-key", "a key with spaces")
        .json(&checkout_body())
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    tokio::time::sleep(Duration::from_millis(200)).await; // the email goes out beside the reply
    stop(services, dir).await;

    let server = spans.named("POST /checkout");
    assert_eq!(server.len(), 3);
    let trace = server[0].span_context.trace_id();
    let in_trace: Vec<String> = spans
        .spans()
        .into_iter()
        .filter(|s| s.span_context.trace_id() == trace)
        .map(|s| s.name.to_string())
        .collect();
    for name in [
        "POST /checkout",
        "POST /orders",
        "createOrder",
        "INSERT orders",
        "payment.v1.PaymentService/Charge",
        "charge",
        "stripe-sdk.request",
        "send confirmation",
        "sendEmail",
    ] {
        assert!(
            in_trace.iter().any(|n| n == name),
            "{name} missing: {in_trace:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_order_id_that_is_not_one_is_400_however_it_is_spelled() {
    let (services, url, dir) = start().await;
    let addr = url.trim_start_matches("http://").to_owned();
    for path in [
        "/orders/..",
        "/orders/%2E%2E",
        "/orders/not-a-uuid",
        "/orders/..%2F..%2Fproducts",
    ] {
        // Raw HTTP: a client library would normalise `..` away before sending it.
        let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
        stream
            .write_all(
                format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").as_bytes(),
            )
            .await
            .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 400"), "{path}: {answer}");
        assert!(answer.contains("invalid_order_id"), "{path}: {answer}");
    }
    stop(services, dir).await;
}
