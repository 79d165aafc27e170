//! The standard OTEL_* variables mean what the specification says.

use crate::support::*;

const TRACE: &str = "5bf92f3577b34da6a3ce929d0e0e4736";

#[tokio::test(flavor = "multi_thread")]
async fn sdk_disabled_exports_nothing_but_still_passes_context_on() {
    let fleet = Fleet::start(FleetOptions {
        database_url: None,
        env: vec![("OTEL_SDK_DISABLED".into(), "true".into())],
    })
    .await;
    let checkout = format!("{}/checkout", fleet.gateway());
    let reply = post_json(
        &checkout,
        &order_body("d@example.com", &[("COFFEE-250G", 1)], CARD_OK),
        &[],
    )
    .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let reply = post_json(
        &checkout,
        &order_body("d@example.com", &[("COFFEE-250G", 1)], CARD_OK),
        &[("traceparent", &format!("00-{TRACE}-00f067aa0ba902b7-01"))],
    )
    .await;
    assert_eq!(reply.status, 201);
    assert_eq!(
        reply.trace_id(),
        TRACE,
        "the caller's trace id still comes back"
    );
    // Give a batch exporter ample time (the fleet's tests export every 100 ms).
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert!(
        desk_trace_ids(fleet.desk()).await.is_empty(),
        "a disabled SDK exported spans"
    );
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn parent_based_ratio_zero_samples_only_what_the_caller_sampled() {
    let fleet = Fleet::start(FleetOptions {
        database_url: None,
        env: vec![
            (
                "OTEL_TRACES_SAMPLER".into(),
                "parentbased_traceidratio".into(),
            ),
            ("OTEL_TRACES_SAMPLER_ARG".into(), "0".into()),
            (
                "OTEL_RESOURCE_ATTRIBUTES".into(),
                "deployment.environment.name=e2e,service.namespace=fleet".into(),
            ),
        ],
    })
    .await;
    let checkout = format!("{}/checkout", fleet.gateway());
    for _ in 0..3 {
        let reply = post_json(
            &checkout,
            &order_body("e@example.com", &[("COFFEE-250G", 1)], CARD_OK),
            &[],
        )
        .await;
        assert_eq!(reply.status, 201);
    }
    let reply = post_json(
        &checkout,
        &order_body("e@example.com", &[("COFFEE-250G", 1)], CARD_OK),
        &[("traceparent", &format!("00-{TRACE}-00f067aa0ba902b7-01"))],
    )
    .await;
    assert_eq!(reply.status, 201);
    // The sampled caller's trace is kept whole, across every service, despite a ratio of 0.
    let spans = wait_for_trace(fleet.desk(), TRACE, 20).await;
    let services: std::collections::BTreeSet<_> =
        spans.iter().map(|s| s.service.as_str()).collect();
    assert_eq!(services.len(), 4, "{services:?}");
    assert_eq!(
        desk_trace_ids(fleet.desk()).await,
        vec![TRACE.to_owned()],
        "root traces at ratio 0 were kept"
    );

    // Resource: our service name per process, the variables' attributes, version and instance id.
    let trace = get(&format!("{}/api/traces/{TRACE}", fleet.desk())).await;
    for batch in trace.body["batches"].as_array().expect("batches") {
        let attrs: std::collections::HashMap<String, String> = batch["resource"]["attributes"]
            .as_array()
            .expect("resource attributes")
            .iter()
            .map(|kv| {
                let v = kv["value"]
                    .as_object()
                    .and_then(|o| o.values().next())
                    .cloned()
                    .unwrap_or_default();
                (
                    kv["key"].as_str().unwrap_or_default().to_owned(),
                    v.as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| v.to_string()),
                )
            })
            .collect();
        assert_eq!(
            attrs.get("deployment.environment.name").map(String::as_str),
            Some("e2e")
        );
        assert_eq!(
            attrs.get("service.namespace").map(String::as_str),
            Some("fleet")
        );
        assert!(
            attrs.contains_key("service.version") && attrs.contains_key("service.instance.id"),
            "{attrs:?}"
        );
        assert_eq!(
            attrs.get("telemetry.sdk.language").map(String::as_str),
            Some("rust")
        );
    }
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn json_logs_carry_the_trace_id() {
    let fleet = Fleet::start(FleetOptions {
        database_url: None,
        env: vec![("LOG_FORMAT".into(), "json".into())],
    })
    .await;
    let reply = post_json(
        &format!("{}/checkout", fleet.gateway()),
        &order_body("f@example.com", &[("COFFEE-250G", 1)], CARD_OK),
        &[],
    )
    .await;
    assert_eq!(reply.status, 201);
    let trace_id = reply.trace_id();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let line = loop {
        let found = fleet.output().into_iter().find_map(|l| {
            let (service, json) = l.split_once(" | ")?;
            let v: serde_json::Value = serde_json::from_str(json).ok()?;
            (service.trim() == "notification" && v["trace_id"] == trace_id.as_str()).then_some(v)
        });
        if let Some(v) = found {
            break v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no notification log line with trace id {trace_id}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(line["message"], "email sent");
    assert_eq!(line["span_id"].as_str().map(str::len), Some(16));
    assert!(line["timestamp"].is_string() && line["level"] == "INFO");
    // Every line a child printed is JSON: none from a dependency's stray println! (the
    // `evaluating event with level INFO` that tracing-opentelemetry 0.34.0 printed per event).
    let children: Vec<String> = fleet
        .output()
        .into_iter()
        .filter_map(|l| Some(l.split_once(" | ")?.1.to_owned()))
        .collect();
    assert!(children.len() >= 5, "too few child lines: {children:?}");
    for l in &children {
        assert!(
            serde_json::from_str::<serde_json::Value>(l).is_ok(),
            "a child printed a line that is not JSON: {l:?}"
        );
    }
    fleet.stop().await;
}
