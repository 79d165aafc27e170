//! Health, graceful shutdown, and the spans that must survive it.

use std::time::Duration;

use crate::support::*;

#[tokio::test(flavor = "multi_thread")]
async fn grpc_services_answer_grpc_health_and_http_probes() {
    let fleet = Fleet::start(FleetOptions::default()).await;
    for service in ["payment-api", "notification"] {
        let url = fleet.urls[service].clone();
        let channel = tonic::transport::Endpoint::from_shared(url.clone())
            .expect("endpoint")
            .connect()
            .await
            .expect("connect");
        let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
        let reply = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: String::new(),
            })
            .await
            .expect("grpc.health.v1 Check")
            .into_inner();
        assert_eq!(
            reply.status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32,
            "{service}"
        );
        assert_eq!(
            get(&format!("{url}/healthz")).await.status,
            200,
            "{service} /healthz"
        );
        assert_eq!(
            get(&format!("{url}/readyz")).await.status,
            200,
            "{service} /readyz"
        );
    }
    for service in ["api-gateway", "order-api"] {
        let url = &fleet.urls[service];
        assert_eq!(get(&format!("{url}/healthz")).await.status, 200);
        let ready = get(&format!("{url}/readyz")).await;
        assert_eq!(
            (ready.status, ready.body["status"].as_str()),
            (200, Some("ready"))
        );
    }
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_drains_the_request_in_flight_and_flushes_its_spans() {
    // The desk lives in this test so it outlives the fleet; nothing is exported before shutdown.
    let desk = trace_desk::start(trace_desk::DeskConfig::ephemeral(100_000))
        .await
        .expect("desk");
    let fleet = Fleet::start(FleetOptions {
        database_url: None,
        env: vec![
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT".into(),
                format!("http://{}", desk.otlp_http_addr()),
            ),
            ("OTEL_BSP_SCHEDULE_DELAY".into(), "600000".into()),
            ("PROVIDER_LATENCY_MS".into(), "1500".into()),
        ],
    })
    .await;
    let checkout = format!("{}/checkout", fleet.gateway());
    let in_flight = tokio::spawn(async move {
        post_json(
            &checkout,
            &order_body("late@example.com", &[("DRIPPER-V60", 1)], CARD_OK),
            &[],
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    fleet.stop().await;
    let reply = in_flight.await.expect("join");
    assert_eq!(
        reply.status, 201,
        "the in-flight checkout finished: {}",
        reply.body
    );

    let desk_url = format!("http://{}", desk.api_addr());
    let spans = wait_for_trace(&desk_url, &reply.trace_id(), 20).await;
    let services: std::collections::BTreeSet<_> =
        spans.iter().map(|s| s.service.as_str()).collect();
    assert_eq!(
        services.len(),
        fleet::topology::traced().count(),
        "every service flushed on shutdown: {services:?}"
    );
    desk.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_fleet_leaves_no_orphans() {
    let mut fleet = Fleet::start(FleetOptions::default()).await;
    let pids = fleet.component_pids();
    assert_eq!(
        pids.len(),
        fleet::topology::COMPONENTS.len(),
        "desk, provider and four services"
    );
    fleet.kill_hard().await;
    let alive = |pid: &u32| {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
            stat.split_whitespace()
                .nth(2)
                .is_none_or(|state| state != "Z")
        })
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while pids.iter().any(alive) {
        assert!(
            std::time::Instant::now() < deadline,
            "orphans still running: {:?}",
            pids.iter().filter(|p| alive(p)).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `fleet up` gives the desk `DESK_DATA_DIR=DATA_DIR/desk`: a checkout's trace survives a restart
/// of the whole fleet; with `DESK_DATA_DIR` empty the desk keeps nothing and leaves the file alone.
#[tokio::test(flavor = "multi_thread")]
async fn the_desk_keeps_its_traces_across_a_restart_of_the_fleet() {
    // A data dir of the test's own (FLEET_DATA_DIR overrides the harness's): each `Fleet`
    // removes only its own when dropped, and this one must outlive three fleets.
    let dir = std::env::temp_dir().join(format!(
        "fleet-e2e-desk-persist-{}",
        uuid::Uuid::new_v4().simple()
    ));
    let options = |memory_only: bool| {
        let mut env = vec![(
            "FLEET_DATA_DIR".to_owned(),
            dir.to_string_lossy().into_owned(),
        )];
        if memory_only {
            env.push(("DESK_DATA_DIR".to_owned(), String::new()));
        }
        FleetOptions {
            database_url: None,
            env,
        }
    };
    let span_ids = |spans: &[Span]| {
        spans
            .iter()
            .map(|s| s.span_id.clone())
            .collect::<std::collections::BTreeSet<_>>()
    };

    let fleet = Fleet::start(options(false)).await;
    assert!(
        fleet
            .output()
            .iter()
            .any(|l| l.contains(&format!("traces kept in {}", dir.join("desk").display()))),
        "{:?}",
        fleet.output()
    );
    let reply = post_json(
        &format!("{}/checkout", fleet.gateway()),
        &order_body("kept@example.com", &[("DRIPPER-V60", 1)], CARD_OK),
        &[],
    )
    .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let trace_id = reply.trace_id();
    let before = wait_for_trace(fleet.desk(), &trace_id, 20).await;
    fleet.stop().await;
    assert!(
        dir.join("desk")
            .join(trace_desk::persist::DB_FILE)
            .is_file()
    );

    let fleet = Fleet::start(options(true)).await;
    assert!(
        fleet
            .output()
            .iter()
            .any(|l| l.contains("traces in memory only"))
    );
    let gone = get(&format!("{}/api/traces/{trace_id}", fleet.desk())).await;
    assert_eq!(gone.status, 404, "a memory-only desk starts empty");
    fleet.stop().await;

    let fleet = Fleet::start(options(false)).await;
    let after = wait_for_trace(fleet.desk(), &trace_id, before.len()).await;
    assert_eq!(span_ids(&after), span_ids(&before));
    fleet.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}
