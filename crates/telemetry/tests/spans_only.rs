//! The OpenTelemetry layer sees spans, never log events: events inside a span neither become
//! span events nor leave later spans unrecorded, and no span carries `otel.tracing_event_count`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[tokio::test(flavor = "multi_thread")]
async fn log_events_inside_spans_leave_spans_whole() {
    let (_guard, captured) = fleet_telemetry::testing::capture("telemetry-test").unwrap();
    {
        let first = tracing::info_span!("first", app.thing = 1);
        let _entered = first.enter();
        tracing::info!("a log line inside a span");
        tracing::error!(error = "boom", "an error log line inside a span");
    }
    {
        let second = tracing::info_span!("second");
        let _entered = second.enter();
        tracing::warn!("another");
    }
    // An `enabled!` check is a filter pass with no event after it (sqlx's PostgreSQL driver makes
    // such checks); the span after it must still be recorded.
    for _ in 0..3 {
        let _ = tracing::enabled!(tracing::Level::INFO);
        tracing::info_span!("after_check").in_scope(|| {});
    }
    assert_eq!(
        captured.named("after_check").len(),
        3,
        "spans after an enabled! check were dropped"
    );
    let first = captured.named("first");
    let second = captured.named("second");
    assert_eq!(first.len(), 1, "{:?}", captured.spans());
    assert_eq!(second.len(), 1, "a span after a filtered event was lost");
    for span in first.iter().chain(&second) {
        assert!(span.events.is_empty(), "log events became span events");
        assert!(
            span.attributes
                .iter()
                .all(|kv| kv.key.as_str() != "otel.tracing_event_count"),
            "{:?}",
            span.attributes
        );
    }
    assert!(
        first[0]
            .attributes
            .iter()
            .any(|kv| kv.key.as_str() == "app.thing")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn long_attribute_values_are_cut_at_the_limit() {
    let (_guard, captured) = fleet_telemetry::testing::capture("telemetry-test").unwrap();
    let limit = fleet_telemetry::limits::DEFAULT_VALUE_LENGTH_LIMIT;
    let at_limit = "a".repeat(limit);
    let over = "b".repeat(limit * 1000);
    tracing::info_span!("limited", app.at = %at_limit, app.over = %over).in_scope(|| {});
    let span = &captured.named("limited")[0];
    let get = |k: &str| {
        span.attributes
            .iter()
            .find(|kv| kv.key.as_str() == k)
            .map(|kv| kv.value.to_string())
            .unwrap()
    };
    assert_eq!(
        get("app.at").len(),
        limit,
        "a value at the limit is kept whole"
    );
    assert_eq!(get("app.over").len(), limit);
}
