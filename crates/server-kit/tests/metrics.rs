//! A service built on the kit, in-process on port 0: each shared bound pushed to its edge and
//! one past, then `GET /metrics` read over HTTP.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::routing::post;
use fleet_server_kit::metrics::sample;
use fleet_server_kit::{ApiError, ApiJson, Metrics, Running};

async fn echo(
    headers: axum::http::HeaderMap,
    ApiJson(body): ApiJson<serde_json::Value>,
) -> Result<ApiJson<serde_json::Value>, ApiError> {
    fleet_server_kit::idempotency_key(&headers)?;
    Ok(ApiJson(body))
}

async fn start() -> Running {
    let listener = fleet_server_kit::bind("127.0.0.1:0", "kit-test")
        .await
        .unwrap();
    let app = axum::Router::new().route("/echo", post(echo));
    Running::spawn(
        listener,
        app,
        Metrics::new("kit-test"),
        fleet_server_kit::DEFAULT_MAX_IN_FLIGHT,
        false,
        async {},
    )
    .unwrap()
}

async fn counter(running: &Running, name: &str) -> u64 {
    let resp = reqwest::get(format!("{}/metrics", running.url()))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = resp.text().await.unwrap();
    sample(&text, name, Some(("service", "kit-test")))
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

/// A JSON string that is exactly `len` bytes on the wire.
fn json_of_len(len: usize) -> String {
    format!("\"{}\"", "a".repeat(len - 2))
}

async fn send(running: &Running, body: String, key: Option<&str>) -> u16 {
    let mut request = reqwest::Client::new()
        .post(format!("{}/echo", running.url()))
        .header("content-type", "application/json")
        .body(body);
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    request.send().await.unwrap().status().as_u16()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_at_64_kib_is_served_and_one_byte_more_is_counted() {
    let running = start().await;
    let name = "fleet_http_body_too_large_total";
    assert_eq!(counter(&running, name).await, 0);
    assert_eq!(send(&running, json_of_len(64 * 1024), None).await, 200);
    assert_eq!(
        counter(&running, name).await,
        0,
        "at the limit: not refused"
    );
    assert_eq!(send(&running, json_of_len(64 * 1024 + 1), None).await, 413);
    assert_eq!(counter(&running, name).await, 1, "one byte past: counted");
    assert_eq!(
        counter(&running, "fleet_http_json_refused_total").await,
        0,
        "a 413 is not a JSON refusal"
    );
    running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn json_refusals_are_counted_once_each() {
    let running = start().await;
    let name = "fleet_http_json_refused_total";
    assert_eq!(send(&running, "{\"ok\":1}".into(), None).await, 200);
    assert_eq!(counter(&running, name).await, 0);
    assert_eq!(send(&running, "{not json".into(), None).await, 400);
    assert_eq!(counter(&running, name).await, 1);
    let not_json = reqwest::Client::new()
        .post(format!("{}/echo", running.url()))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(not_json.status(), 415);
    assert_eq!(counter(&running, name).await, 2);
    running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idempotency_key_of_255_is_taken_and_256_is_counted() {
    let running = start().await;
    let name = "fleet_idempotency_key_refused_total";
    assert_eq!(
        send(&running, "1".into(), Some(&"k".repeat(255))).await,
        200
    );
    assert_eq!(counter(&running, name).await, 0, "at the limit");
    assert_eq!(
        send(&running, "1".into(), Some(&"k".repeat(256))).await,
        400
    );
    assert_eq!(counter(&running, name).await, 1, "one past");
    assert_eq!(send(&running, "1".into(), Some("")).await, 400);
    assert_eq!(counter(&running, name).await, 2, "empty");
    let text = reqwest::get(format!("{}/metrics", running.url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        sample(
            &text,
            "fleet_http_client_errors_total",
            Some(("code", "invalid_idempotency_key"))
        ),
        Some(2),
        "{text}"
    );
    running.shutdown().await.unwrap();
}
