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
