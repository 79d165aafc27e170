//! notification in-process on port 0, called through its own typed client; spans from an
//! in-memory exporter.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use fleet_proto::notification::v1::{OrderLine, SendEmailRequest};
use notification::client::NotificationClient;
use notification::{Config, server};
use prost::Message as _;

fn config() -> Config {
    Config {
        listen_addr: "127.0.0.1:0".into(),
        outbox_capacity: 1000,
        outbox_max_bytes: 4 * 1024 * 1024,
        max_in_flight: fleet_server_kit::DEFAULT_MAX_IN_FLIGHT,
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
    // Generous: encoding the 2,000,000-line message in the test below takes seconds in a debug
    // build on a loaded machine, and the deadline only guards against a hang.
    let client = NotificationClient::connect_lazy(&running.url(), Duration::from_secs(30)).unwrap();
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

/// A counter as `GET /metrics` serves it now.
async fn metric(running: &fleet_server_kit::Running, name: &str, bound: Option<&str>) -> u64 {
    let text = reqwest::get(format!("{}/metrics", running.url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let label = match bound {
        Some(bound) => Some(("bound", bound)),
        None => Some(("service", "notification")),
    };
    fleet_server_kit::metrics::sample(&text, name, label)
        .unwrap_or_else(|| panic!("no {name} {bound:?} in {text}"))
}

const DROPPED: &str = "fleet_outbox_dropped_total";

#[tokio::test(flavor = "multi_thread")]
async fn an_outbox_full_by_count_drops_the_oldest_and_counts_it() {
    let mut three = config();
    three.outbox_capacity = 3;
    let (running, client) = start(three).await;
    for i in 0..3 {
        client
            .send_email(email(&format!("o-{i}"), 1))
            .await
            .unwrap();
    }
    assert_eq!(
        metric(&running, DROPPED, Some("count")).await,
        0,
        "at 3 of 3"
    );
    client.send_email(email("o-3", 1)).await.unwrap();
    assert_eq!(metric(&running, DROPPED, Some("count")).await, 1, "the 4th");
    assert_eq!(metric(&running, DROPPED, Some("bytes")).await, 0);
    let held = client.list_outbox("", 10).await.unwrap().emails;
    assert_eq!(held.len(), 3);
    assert_eq!(held[2].order_id, "o-1", "o-0, the oldest, went");
    running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_outbox_full_by_bytes_drops_the_oldest_and_counts_it() {
    // One email's size, as the outbox measures it (every email below is the same size).
    let (running, client) = start(config()).await;
    client.send_email(email("o-0", 1)).await.unwrap();
    let e = client.list_outbox("", 1).await.unwrap().emails.remove(0);
    let one =
        e.message_id.len() + e.to.len() + e.subject.len() + e.body.len() + e.order_id.len() + 8;
    running.shutdown().await.unwrap();

    let mut two = config();
    two.outbox_max_bytes = 2 * one;
    let (running, client) = start(two).await;
    for i in 0..2 {
        client
            .send_email(email(&format!("o-{i}"), 1))
            .await
            .unwrap();
    }
    assert_eq!(
        metric(&running, DROPPED, Some("bytes")).await,
        0,
        "exactly full"
    );
    client.send_email(email("o-2", 1)).await.unwrap();
    assert_eq!(
        metric(&running, DROPPED, Some("bytes")).await,
        1,
        "one email past"
    );
    assert_eq!(metric(&running, DROPPED, Some("count")).await, 0);
    running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_messages_are_counted_by_their_grpc_status() {
    let (running, client) = start(config()).await;
    let (too_large, invalid) = (
        "fleet_grpc_message_too_large_total",
        "fleet_grpc_invalid_argument_total",
    );
    client
        .send_email(email("ok", server::MAX_LINES))
        .await
        .unwrap();
    assert_eq!(
        metric(&running, invalid, None).await,
        0,
        "at the line bound"
    );
    let err = client
        .send_email(email("over", server::MAX_LINES + 1))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert_eq!(metric(&running, invalid, None).await, 1, "one line past");
    // A message of exactly MAX_MESSAGE_BYTES is decoded (and refused for its long order id);
    // one byte more is refused before decoding.
    let sized = |bytes: usize| {
        let mut e = email("", 1);
        let base = e.encoded_len();
        // The order id costs its length, a tag byte and a length prefix (3 bytes here).
        e.order_id = "x".repeat(bytes - base - 4);
        assert_eq!(e.encoded_len(), bytes);
        e
    };
    let err = client
        .send_email(sized(server::MAX_MESSAGE_BYTES))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    assert_eq!(metric(&running, too_large, None).await, 0, "at the bound");
    assert_eq!(metric(&running, invalid, None).await, 2);
    let err = client
        .send_email(sized(server::MAX_MESSAGE_BYTES + 1))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::OutOfRange, "{err:?}");
    assert_eq!(metric(&running, too_large, None).await, 1, "one byte past");
    assert_eq!(
        metric(&running, invalid, None).await,
        2,
        "not counted twice"
    );
    running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fault_spec_at_its_limit_is_armed_and_one_past_is_refused_and_counted() {
    let (running, _client) = start(config()).await;
    let put = |spec: &'static str| {
        reqwest::Client::new()
            .put(format!("{}/admin/faults", running.url()))
            .header("content-type", "text/plain")
            .body(spec)
            .send()
    };
    let name = "fleet_fault_specs_refused_total";
    assert_eq!(
        put("notification.send:latency=60s").await.unwrap().status(),
        200
    );
    assert_eq!(metric(&running, name, None).await, 0, "at the 60 s limit");
    assert_eq!(
        put("notification.send:latency=61s").await.unwrap().status(),
        422
    );
    assert_eq!(metric(&running, name, None).await, 1, "one second past");
    put("").await.unwrap();
    running.shutdown().await.unwrap();
}
