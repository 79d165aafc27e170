//! The provider stand-in in-process on port 0, over real HTTP.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use payment_provider::Config;

async fn start() -> fleet_server_kit::Running {
    payment_provider::start(
        Config {
            listen_addr: "127.0.0.1:0".into(),
            latency: std::time::Duration::ZERO,
            max_in_flight: fleet_server_kit::DEFAULT_MAX_IN_FLIGHT,
        },
        fleet_faults::Faults::new(
            "payment-provider",
            payment_provider::server::FAULT_POINTS,
            false,
            false,
            None,
        ),
    )
    .await
    .unwrap()
}

async fn charge(url: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
    let resp = reqwest::Client::new()
        .post(format!("{url}/v1/charges"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or_default())
}

#[tokio::test]
async fn answers_charges_and_declines_as_stripe_does() {
    let provider = start().await;
    let url = provider.url();
    let (status, body) = charge(
        &url,
        serde_json::json!({"amount": 1299, "currency": "USD", "card_number": "4242424242424242"}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "succeeded");
    assert_eq!(body["currency"], "usd");
    assert!(body["id"].as_str().unwrap().starts_with("ch_"));

    let (status, body) = charge(
        &url,
        serde_json::json!({"amount": 1299, "currency": "usd", "card_number": "4000000000009995"}),
    )
    .await;
    assert_eq!(status, 402);
    assert_eq!(body["error"]["decline_code"], "insufficient_funds");

    let (status, body) = charge(
        &url,
        serde_json::json!({"amount": 0, "currency": "usd", "card_number": "4242424242424242"}),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "amount_too_small");

    let (status, _) = charge(&url, serde_json::json!({"amount": "lots"})).await;
    assert!((400..500).contains(&status), "{status}");
    provider.shutdown().await.unwrap();
}

async fn metric(url: &str, name: &str) -> u64 {
    let text = reqwest::get(format!("{url}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    fleet_server_kit::metrics::sample(&text, name, Some(("service", "payment-provider")))
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

#[tokio::test]
async fn idempotency_keys_past_255_and_bad_json_are_counted() {
    let provider = start().await;
    let url = provider.url();
    let ok =
        serde_json::json!({"amount": 1299, "currency": "usd", "card_number": "4242424242424242"});
    let keyed = |key: String| {
        reqwest::Client::new()
            .post(format!("{url}/v1/charges"))
            .header("idempotency-key", key)
            .json(&ok)
            .send()
    };
    let name = "fleet_idempotency_key_refused_total";
    assert_eq!(keyed("k".repeat(255)).await.unwrap().status(), 200);
    assert_eq!(metric(&url, name).await, 0, "at the bound");
    assert_eq!(keyed("k".repeat(256)).await.unwrap().status(), 400);
    assert_eq!(metric(&url, name).await, 1, "one past");
    let (status, _) = charge(&url, serde_json::json!({"amount": "lots"})).await;
    assert_eq!(status, 422);
    assert_eq!(metric(&url, "fleet_http_json_refused_total").await, 1);
    assert_eq!(
        metric(&url, "fleet_provider_idempotency_keys_forgotten_total").await,
        0
    );
    provider.shutdown().await.unwrap();
}
