//! The whole checkout path in-process on port 0: gateway, order-api (SQLite), payment-api, the
//! provider stand-in and notification.

use std::time::Duration;

use fleet_server_kit::Running;

pub fn none(s: &str, points: &'static [fleet_faults::FaultPoint]) -> fleet_faults::Faults {
    fleet_faults::Faults::new(s, points, false, false, None)
}

pub async fn start() -> (Vec<Running>, String, std::path::PathBuf) {
    start_with(none("notification", notification::server::FAULT_POINTS)).await
}

/// [`start`], with notification's faults given (a slow mail server, say). The gateway is first.
pub async fn start_with(
    notification_faults: fleet_faults::Faults,
) -> (Vec<Running>, String, std::path::PathBuf) {
    let provider = payment_provider::start(
        payment_provider::Config {
            listen_addr: "127.0.0.1:0".into(),
            latency: Duration::ZERO,
            max_in_flight: fleet_server_kit::DEFAULT_MAX_IN_FLIGHT,
        },
        none("payment-provider", payment_provider::server::FAULT_POINTS),
    )
    .await
    .unwrap();
    let payments = payment_api::start(
        payment_api::Config {
            listen_addr: "127.0.0.1:0".into(),
            provider_url: provider.url(),
            provider_timeout: Duration::from_secs(5),
            max_in_flight: fleet_server_kit::DEFAULT_MAX_IN_FLIGHT,
        },
        none("payment-api", payment_api::server::FAULT_POINTS),
    )
    .await
    .unwrap();
    let notification = notification::start(
        notification::Config {
            listen_addr: "127.0.0.1:0".into(),
            outbox_capacity: 100,
            outbox_max_bytes: 1 << 20,
            max_in_flight: fleet_server_kit::DEFAULT_MAX_IN_FLIGHT,
        },
        notification_faults,
    )
    .await
    .unwrap();
    let dir = std::env::temp_dir().join(format!("gateway-test-{}", uuid::Uuid::new_v4().simple()));
    let orders = order_api::start(
        order_api::Config {
            listen_addr: "127.0.0.1:0".into(),
            database_url: None,
            database_max_connections: 2,
            sqlite_path: dir.join("orders.sqlite"),
            payment_api_addr: payments.url(),
            payment_timeout: Duration::from_secs(5),
            pending_bound: Duration::from_secs(30),
            reconcile_interval: Duration::from_secs(3600),
            max_in_flight: fleet_server_kit::DEFAULT_MAX_IN_FLIGHT,
        },
        none("order-api", order_api::server::FAULT_POINTS),
    )
    .await
    .unwrap();
    let gateway = api_gateway::start(
        api_gateway::Config {
            listen_addr: "127.0.0.1:0".into(),
            order_api_url: orders.url(),
            order_api_timeout: Duration::from_secs(10),
            notification_addr: notification.url(),
            notification_timeout: Duration::from_secs(3),
            max_in_flight: fleet_server_kit::DEFAULT_MAX_IN_FLIGHT,
        },
        none("api-gateway", api_gateway::server::FAULT_POINTS),
    )
    .await
    .unwrap();
    let url = gateway.url();
    (
        vec![gateway, orders, notification, payments, provider],
        url,
        dir,
    )
}

pub async fn stop(services: Vec<Running>, dir: std::path::PathBuf) {
    for s in services {
        s.shutdown().await.unwrap();
    }
    let _ = std::fs::remove_dir_all(dir);
}

pub fn checkout_body() -> serde_json::Value {
    serde_json::json!({
        "customer_email": "ada@example.com",
        "items": [{"sku": "COFFEE-250G", "quantity": 1}],
        "card_number": "4242424242424242",
    })
}

/// The fleet with `spec` (the `FLEET_FAULTS` grammar) armed on notification.
#[allow(dead_code)] // this module is compiled into every test binary; service.rs uses it
pub async fn start_with_notification_faults(
    spec: &str,
) -> (Vec<Running>, String, std::path::PathBuf) {
    let faults = none("notification", notification::server::FAULT_POINTS);
    faults
        .replace(fleet_faults::parse_faults(spec).unwrap())
        .unwrap();
    start_with(faults).await
}

/// One checkout, answered before its confirmation email goes out.
#[allow(dead_code)] // as above
pub async fn checkout_with_queued_email(url: &str) {
    let answer: serde_json::Value = reqwest::Client::new()
        .post(format!("{url}/checkout"))
        .json(&checkout_body())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["email"], "queued", "{answer}");
}
