//! Load shedding at its edge: a service built on the kit, in-process on port 0, with
//! `max_in_flight` requests held in flight; the next one is answered at once (503 `overloaded`
//! with `Retry-After`, or gRPC `UNAVAILABLE`), counted, and traced as an error.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use axum::routing::post;
use fleet_server_kit::metrics::sample;
use fleet_server_kit::{InFlightLimit, Metrics, Running};
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::Semaphore;

const LIMIT: usize = 2;

/// A service whose `POST /hold` waits until the test opens the gate.
async fn start(gate: Arc<Semaphore>) -> Running {
    start_limited(gate, LIMIT.into()).await
}

async fn start_limited(gate: Arc<Semaphore>, limit: InFlightLimit) -> Running {
    let listener = fleet_server_kit::bind("127.0.0.1:0", "kit-test")
        .await
        .unwrap();
    let app = axum::Router::new()
        .route(
            "/hold",
            post(move || {
                let gate = gate.clone();
                async move {
                    // One permit lets one request through, once (so a test opens the gate
                    // for exactly the requests it means to).
                    if let Ok(permit) = gate.acquire().await {
                        permit.forget();
                    }
                    "done"
                }
            }),
        )
        .merge(fleet_server_kit::health_router(None));
    Running::spawn(
        listener,
        app,
        Metrics::new("kit-test"),
        limit,
        true,
        async {},
    )
    .unwrap()
}

async fn series(running: &Running, name: &str) -> u64 {
    let text = reqwest::get(format!("{}/metrics", running.url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    sample(&text, name, Some(("service", "kit-test")))
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

/// Waits (bounded) until `n` requests are in flight, as the service counts them.
async fn until_in_flight(running: &Running, n: u64) {
    for _ in 0..200 {
        if series(running, "fleet_requests_in_flight").await == n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("never {n} requests in flight");
}

fn hold(client: &reqwest::Client, running: &Running) -> reqwest::RequestBuilder {
    client.post(format!("{}/hold", running.url()))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_limit_is_served_and_one_more_is_shed_at_once() {
    let (_guard, spans) = fleet_telemetry::testing::capture("kit-test").unwrap();
    let gate = Arc::new(Semaphore::new(0));
    let running = start(gate.clone()).await;
    let client = reqwest::Client::new();

    let held: Vec<_> = (0..LIMIT)
        .map(|_| tokio::spawn(hold(&client, &running).send()))
        .collect();
    until_in_flight(&running, LIMIT as u64).await;
    assert_eq!(series(&running, "fleet_requests_shed_total").await, 0);

    // One past the limit: answered now, not queued behind the held ones.
    let shed = tokio::time::timeout(Duration::from_secs(5), hold(&client, &running).send())
        .await
        .expect("a shed request is answered at once")
        .unwrap();
    assert_eq!(shed.status(), 503);
    assert_eq!(shed.headers()["retry-after"], "1");
    let body: serde_json::Value = shed.json().await.unwrap();
    assert_eq!(body["error"]["code"], "overloaded", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&format!("more than {LIMIT} requests in flight")),
        "{body}"
    );

    // A gRPC caller gets a gRPC answer: UNAVAILABLE, trailers-only.
    let grpc = hold(&client, &running)
        .header("content-type", "application/grpc")
        .send()
        .await
        .unwrap();
    assert_eq!(grpc.status(), 200);
    assert_eq!(grpc.headers()["grpc-status"], "14");
    assert_eq!(series(&running, "fleet_requests_shed_total").await, 2);

    // Probes are never shed: a busy service is not a dead one.
    let health = reqwest::get(format!("{}/healthz", running.url()))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);

    // Open the gate: the held two finish, and the slots are free again.
    gate.add_permits(LIMIT + 1);
    for held in held {
        assert_eq!(held.await.unwrap().unwrap().status(), 200);
    }
    until_in_flight(&running, 0).await;
    assert_eq!(hold(&client, &running).send().await.unwrap().status(), 200);
    assert_eq!(series(&running, "fleet_requests_shed_total").await, 2);
    running.shutdown().await.unwrap();

    // The shed requests are server spans marked as errors, `error.type=overloaded`; the
    // served ones are not errors.
    let attr = |span: &opentelemetry_sdk::trace::SpanData, k: &str| {
        span.attributes
            .iter()
            .find(|kv| kv.key.as_str() == k)
            .map(|kv| kv.value.to_string())
    };
    let is_error = |s: &&opentelemetry_sdk::trace::SpanData| {
        matches!(s.status, opentelemetry::trace::Status::Error { .. })
    };
    let server = spans.named("POST /hold");
    assert_eq!(server.len(), LIMIT + 1 + 1, "every HTTP request is a span");
    let (errors, ok): (Vec<_>, Vec<_>) = server.iter().partition(is_error);
    assert_eq!(errors.len(), 1);
    assert_eq!(attr(errors[0], "error.type").as_deref(), Some("overloaded"));
    assert_eq!(
        attr(errors[0], "http.response.status_code").as_deref(),
        Some("503")
    );
    assert_eq!(
        attr(errors[0], "http.response.header.retry-after").as_deref(),
        Some("1")
    );
    assert_eq!(ok.len(), LIMIT + 1);
    assert!(ok.iter().all(|s| attr(s, "error.type").is_none()));
    // The gRPC one: an RPC span (named by its path), UNAVAILABLE, the same error.type.
    let rpc = spans.named("hold");
    assert_eq!(rpc.len(), 1);
    assert!(is_error(&&rpc[0]));
    assert_eq!(attr(&rpc[0], "error.type").as_deref(), Some("overloaded"));
    assert_eq!(
        attr(&rpc[0], "rpc.status_code").as_deref(),
        Some("UNAVAILABLE")
    );
}

/// Holds `n` requests and checks the next one is shed with `limit` in its message.
async fn hold_n_then_shed(
    client: &reqwest::Client,
    running: &Running,
    n: usize,
    limit: usize,
) -> Vec<tokio::task::JoinHandle<reqwest::Result<reqwest::Response>>> {
    let held: Vec<_> = (0..n)
        .map(|_| tokio::spawn(hold(client, running).send()))
        .collect();
    until_in_flight(running, n as u64).await;
    let shed = tokio::time::timeout(Duration::from_secs(5), hold(client, running).send())
        .await
        .expect("a shed request is answered at once")
        .unwrap();
    assert_eq!(shed.status(), 503);
    let body: serde_json::Value = shed.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&format!("more than {limit} requests in flight")),
        "{body}"
    );
    held
}

#[tokio::test(flavor = "multi_thread")]
async fn a_limit_lowered_at_run_time_sheds_past_it_and_never_raises_the_start_up_one() {
    // 0: not lowered; otherwise the lowered limit, as a fault point would give it.
    let lowered = Arc::new(AtomicUsize::new(0));
    let hook = lowered.clone();
    let limit = InFlightLimit::new(LIMIT).lowered_by(move || {
        let n = hook.load(Ordering::SeqCst);
        (n > 0).then_some(n)
    });
    let gate = Arc::new(Semaphore::new(0));
    let running = start_limited(gate.clone(), limit).await;
    let client = reqwest::Client::new();

    // Lowered to 1: one held, the second shed.
    lowered.store(1, Ordering::SeqCst);
    let held = hold_n_then_shed(&client, &running, 1, 1).await;
    assert_eq!(series(&running, "fleet_requests_shed_total").await, 1);
    gate.add_permits(1);
    for held in held {
        assert_eq!(held.await.unwrap().unwrap().status(), 200);
    }
    until_in_flight(&running, 0).await;

    // "Lowered" to 100 is no raise: the start-up 2 still holds.
    lowered.store(100, Ordering::SeqCst);
    let held = hold_n_then_shed(&client, &running, LIMIT, LIMIT).await;
    assert_eq!(series(&running, "fleet_requests_shed_total").await, 2);
    gate.add_permits(LIMIT);
    for held in held {
        assert_eq!(held.await.unwrap().unwrap().status(), 200);
    }
    until_in_flight(&running, 0).await;

    // Back to none: two served at once again.
    lowered.store(0, Ordering::SeqCst);
    gate.add_permits(LIMIT);
    let (a, b) = tokio::join!(
        hold(&client, &running).send(),
        hold(&client, &running).send()
    );
    assert_eq!(a.unwrap().status(), 200);
    assert_eq!(b.unwrap().status(), 200);
    assert_eq!(series(&running, "fleet_requests_shed_total").await, 2);
    running.shutdown().await.unwrap();
}
