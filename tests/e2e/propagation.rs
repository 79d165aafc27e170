//! W3C trace context and baggage from an outside caller.

use crate::support::*;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";

#[tokio::test(flavor = "multi_thread")]
async fn callers_context_is_continued_and_baggage_reaches_payment_api() {
    let db = TestDb::create().await;
    let fleet = Fleet::on_postgres(&db).await;
    let checkout = format!("{}/checkout", fleet.gateway());

    // A sampled parent: same trace id, our root is its child, baggage arrives two hops down.
    let reply = post_json(
        &checkout,
        &order_body("grace@example.com", &[("TEA-SENCHA", 1)], CARD_OK),
        &[
            ("traceparent", &format!("00-{TRACE}-{PARENT}-01")),
            (
                "baggage",
                "session.id=s-1234,user.id=grace,secret=not-for-spans",
            ),
        ],
    )
    .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert_eq!(reply.trace_id(), TRACE);
    let spans = wait_for_trace(fleet.desk(), TRACE, 20).await;
    let root = find(&spans, "api-gateway", "POST /checkout");
    assert_eq!(root.parent_span_id.as_deref(), Some(PARENT));
    let charge_server = find(&spans, "payment-api", "payment.v1.PaymentService/Charge");
    assert_eq!(charge_server.kind, "SPAN_KIND_SERVER");
    assert_eq!(
        charge_server.attr("session.id").as_deref(),
        Some("s-1234"),
        "baggage at payment-api"
    );
    assert_eq!(charge_server.attr("user.id").as_deref(), Some("grace"));
    assert_eq!(
        charge_server.attr("secret"),
        None,
        "only allow-listed baggage becomes attributes"
    );

    // Not sampled upstream: the request works, nothing is exported for that trace.
    let unsampled = "0af7651916cd43dd8448eb211c80319c";
    let reply = post_json(
        &checkout,
        &order_body("grace@example.com", &[("TEA-SENCHA", 1)], CARD_OK),
        &[(
            "traceparent",
            &format!("00-{unsampled}-b7ad6b7169203331-00"),
        )],
    )
    .await;
    assert_eq!(reply.status, 201);
    assert_eq!(
        reply.trace_id(),
        unsampled,
        "the context still flows, unsampled"
    );

    // Malformed: a fresh trace, and the request still succeeds.
    let reply = post_json(
        &checkout,
        &order_body("grace@example.com", &[("TEA-SENCHA", 1)], CARD_OK),
        &[("traceparent", "00-zzzz-not-a-traceparent-01")],
    )
    .await;
    assert_eq!(reply.status, 201);
    let fresh = reply.trace_id();
    assert_ne!(fresh, TRACE);
    assert_ne!(fresh, unsampled);
    let spans = wait_for_trace(fleet.desk(), &fresh, 20).await;
    assert!(
        find(&spans, "api-gateway", "POST /checkout")
            .parent_span_id
            .is_none()
    );

    // By now the unsampled checkout's spans would have been exported long since.
    let ids = desk_trace_ids(fleet.desk()).await;
    assert!(
        !ids.iter().any(|id| id == unsampled),
        "unsampled trace was exported: {ids:?}"
    );
    assert_eq!(
        get(&format!("{}/api/traces/{unsampled}", fleet.desk()))
            .await
            .status,
        404
    );
    assert_eq!(ids.len(), 2, "{ids:?}");
    fleet.stop().await;
}

/// The W3C trace-context test suite's `traceparent` cases (w3c/trace-context `test/test.py`),
/// as a table, sent to the gateway: `true` when the caller's trace must be continued.
const W3C_TRACEPARENT_CASES: &[(&str, &[&str], bool)] = &[
    (
        "included",
        &["00-12345678901234567890123456789012-1234567890123456-01"],
        true,
    ),
    (
        "duplicated",
        &[
            "00-12345678901234567890123456789011-1234567890123456-01",
            "00-12345678901234567890123456789012-1234567890123456-01",
        ],
        false,
    ),
    (
        "version 00, trailing dot",
        &["00-12345678901234567890123456789012-1234567890123456-01."],
        false,
    ),
    (
        "version 00, more fields",
        &["00-12345678901234567890123456789012-1234567890123456-01-what-the-future-will-be-like"],
        false,
    ),
    (
        "version cc",
        &["cc-12345678901234567890123456789012-1234567890123456-01"],
        true,
    ),
    (
        "version cc, more fields",
        &["cc-12345678901234567890123456789012-1234567890123456-01-what-the-future-will-be-like"],
        true,
    ),
    (
        "version cc, bad separator",
        &["cc-12345678901234567890123456789012-1234567890123456-01.what-the-future-will-be-like"],
        false,
    ),
    (
        "version ff",
        &["ff-12345678901234567890123456789012-1234567890123456-01"],
        false,
    ),
    (
        "version illegal 1",
        &[".0-12345678901234567890123456789012-1234567890123456-01"],
        false,
    ),
    (
        "version illegal 2",
        &["0.-12345678901234567890123456789012-1234567890123456-01"],
        false,
    ),
    (
        "version too long 1",
        &["000-12345678901234567890123456789012-1234567890123456-01"],
        false,
    ),
    (
        "version too long 2",
        &["0000-12345678901234567890123456789012-1234567890123456-01"],
        false,
    ),
    (
        "version too short",
        &["0-12345678901234567890123456789012-1234567890123456-01"],
        false,
    ),
    (
        "trace id zero",
        &["00-00000000000000000000000000000000-1234567890123456-01"],
        false,
    ),
    (
        "trace id illegal 1",
        &["00-.2345678901234567890123456789012-1234567890123456-01"],
        false,
    ),
    (
        "trace id illegal 2",
        &["00-1234567890123456789012345678901.-1234567890123456-01"],
        false,
    ),
    (
        "trace id too long",
        &["00-123456789012345678901234567890123-1234567890123456-01"],
        false,
    ),
    (
        "trace id too short",
        &["00-1234567890123456789012345678901-1234567890123456-01"],
        false,
    ),
    (
        "parent id zero",
        &["00-12345678901234567890123456789012-0000000000000000-01"],
        false,
    ),
    (
        "parent id illegal 1",
        &["00-12345678901234567890123456789012-.234567890123456-01"],
        false,
    ),
    (
        "parent id illegal 2",
        &["00-12345678901234567890123456789012-123456789012345.-01"],
        false,
    ),
    (
        "parent id too long",
        &["00-12345678901234567890123456789012-12345678901234567-01"],
        false,
    ),
    (
        "parent id too short",
        &["00-12345678901234567890123456789012-123456789012345-01"],
        false,
    ),
    (
        "flags illegal 1",
        &["00-12345678901234567890123456789012-1234567890123456-.0"],
        false,
    ),
    (
        "flags illegal 2",
        &["00-12345678901234567890123456789012-1234567890123456-0."],
        false,
    ),
    (
        "flags too long",
        &["00-12345678901234567890123456789012-1234567890123456-001"],
        false,
    ),
    (
        "flags too short",
        &["00-12345678901234567890123456789012-1234567890123456-1"],
        false,
    ),
    (
        "ows leading space",
        &[" 00-12345678901234567890123456789012-1234567890123456-01"],
        true,
    ),
    (
        "ows leading tab",
        &["\t00-12345678901234567890123456789012-1234567890123456-01"],
        true,
    ),
    (
        "ows trailing space",
        &["00-12345678901234567890123456789012-1234567890123456-01 "],
        true,
    ),
    (
        "ows trailing tab",
        &["00-12345678901234567890123456789012-1234567890123456-01\t"],
        true,
    ),
    (
        "ows both",
        &["\t 00-12345678901234567890123456789012-1234567890123456-01 \t"],
        true,
    ),
    // Beyond the suite: what the SDK's lax parser used to continue.
    ("short ids", &["00-1-1-01"], false),
    (
        "signed id",
        &["00-+2345678901234567890123456789012-1234567890123456-01"],
        false,
    ),
    (
        "uppercase",
        &["00-1234567890123456789012345678901A-1234567890123456-01"],
        false,
    ),
    (
        "flags one digit",
        &["00-12345678901234567890123456789012-1234567890123456-1"],
        false,
    ),
];

#[tokio::test(flavor = "multi_thread")]
async fn the_w3c_traceparent_cases_against_the_gateway() {
    let fleet = Fleet::start(FleetOptions::default()).await;
    let client = reqwest::Client::new();
    let url = format!("{}/products", fleet.gateway());
    let mut wrong = Vec::new();
    for (name, values, continued) in W3C_TRACEPARENT_CASES {
        let mut headers = reqwest::header::HeaderMap::new();
        for v in *values {
            headers.append(
                "traceparent",
                reqwest::header::HeaderValue::from_str(v).expect("header value"),
            );
        }
        let resp = client
            .get(&url)
            .headers(headers)
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status(), 200, "{name}");
        let trace_id = resp
            .headers()
            .get("x-trace-id")
            .and_then(|v| v.to_str().ok())
            .expect("x-trace-id")
            .to_owned();
        let was_continued = values
            .iter()
            .any(|v| v.trim().get(3..35) == Some(trace_id.as_str()));
        if was_continued != *continued {
            wrong.push(format!("{name}: {values:?} -> {trace_id}"));
        }
    }
    assert!(wrong.is_empty(), "cases answered wrongly: {wrong:#?}");
    fleet.stop().await;
}
