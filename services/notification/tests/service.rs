//! notification in-process on port 0, called through its own typed client; spans from an
//! in-memory exporter.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use fleet_proto::notification::v1::{OrderLine, SendEmailRequest};
use notification::client::NotificationClient;
use notification::{Config, server};

fn config() -> Config {
    Config {
        listen_addr: "127.0.0.1:0".into(),
        outbox_capacity: 1000,
        outbox_max_bytes: 4 * 1024 * 1024,
    }
}

fn email(order_id: &str, lines: usize) -> SendEmailRequest {
    SendEmailRequest {
        to: "ada@example.com".into(),
        order_id: order_id.into(),
        total_cents: 1299,
        currency: "USD".into(),
        lines: (0..lines)
            .map(|i| OrderLine {
                sku: format!("SKU-{i}"),
                name: "Coffee".into(),
                quantity: 1,
                unit_price_cents: 1299,
            })
            .collect(),
    }
}

async fn start(config: Config) -> (fleet_server_kit::Running, NotificationClient) {
    let running = notification::start(
        config,
        fleet_faults::Faults::new(
            "notification",
            notification::server::FAULT_POINTS,
            false,
            false,
            None,
        ),
    )
    .await
    .unwrap();
    let client = NotificationClient::connect_lazy(&running.url(), Duration::from_secs(5)).unwrap();
    (running, client)
}

#[tokio::test(flavor = "multi_thread")]
async fn sends_lists_and_traces_an_email() {
    let (_guard, spans) = fleet_telemetry::testing::capture("notification").unwrap();
    let (running, client) = start(config()).await;
    let sent = client.send_email(email("order-1", 2)).await.unwrap();
    assert!(sent.message_id.ends_with("@notification.fleet>"));
    let listed = client.list_outbox("ada@example.com", 10).await.unwrap();
    assert_eq!(listed.emails.len(), 1);
    assert!(listed.emails[0].body.contains("2 x") || listed.emails[0].body.contains("1 x Coffee"));
    running.shutdown().await.unwrap();

    let send = spans.named("sendEmail");
    assert_eq!(send.len(), 1);
    let server = spans.named("notification.v1.NotificationService/SendEmail");
    let server = server
        .iter()
        .find(|s| s.span_kind == opentelemetry::trace::SpanKind::Server)
        .expect("a SERVER span");
    assert_eq!(send[0].parent_span_id, server.span_context.span_id());
    let attr = |k: &str| {
        server
            .attributes
            .iter()
            .find(|kv| kv.key.as_str() == k)
            .map(|kv| kv.value.to_string())
    };
    assert_eq!(attr("rpc.system.name").as_deref(), Some("grpc"));
    assert_eq!(attr("rpc.status_code").as_deref(), Some("OK"));
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_and_oversized_emails_are_refused_before_they_are_kept() {
    let (running, client) = start(config()).await;
    // At the line bound: accepted; one over: INVALID_ARGUMENT.
    client
        .send_email(email("order-max", server::MAX_LINES))
        .await
        .unwrap();
    let err = client
        .send_email(email("order-over", server::MAX_LINES + 1))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    // 2,000,000 empty lines (the case) are past the message bound: never decoded.
    let mut huge = email("order-huge", 0);
    huge.lines = vec![OrderLine::default(); 2_000_000];
    let err = client.send_email(huge).await.unwrap_err();
    // tonic answers OUT_OF_RANGE ("decoded message length too large").
    assert_eq!(err.code(), tonic::Code::OutOfRange, "{err:?}");
    for (order_id, why) in [
        ("", "empty order id"),
        ("a\0b", "control character"),
        (&"x".repeat(server::MAX_FIELD_CHARS + 1) as &str, "too long"),
    ] {
        let err = client.send_email(email(order_id, 1)).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{why}");
    }
    let listed = client.list_outbox("", 100).await.unwrap();
    assert_eq!(listed.emails.len(), 1, "only the valid email is kept");
    running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_outbox_is_bounded_in_bytes() {
    let mut small = config();
    small.outbox_max_bytes = 2000;
    let (running, client) = start(small).await;
    for i in 0..50 {
        client
            .send_email(email(&format!("order-{i}"), 3))
            .await
            .unwrap();
    }
    let listed = client.list_outbox("", 1000).await.unwrap();
    let bytes: usize = listed
        .emails
        .iter()
        .map(|e| {
            e.message_id.len() + e.to.len() + e.subject.len() + e.body.len() + e.order_id.len() + 8
        })
        .sum();
    assert!(bytes <= 2000, "{bytes} bytes held");
    assert!(listed.emails.len() < 50 && !listed.emails.is_empty());
    assert_eq!(listed.emails[0].order_id, "order-49", "newest kept");
    running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_admin_endpoint_checks_the_token_first_and_takes_any_bearer_case() {
    let running = notification::start(
        config(),
        fleet_faults::Faults::new(
            "notification",
            notification::server::FAULT_POINTS,
            false,
            false,
            Some("s3cret".into()),
        ),
    )
    .await
    .unwrap();
    let url = format!("{}/admin/faults", running.url());
    let http = reqwest::Client::new();
    // No token: 401 with a JSON body, before the query is even looked at.
    let resp = http
        .put(format!("{url}?quiz=maybe"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "missing_token");
    // The scheme in any case.
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let resp = http
            .get(&url)
            .header("authorization", format!("{scheme} s3cret"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{scheme}");
    }
    // With the token, a bad query is a 400 with a JSON body naming it.
    let resp = http
        .put(format!("{url}?quiz=maybe"))
        .header("authorization", "Bearer s3cret")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_query");
    running.shutdown().await.unwrap();
}
