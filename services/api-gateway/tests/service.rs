//! api-gateway in-process on port 0 against real order-api (SQLite), payment-api, the provider
//! stand-in and notification, all in-process; spans from an in-memory exporter.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

mod support;

use fleet_server_kit::metrics::sample;
use support::{
    checkout_body, checkout_with_queued_email, start, start_with_notification_faults, stop,
};

/// A counter of the gateway's, as its `GET /metrics` would render it now (read in-process, so
/// reading makes no span of its own).
fn counter(gateway: &fleet_server_kit::Metrics, name: &str) -> Option<u64> {
    sample(&gateway.render(), name, Some(("service", "api-gateway")))
}

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

#[tokio::test(flavor = "multi_thread")]
async fn emails_still_sending_at_the_stop_deadline_are_counted_and_those_done_in_time_are_not() {
    let name = "fleet_gateway_emails_dropped_at_stop_total";
    // The mail server takes 300 ms (done within the 1 s deadline), then 2 s (not).
    for (latency, dropped) in [("300ms", 0), ("2s", 1)] {
        let (services, url, dir) =
            start_with_notification_faults(&format!("notification.send:latency={latency}")).await;
        checkout_with_queued_email(&url).await;
        // Read after the stop: the count is made at the deadline, when nothing serves /metrics.
        let metrics = services[0].metrics().clone();
        stop(services, dir).await;
        assert_eq!(
            counter(&metrics, name),
            Some(dropped),
            "mail server latency {latency}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn span_values_past_the_length_limit_are_counted_and_one_at_it_is_not() {
    let (_guard, spans) = fleet_telemetry::testing::capture("api-gateway").unwrap();
    let (services, url, dir) = start().await;
    let limit = fleet_telemetry::limits::value_length_limit_from_env();
    let name = "fleet_span_attribute_values_truncated_total";
    let read = || counter(services[0].metrics(), name).unwrap();
    let before = read();
    let http = reqwest::Client::new();
    // A User-Agent is recorded whole on the server span: at the limit, then one character past.
    for agent in ["a".repeat(limit), "b".repeat(limit + 1)] {
        let status = http
            .get(format!("{url}/no-such-route"))
            .header("user-agent", agent)
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 404);
    }
    // The server span ends just after the answer is sent: wait (bounded) for both.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while spans.named("GET").len() + spans.named("GET /no-such-route").len() < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "server spans: {:?}",
            spans
                .spans()
                .iter()
                .map(|s| s.name.to_string())
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(read() - before, 1, "only the value one past the limit");
    stop(services, dir).await;
}

/// Every sampled span the process ends is counted once as ended and once as exported, so a
/// sink can be checked against its sources whatever the traces' shapes (the bench's delivery
/// rows do).
#[tokio::test(flavor = "multi_thread")]
async fn every_span_a_checkout_makes_is_counted_as_ended_and_exported() {
    let (_guard, spans) = fleet_telemetry::testing::capture("api-gateway").unwrap();
    let (services, url, dir) = start().await;
    checkout_with_queued_email(&url).await;
    // The email's spans end after the answer: wait (bounded) until it is in and nothing moves.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut last = 0;
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = spans.spans().len();
        if now == last && !spans.named("sendEmail").is_empty() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{now} spans");
        last = now;
    }
    let made = spans.spans().len() as u64;
    assert!(made >= 20, "a checkout is at least 20 spans, got {made}");
    let read = |name| counter(services[0].metrics(), name);
    assert_eq!(read("fleet_spans_ended_total"), Some(made));
    assert_eq!(read("fleet_spans_exported_total"), Some(made));
    assert_eq!(read("fleet_spans_export_failed_total"), Some(0));
    stop(services, dir).await;
}

/// notification sheds past its limit (here 1, with each email taking 100 ms), and the emails
/// that go out beside the replies are not bounded by the gateway's own limit: a shed email is
/// sent again after 100 ms and 200 ms (`EMAIL_ATTEMPTS` = 3), so two checkouts at once both get
/// their email. Two checkouts sent together only overlap their emails if they finish within
/// 100 ms of each other, which a loaded machine does not promise: pairs are sent (at most 5)
/// until one email has been retried, and every email of every pair must arrive.
#[tokio::test(flavor = "multi_thread")]
async fn an_email_shed_by_notification_is_sent_again_and_counted() {
    assert_eq!(api_gateway::server::EMAIL_ATTEMPTS, 3);
    let (services, url, dir) = start_with_notification_faults(
        "notification.shed:max_in_flight=1;notification.send:latency=100ms",
    )
    .await;
    let gateway_metric = |name| counter(services[0].metrics(), name);
    let outbox = notification::client::NotificationClient::connect_lazy(
        &services[2].url(),
        Duration::from_secs(3),
    )
    .unwrap();
    let mut pairs = 0;
    while pairs < 5 && gateway_metric("fleet_gateway_email_retries_total") == Some(0) {
        pairs += 1;
        tokio::join!(
            checkout_with_queued_email(&url),
            checkout_with_queued_email(&url)
        );
        let give_up = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            // This read is shed too while an email holds notification's one slot.
            let held = match outbox.list_outbox("ada@example.com", 100).await {
                Ok(held) => held.emails.len(),
                Err(status) if status.code() == tonic::Code::Unavailable => 0,
                Err(status) => panic!("{status:?}"),
            };
            if held == 2 * pairs {
                break;
            }
            assert_eq!(
                gateway_metric("fleet_gateway_emails_not_sent_total"),
                Some(0)
            );
            assert!(
                std::time::Instant::now() < give_up,
                "{held} of {} emails",
                2 * pairs
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    assert!(
        gateway_metric("fleet_gateway_email_retries_total").unwrap() >= 1,
        "no email retried in {pairs} pairs of checkouts"
    );
    assert_eq!(
        gateway_metric("fleet_gateway_emails_not_sent_total"),
        Some(0)
    );
    let shed = sample(
        &services[2].metrics().render(),
        "fleet_requests_shed_total",
        Some(("service", "notification")),
    );
    assert!(
        shed.unwrap_or(0) >= 1,
        "notification shed nothing: {shed:?}"
    );
    stop(services, dir).await;
}
