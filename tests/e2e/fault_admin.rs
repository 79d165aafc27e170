//! The admin API guards its faults; baggage faults work only when switched on.

use crate::support::*;

async fn admin(
    method: reqwest::Method,
    url: &str,
    token: Option<&str>,
    body: Option<(&str, &str)>,
) -> Reply {
    let mut req = reqwest::Client::new().request(method, format!("{url}/admin/faults"));
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    if let Some((content_type, body)) = body {
        req = req
            .header("content-type", content_type)
            .body(body.to_owned());
    }
    let resp = req.send().await.expect("admin request");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.json().await.unwrap_or(serde_json::Value::Null);
    Reply {
        status,
        headers,
        body,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_api_refuses_bad_tokens_and_bad_specs_and_changes_nothing() {
    let fleet = Fleet::start(FleetOptions {
        database_url: None,
        env: vec![("FLEET_ADMIN_TOKEN".into(), "s3cret".into())],
    })
    .await;
    let order_api = fleet.urls["order-api"].clone();
    use reqwest::Method;

    let armed = admin(
        Method::PUT,
        &order_api,
        Some("s3cret"),
        Some(("text/plain", "order.db:latency=50ms")),
    )
    .await;
    assert_eq!(armed.status, 200, "{}", armed.body);
    assert_eq!(armed.body["faults"]["order.db"]["latency"], "50ms");

    type Refusal<'a> = (Option<&'a str>, Option<(&'a str, &'a str)>, u16, &'a str);
    let refusals: Vec<Refusal> = vec![
        (
            None,
            Some(("text/plain", "order.db:latency=1s")),
            401,
            "missing_token",
        ),
        (
            Some("wrong"),
            Some(("text/plain", "order.db:latency=1s")),
            401,
            "invalid_token",
        ),
        (
            Some("s3cret"),
            Some(("text/plain", "order.db:latency")),
            422,
            "invalid_fault_spec",
        ),
        (
            Some("s3cret"),
            Some(("text/plain", "order.db:latency=2h")),
            422,
            "invalid_fault_spec",
        ),
        (
            Some("s3cret"),
            Some(("text/plain", "order.db:error=200")),
            422,
            "invalid_fault_spec",
        ),
        (
            Some("s3cret"),
            Some(("text/plain", "order.db:latency=1s,p=7")),
            422,
            "invalid_fault_spec",
        ),
        (
            Some("s3cret"),
            Some(("text/plain", "payment.provider:latency=1s")),
            422,
            "invalid_fault_spec",
        ),
        (
            Some("s3cret"),
            Some(("text/plain", "nowhere:latency=1s")),
            422,
            "invalid_fault_spec",
        ),
        (
            Some("s3cret"),
            Some((
                "application/json",
                "{\"order.db\": {\"latency\": \"soon\"}}",
            )),
            400,
            "invalid_fault_spec",
        ),
        (
            Some("s3cret"),
            Some(("application/json", "[1,2]")),
            400,
            "invalid_fault_spec",
        ),
    ];
    for (token, body, status, code) in refusals {
        let reply = admin(Method::PUT, &order_api, token, body).await;
        assert_eq!(reply.status, status, "{body:?}: {}", reply.body);
        assert_eq!(reply.body["error"]["code"], code, "{body:?}");
        assert!(
            reply.body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
    }
    assert_eq!(admin(Method::GET, &order_api, None, None).await.status, 401);
    assert_eq!(
        admin(Method::DELETE, &order_api, Some("nope"), None)
            .await
            .status,
        401
    );

    // Nothing changed: still exactly what was armed first.
    let now = admin(Method::GET, &order_api, Some("s3cret"), None).await;
    assert_eq!(
        now.body["faults"],
        serde_json::json!({"order.db": {"latency": "50ms", "p": 1.0}})
    );

    // JSON works as well as the grammar; DELETE clears.
    let json = admin(
        Method::PUT,
        &order_api,
        Some("s3cret"),
        Some((
            "application/json",
            r#"{"order.lookup": {"mode": "n_plus_one", "p": 0.5}}"#,
        )),
    )
    .await;
    assert_eq!(json.status, 200, "{}", json.body);
    assert_eq!(json.body["faults"]["order.lookup"]["mode"], "n_plus_one");
    let cleared = admin(Method::DELETE, &order_api, Some("s3cret"), None).await;
    assert_eq!(cleared.body["faults"], serde_json::json!({}));
    fleet.stop().await;
}

async fn checkout_with_baggage_fault(fleet: &Fleet) -> Vec<Span> {
    let reply = post_json(
        &format!("{}/checkout", fleet.gateway()),
        &order_body("bag@example.com", &[("COFFEE-250G", 1)], CARD_OK),
        &[("baggage", "fleet.fault=order.lookup%3Amode%3Dn_plus_one")],
    )
    .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    wait_for_trace(fleet.desk(), &reply.trace_id(), 20).await
}

#[tokio::test(flavor = "multi_thread")]
async fn baggage_faults_are_ignored_unless_enabled() {
    let off = Fleet::start(FleetOptions::default()).await;
    let spans = checkout_with_baggage_fault(&off).await;
    assert_eq!(spans.len(), 20, "baggage fault ignored: healthy shape");
    assert!(
        spans
            .iter()
            .all(|s| !s.events.contains(&"fault.injected".to_owned()))
    );
    off.stop().await;

    let on = Fleet::start(FleetOptions {
        database_url: None,
        env: vec![("FLEET_BAGGAGE_FAULTS".into(), "true".into())],
    })
    .await;
    let spans = checkout_with_baggage_fault(&on).await;
    let selects = spans
        .iter()
        .filter(|s| s.name == "SELECT order_items")
        .count();
    assert_eq!(
        selects,
        2,
        "n+1 for one item: the list and the item:\n{}",
        describe(&spans)
    );
    let create = find(&spans, "order-api", "createOrder");
    assert!(create.events.contains(&"fault.injected".to_owned()));
    on.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn fleet_faults_at_startup_and_quiz_mode_hides_the_event() {
    let fleet = Fleet::start(FleetOptions {
        database_url: None,
        env: vec![
            (
                "FLEET_FAULTS".into(),
                "order.lookup:mode=n_plus_one;payment.provider:latency=300ms".into(),
            ),
            ("FLEET_QUIZ_MODE".into(), "true".into()),
        ],
    })
    .await;
    let reply = post_json(
        &format!("{}/checkout", fleet.gateway()),
        &order_body("q@example.com", &[("COFFEE-250G", 1)], CARD_OK),
        &[],
    )
    .await;
    assert_eq!(reply.status, 201);
    let spans = wait_for_trace(fleet.desk(), &reply.trace_id(), 21).await;
    assert_eq!(
        spans
            .iter()
            .filter(|s| s.name == "SELECT order_items")
            .count(),
        2,
        "order-api took its fault from FLEET_FAULTS"
    );
    assert!(
        find(&spans, "payment-api", "POST /v1/charges").duration_ms() >= 300.0,
        "the provider took its own"
    );
    assert!(
        spans
            .iter()
            .all(|s| !s.events.contains(&"fault.injected".to_owned())),
        "quiz mode leaves no fault.injected evidence"
    );
    fleet.stop().await;
}
