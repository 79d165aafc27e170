//! Telemetry never hurts a request; an unreachable dependency is named.

use std::time::{Duration, Instant};

use crate::support::*;

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_otlp_endpoint_does_not_slow_or_fail_checkouts() {
    // Port 1 on loopback: nothing listens, so every export fails (after its own timeout).
    let fleet = Fleet::start(FleetOptions {
        database_url: None,
        env: vec![
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT".into(),
                "http://127.0.0.1:1".into(),
            ),
            ("OTEL_EXPORTER_OTLP_TIMEOUT".into(), "10000".into()),
        ],
    })
    .await;
    assert!(
        !fleet.urls.contains_key("desk"),
        "no desk when the endpoint points elsewhere"
    );
    let checkout = format!("{}/checkout", fleet.gateway());
    let mut slowest = Duration::ZERO;
    for i in 0..30 {
        let started = Instant::now();
        let reply = post_json(
            &checkout,
            &order_body(&format!("u{i}@example.com"), &[("FILTER-V60", 1)], CARD_OK),
            &[],
        )
        .await;
        slowest = slowest.max(started.elapsed());
        assert_eq!(reply.status, 201, "{}", reply.body);
    }
    // Not a speed target: the export timeout is 10 s, so a request that waited on it would show.
    assert!(
        slowest < Duration::from_secs(3),
        "a checkout took {slowest:?} with OTLP down"
    );
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn gateway_names_an_unreachable_order_api() {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_fleet"))
        .args(["run", "api-gateway"])
        .env("FLEET_ANNOUNCE", "1")
        .env("LISTEN_ADDR", "127.0.0.1:0")
        .env("ORDER_API_URL", "http://127.0.0.1:1")
        .env("OTEL_SDK_DISABLED", "true")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start api-gateway");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
    let addr = loop {
        let line = lines
            .next_line()
            .await
            .expect("read")
            .expect("api-gateway exited");
        if let Some(addr) = line.strip_prefix("fleet:listening api-gateway ") {
            break addr.to_owned();
        }
    };
    let reply = post_json(
        &format!("http://{addr}/checkout"),
        &order_body("a@example.com", &[("COFFEE-250G", 1)], CARD_OK),
        &[],
    )
    .await;
    assert_eq!(reply.status, 503, "{}", reply.body);
    assert_eq!(reply.body["error"]["dependency"], "order-api");
    assert_eq!(reply.body["error"]["code"], "upstream_unavailable");
    let reply = get(&format!("http://{addr}/products")).await;
    assert_eq!(reply.status, 503);
    let _ = child.kill().await;
}
