//! TraceQL conformance: the committed fleet fixture (ten real traces) loaded
//! into a desk, then `(query, expected trace ids)` rows. The expected ids were
//! derived by reading the fixture (see tests/fixtures/README.md), not from the
//! desk's output.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;

use common::*;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Av;
use serde_json::{Value, json};

// The ten traces of the fixture.
/// Paid checkout, one item, 18 spans, 61.3 ms.
const PAID1: &str = "f5b08f76f1cceaa3e7a355004130f4cc";
/// Paid checkout, three items, baggage `session.id=s-42`, 18 spans, 52.1 ms.
const PAID3: &str = "17900b924f4a81fd94fdae6fb20401dd";
/// Declined card (402), 13 spans, 47.0 ms.
const DECLINED: &str = "4ff1e1fbac8fed2c9c7cea776ce230c9";
/// Provider fault (503), 13 spans, 46.5 ms.
const FAULT: &str = "9ecd8cb49e973a1083cdfd954a62ac22";
/// Unknown sku (422), 5 spans, 2.2 ms.
const BADSKU: &str = "f8919456fe6afabbebbea276dbe86c96";
/// Paid checkout, 18 spans, 59.0 ms.
const PAID_B: &str = "502a459800de5aabe92ae1f01ec3d1f0";
/// Paid checkout, 18 spans, 60.5 ms.
const PAID_C: &str = "ed1fe1ea23053874b57cebf93ccaebdf";
/// `GET /orders/{id}` found, 5 spans, 8.4 ms.
const GET_FOUND: &str = "69bde4547a0dce977ac13737dd032c74";
/// `GET /orders/{id}` not found (404), 4 spans, 1.9 ms.
const GET_404: &str = "0cae4a3db4498753ebfa9dd6d3a31110";
/// `GET /products`, 4 spans, 5.1 ms.
const PRODUCTS: &str = "32416ca2f9776f9935713db1af4095e0";

const ALL: &[&str] = &[
    PAID1, PAID3, DECLINED, FAULT, BADSKU, PAID_B, PAID_C, GET_FOUND, GET_404, PRODUCTS,
];
const PAID: &[&str] = &[PAID1, PAID3, PAID_B, PAID_C];
/// Traces that reached payment-api (paid, declined, fault).
const CHARGED: &[&str] = &[PAID1, PAID3, DECLINED, FAULT, PAID_B, PAID_C];
const NONE: &[&str] = &[];

const FIXTURE: &str = include_str!("fixtures/fleet-traces.otlp.json");

async fn fleet_desk() -> trace_desk::RunningDesk {
    let desk = desk(10_000).await;
    let resp = client()
        .post(format!("http://{}/v1/traces", desk.otlp_http_addr()))
        .header("content-type", "application/json")
        .body(FIXTURE)
        .send()
        .await
        .expect("post fixture");
    assert_eq!(resp.status(), 200, "{:?}", resp.text().await);
    desk
}

fn enc(q: &str) -> String {
    let mut out = String::new();
    for b in q.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

async fn search(desk: &trace_desk::RunningDesk, q: &str) -> Value {
    get_json(desk, &format!("/api/search?limit=100&q={}", enc(q))).await
}

fn ids(v: &Value) -> BTreeSet<String> {
    v["traces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| format!("{:0>32}", t["traceID"].as_str().unwrap()))
        .collect()
}

fn set(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

fn cat(parts: &[&[&str]]) -> Vec<&'static str> {
    let mut v: Vec<&'static str> = Vec::new();
    for p in parts {
        for id in *p {
            let id: &'static str = ALL.iter().find(|a| *a == id).unwrap();
            if !v.contains(&id) {
                v.push(id);
            }
        }
    }
    v
}

#[tokio::test(flavor = "multi_thread")]
async fn conformance_table() {
    let desk = fleet_desk().await;
    let paid_and_get_found: Vec<&str> = cat(&[PAID, &[GET_FOUND]]);
    let checkout_roots: Vec<&str> = cat(&[CHARGED, &[BADSKU]]);
    let rows: Vec<(&str, Vec<&str>)> = vec![
        // Match-all and the empty filter.
        ("{}", ALL.to_vec()),
        ("{ true }", ALL.to_vec()),
        ("{ false }", NONE.to_vec()),
        // name, =, !=, regex (anchored: a full match, as in Tempo).
        (r#"{ name = "stripe-sdk.request" }"#, CHARGED.to_vec()),
        (
            r#"{ span:name = "createOrder" }"#,
            cat(&[CHARGED, &[BADSKU]]),
        ),
        (r#"{ name = "GET /products" }"#, vec![PRODUCTS]),
        (r#"{ name =~ "INSERT" }"#, NONE.to_vec()),
        (r#"{ name =~ "INSERT.*" }"#, CHARGED.to_vec()),
        (
            r#"{ name =~ "GET /orders/.*" && duration < 1ms }"#,
            vec![GET_404],
        ),
        (
            r#"{ span.url.path !~ "/orders.*" && kind = server && resource.service.name = "api-gateway" }"#,
            cat(&[&checkout_roots, &[PRODUCTS]]),
        ),
        (
            r#"{ name != "POST /checkout" && kind = server && resource.service.name = "api-gateway" }"#,
            vec![GET_FOUND, GET_404, PRODUCTS],
        ),
        // status.
        ("{ status = error }", vec![DECLINED, FAULT, BADSKU, GET_404]),
        (
            "{ span:status = error }",
            vec![DECLINED, FAULT, BADSKU, GET_404],
        ),
        ("{ status = ok }", NONE.to_vec()),
        ("{ status = unset }", ALL.to_vec()),
        (
            "{ status != unset }",
            vec![DECLINED, FAULT, BADSKU, GET_404],
        ),
        (
            r#"{ resource.service.name = "payment-api" && status = error }"#,
            vec![DECLINED, FAULT],
        ),
        ("{ status = error && kind = server }", vec![FAULT]),
        // statusMessage.
        (r#"{ statusMessage =~ "card declined.*" }"#, vec![DECLINED]),
        (r#"{ span:statusMessage != "" }"#, vec![DECLINED, FAULT]),
        (
            r#"{ statusMessage = "" && status = error && kind = server }"#,
            vec![FAULT],
        ),
        // kind.
        ("{ kind = server }", ALL.to_vec()),
        ("{ kind = producer }", NONE.to_vec()),
        ("{ span:kind = consumer }", NONE.to_vec()),
        ("{ kind = unspecified }", NONE.to_vec()),
        (
            r#"{ kind = client && resource.service.name = "payment-api" }"#,
            CHARGED.to_vec(),
        ),
        (
            r#"{ kind = internal && name = "sendEmail" }"#,
            PAID.to_vec(),
        ),
        (
            r#"{ kind != client && name = "payment.v1.PaymentService/Charge" && status = error }"#,
            vec![FAULT],
        ),
        // duration, each ordering operator.
        ("{ duration > 50ms }", PAID.to_vec()),
        ("{ span:duration >= 60ms }", vec![PAID1, PAID_C]),
        ("{ duration > 0.06s }", vec![PAID1, PAID_C]),
        ("{ duration >= 1m }", NONE.to_vec()),
        (
            r#"{ duration <= 2ms && kind = server && resource.service.name = "api-gateway" }"#,
            vec![GET_404],
        ),
        (
            r#"{ name = "POST /v1/charges" && duration < 32500us }"#,
            vec![DECLINED],
        ),
        // trace-level intrinsics.
        ("{ trace:duration > 50ms }", PAID.to_vec()),
        ("{ trace:duration < 5ms }", vec![BADSKU, GET_404]),
        ("{ trace:duration >= 2s }", NONE.to_vec()),
        (
            r#"{ trace:rootName = "GET /orders/{id}" }"#,
            vec![GET_FOUND, GET_404],
        ),
        (r#"{ trace:rootName =~ "POST.*" }"#, checkout_roots.clone()),
        (r#"{ trace:rootService = "api-gateway" }"#, ALL.to_vec()),
        (r#"{ trace:rootService != "api-gateway" }"#, NONE.to_vec()),
        (
            r#"{ trace:rootService = "api-gateway" && trace:rootName = "POST /checkout" && status = error }"#,
            vec![DECLINED, FAULT, BADSKU],
        ),
        // span:childCount.
        ("{ span:childCount > 6 }", PAID.to_vec()),
        ("{ span:childCount = 5 }", vec![DECLINED, FAULT]),
        (
            r#"{ span:childCount = 2 && name = "GET /orders/{id}" }"#,
            vec![GET_FOUND],
        ),
        // Attributes: scopes, int, float, string, nil.
        ("{ span.http.response.status_code = 503 }", vec![FAULT]),
        ("{ span.http.response.status_code >= 500 }", vec![FAULT]),
        (
            "{ span.http.response.status_code >= 400 && span.http.response.status_code < 500 }",
            vec![DECLINED, BADSKU, GET_404],
        ),
        ("{ .http.response.status_code = 201.0 }", PAID.to_vec()),
        (
            r#"{ span.http.response.status_code = "201" }"#,
            NONE.to_vec(),
        ),
        ("{ span.app.order.items > 2 }", vec![PAID3]),
        ("{ span.app.order.items >= 1.5 }", vec![PAID3]),
        ("{ span.app.order.items = true }", NONE.to_vec()),
        ("{ span.app.payment.amount_cents < 2500 }", vec![PAID_C]),
        (
            "{ span.app.payment.amount_cents = 2900 }",
            vec![PAID1, FAULT],
        ),
        (
            r#"{ resource.service.name = "notification" }"#,
            PAID.to_vec(),
        ),
        (r#"{ span.service.name = "notification" }"#, NONE.to_vec()),
        (r#"{ .service.name = "notification" }"#, PAID.to_vec()),
        (r#"{ resource.http.route = "/checkout" }"#, NONE.to_vec()),
        (r#"{ .http.route = "/checkout" }"#, checkout_roots.clone()),
        (r#"{ span.session.id = "s-42" }"#, vec![PAID3]),
        ("{ span.session.id != nil }", vec![PAID3]),
        (r#"{ span.session.id != "s-42" }"#, NONE.to_vec()),
        (
            r#"{ span.rpc.response.status_code = "UNAVAILABLE" }"#,
            vec![FAULT],
        ),
        (
            r#"{ span.db.query.text =~ ".*IN [(][?], [?], [?][)]" }"#,
            vec![PAID3],
        ),
        (
            r#"{ span.error.type > "500" && span.error.type < "A" }"#,
            vec![FAULT],
        ),
        (r#"{ span."url.template" = "/products" }"#, vec![PRODUCTS]),
        // && / || inside a filter: Tempo gives them equal precedence, left to right.
        (
            r#"{ resource.service.name = "payment-api" && status = error || name = "GET /products" }"#,
            vec![DECLINED, FAULT, PRODUCTS],
        ),
        (
            r#"{ name = "GET /products" || resource.service.name = "payment-api" && status = error }"#,
            vec![DECLINED, FAULT],
        ),
        (
            r#"{ name = "GET /products" || (resource.service.name = "payment-api" && status = error) }"#,
            vec![DECLINED, FAULT, PRODUCTS],
        ),
        (
            r#"{ !(kind = server || kind = client || kind = internal) }"#,
            NONE.to_vec(),
        ),
        // && / || between spansets.
        (
            r#"{ name = "createOrder" } && { status = error }"#,
            vec![DECLINED, FAULT, BADSKU],
        ),
        (
            r#"{ resource.service.name = "notification" } && { status = error }"#,
            NONE.to_vec(),
        ),
        (
            r#"{ name = "GET /products" } || { span.http.response.status_code = 404 }"#,
            vec![PRODUCTS, GET_404],
        ),
        (
            r#"{ span.session.id = "s-42" } || { status = error && kind = server }"#,
            vec![PAID3, FAULT],
        ),
        // Structural operators.
        (
            r#"{ resource.service.name = "api-gateway" } >> { name = "stripe-sdk.request" }"#,
            CHARGED.to_vec(),
        ),
        (
            r#"{ name = "createOrder" } > { span.db.operation.name = "INSERT" }"#,
            CHARGED.to_vec(),
        ),
        (
            r#"{ name = "createOrder" } > { name = "stripe-sdk.request" }"#,
            NONE.to_vec(),
        ),
        (
            r#"{ name = "createOrder" } >> { name = "stripe-sdk.request" }"#,
            CHARGED.to_vec(),
        ),
        (
            r#"{ resource.service.name = "api-gateway" } >> { resource.service.name = "payment-api" && status = error }"#,
            vec![DECLINED, FAULT],
        ),
        (
            r#"{ span.db.operation.name = "UPDATE" } < { name = "createOrder" }"#,
            CHARGED.to_vec(),
        ),
        (
            r#"{ name = "sendEmail" } < { kind = server }"#,
            PAID.to_vec(),
        ),
        (
            r#"{ name = "POST /v1/charges" && status = error } << { resource.service.name = "api-gateway" && kind = server }"#,
            vec![DECLINED, FAULT],
        ),
        (
            r#"{ name = "SELECT products" } ~ { name = "payment.v1.PaymentService/Charge" && status = error }"#,
            vec![DECLINED, FAULT],
        ),
        (
            r#"{ name = "INSERT orders" } ~ { name = "SELECT order_items" }"#,
            PAID.to_vec(),
        ),
        (
            r#"{ name = "SELECT orders" } ~ { name = "SELECT order_items" }"#,
            paid_and_get_found.clone(),
        ),
        (r#"{ kind = server } ~ { kind = server }"#, NONE.to_vec()),
        (
            r#"{ name = "charge" && status = error } &>> { status = error }"#,
            vec![FAULT],
        ),
        // Structural binds tighter than ||.
        (
            r#"{ name = "GET /products" } || { name = "createOrder" } > { status = error }"#,
            vec![DECLINED, FAULT, PRODUCTS],
        ),
        (
            r#"({ name = "GET /products" } || { name = "createOrder" }) > { status = error }"#,
            vec![DECLINED, FAULT],
        ),
        // Pipelines.
        ("{ } | count() > 15", PAID.to_vec()),
        (
            r#"{ resource.service.name = "order-api" } | count() > 5"#,
            CHARGED.to_vec(),
        ),
        (
            r#"{ span.db.system.name = "sqlite" } | count() > 5"#,
            PAID.to_vec(),
        ),
        (
            r#"{ span.db.system.name = "sqlite" } | count() = 1"#,
            vec![BADSKU, GET_404, PRODUCTS],
        ),
        ("{ } | avg(duration) > 10ms", CHARGED.to_vec()),
        (
            "{ kind = server } | avg(duration) > 40ms",
            vec![DECLINED, FAULT],
        ),
        ("{ } | max(duration) < 3ms", vec![BADSKU, GET_404]),
        (
            r#"{ name = "POST /v1/charges" } | min(duration) >= 33ms"#,
            vec![PAID1, PAID_C],
        ),
        (
            "{ span.app.payment.amount_cents > 0 } | sum(span.app.payment.amount_cents) > 10000",
            vec![PAID3],
        ),
        (
            "{ } | by(resource.service.name) | count() > 3",
            CHARGED.to_vec(),
        ),
        (
            "{ } | by(resource.service.name) | count() > 8",
            PAID.to_vec(),
        ),
        (
            "{ status = error } | by(resource.service.name) | count() > 1",
            vec![FAULT],
        ),
        (
            "{ status = error } | select(span.http.route)",
            vec![DECLINED, FAULT, BADSKU, GET_404],
        ),
        (
            r#"{ name = "GET /products" } | { kind = server }"#,
            vec![PRODUCTS],
        ),
        (
            "{ } | by(resource.service.name) | coalesce() | count() > 17",
            PAID.to_vec(),
        ),
        (
            "({ status = error } | count() > 5) && ({ kind = server })",
            vec![FAULT],
        ),
        // Arithmetic in field expressions (Tempo: int op int stays int, else float; durations
        // in nanoseconds). The paid checkouts take 52-61 ms, the rest under 50 ms.
        ("{ duration > 25ms * 2 }", PAID.to_vec()),
        ("{ duration > 100ms / 2 }", PAID.to_vec()),
        ("{ trace:duration < 5ms - 1ms * 2 }", vec![BADSKU, GET_404]),
        ("{ span.app.order.items ^ 2 = 9 }", vec![PAID3]),
        ("{ span.app.order.items * 2 > 4 }", vec![PAID3]),
        (
            "{ span.app.order.items - 1 = 0 && name = \"createOrder\" }",
            vec![PAID1, DECLINED, FAULT, BADSKU, PAID_B, PAID_C],
        ),
        (
            "{ span.app.payment.amount_cents % 1000 = 900 }",
            vec![PAID1, DECLINED, FAULT],
        ),
        // Integer division truncates (3960 / 100 = 39); a float operand makes it a float.
        ("{ span.app.payment.amount_cents / 100 > 39 }", vec![PAID3]),
        (
            "{ span.app.payment.amount_cents / 100.0 > 39.5 }",
            vec![PAID3, PAID_B],
        ),
        ("{ -span.app.payment.amount_cents < -9000 }", vec![PAID3]),
        (
            "{ span.http.response.status_code - 400 >= 0 && span.http.response.status_code < 100 * 5 }",
            vec![DECLINED, BADSKU, GET_404],
        ),
        // A field on both sides.
        (
            "{ span.app.payment.amount_cents = span.app.payment.amount_cents }",
            CHARGED.to_vec(),
        ),
        (
            "{ span.app.order.items > span.app.payment.amount_cents }",
            NONE.to_vec(),
        ),
        ("{ span:childCount * 10 > 60 }", PAID.to_vec()),
        // Literal-only comparisons are decided when parsing, as Tempo accepts them.
        ("{ 1 < 2 }", ALL.to_vec()),
        ("{ 1 + 1 = 3 }", NONE.to_vec()),
        (
            r#"{ "test" =~ "te.*" && kind = server && trace:duration > 50ms }"#,
            PAID.to_vec(),
        ),
        (
            "{ 2 ^ 10 = 1024 && nestedSetParent = -1 && duration > 60ms }",
            vec![PAID1, PAID_C],
        ),
        // A pipeline may start with a stage (Tempo's grammar); it applies to all the spans.
        ("count() > 17", PAID.to_vec()),
        ("max(duration) < 3ms", vec![BADSKU, GET_404]),
        (
            "max(duration) > 60ms | { status = error || name = \"charge\" }",
            vec![PAID1, PAID_C],
        ),
        ("by(resource.service.name) | count() > 8", PAID.to_vec()),
        (
            "select(span.http.route) | { status = error }",
            vec![DECLINED, FAULT, BADSKU, GET_404],
        ),
        // Aggregates and by() over arithmetic.
        ("{ } | max(duration * 2) > 120ms", vec![PAID1, PAID_C]),
        (
            "{ span.app.payment.amount_cents > 0 } | by(span.app.payment.amount_cents / 1000) | count() > 1",
            CHARGED.to_vec(),
        ),
        (
            "{ } | by(span.app.order.items * 10) | avg(span.app.order.items * 10) > 20",
            vec![PAID3],
        ),
        // event. scope and event: intrinsics: a comparison holds when it holds for any event
        // of the span (the fixture's events: "email sent" on sendEmail, "charge failed" on the
        // declined and faulty charges, a 503 error event on order-api's POST /orders).
        (r#"{ event:name = "charge failed" }"#, vec![DECLINED, FAULT]),
        (
            r#"{ event:name = "email sent" && event:timeSinceStart > 100us }"#,
            vec![PAID1],
        ),
        ("{ event:timeSinceStart > 40ms }", vec![FAULT]),
        (r#"{ event.level = "ERROR" }"#, vec![FAULT]),
        (
            r#"{ event.level = "WARN" && event.error =~ "card declined.*" }"#,
            vec![DECLINED],
        ),
        (
            r#"{ event.dependency = "payment-api" && resource.service.name = "order-api" }"#,
            vec![FAULT],
        ),
        ("{ event.level != nil && kind = server }", vec![FAULT]),
        (r#"{ name = "charge" && event.level = nil }"#, PAID.to_vec()),
        (r#"{ span.level = "WARN" }"#, NONE.to_vec()),
        // link. scope and link: intrinsics (the fixture has no links).
        (r#"{ link:traceID != "" }"#, NONE.to_vec()),
        (r#"{ link:spanID =~ ".*" }"#, NONE.to_vec()),
        ("{ link.kind = nil }", ALL.to_vec()),
        // instrumentation. scope and intrinsics (every fleet span comes from scope "fleet").
        (r#"{ instrumentation:name = "fleet" }"#, ALL.to_vec()),
        (r#"{ instrumentation:name != "fleet" }"#, NONE.to_vec()),
        (r#"{ instrumentation:version = "" }"#, ALL.to_vec()),
        ("{ instrumentation.x != nil }", NONE.to_vec()),
        // Nested sets (Tempo's numbering: roots have parent -1 and the first root left 1;
        // (right - left - 1) / 2 is the number of descendants).
        ("{ nestedSetParent = -1 && kind = server }", ALL.to_vec()),
        ("{ nestedSetLeft = 1 }", ALL.to_vec()),
        (
            "{ (nestedSetRight - nestedSetLeft - 1) / 2 = 17 }",
            PAID.to_vec(),
        ),
        (
            "{ (nestedSetRight - nestedSetLeft - 1) / 2 = 4 && nestedSetParent = -1 }",
            vec![BADSKU, GET_FOUND],
        ),
        (
            r#"{ nestedSetRight - nestedSetLeft = 1 && resource.service.name = "notification" }"#,
            PAID.to_vec(),
        ),
        // Negated structural operators (Tempo's falseForAll): the right side's spans with no
        // such relation to a left-side span; the left side must still match something.
        (
            r#"{ name = "createOrder" } !> { name = "stripe-sdk.request" }"#,
            CHARGED.to_vec(),
        ),
        (
            r#"{ name = "charge" } !> { name = "stripe-sdk.request" }"#,
            NONE.to_vec(),
        ),
        // Roots have no ancestor at all, so every error trace keeps its root server span.
        (
            "{ status = error } !>> { kind = server }",
            vec![DECLINED, FAULT, BADSKU, GET_404],
        ),
        (
            r#"{ status = error } >> { kind = server && resource.service.name = "payment-api" }"#,
            vec![DECLINED, FAULT],
        ),
        (
            r#"{ status = error } !>> { kind = server && resource.service.name = "payment-api" }"#,
            NONE.to_vec(),
        ),
        // createOrder (internal) is no stripe parent; only traces with a stripe call qualify.
        (
            r#"{ name = "stripe-sdk.request" } !< { kind = internal }"#,
            CHARGED.to_vec(),
        ),
        (
            r#"{ kind = server } !< { kind = client && resource.service.name = "api-gateway" }"#,
            NONE.to_vec(),
        ),
        // Only the paid checkouts have a server (the notification's) off the payment path.
        (
            r#"{ name = "POST /v1/charges" } !<< { kind = server }"#,
            PAID.to_vec(),
        ),
        (
            r#"{ name = "createOrder" } !~ { name = "notification.v1.NotificationService/SendEmail" && kind = client }"#,
            PAID.to_vec(),
        ),
        (
            r#"{ name = "POST /orders" && kind = client } !~ { name = "notification.v1.NotificationService/SendEmail" && kind = client }"#,
            NONE.to_vec(),
        ),
        // `= nil`: the attribute is not set on the span.
        (
            r#"{ name = "POST /checkout" && span.session.id = nil }"#,
            vec![PAID1, DECLINED, FAULT, BADSKU, PAID_B, PAID_C],
        ),
        ("{ span.session.id = nil }", ALL.to_vec()),
        ("{ resource.service.name = nil }", NONE.to_vec()),
    ];
    let mut failures = Vec::new();
    for (q, want) in &rows {
        let got = ids(&search(&desk, q).await);
        if got != set(want) {
            failures.push(format!("{q}\n   want {:?}\n   got  {:?}", set(want), got));
        }
    }
    assert!(
        failures.is_empty(),
        "{} rows failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    desk.shutdown().await;
}

/// Tag names: event and link attribute names are listed (v1 without a scope, v1 and v2 with
/// `scope=event`/`link`), and `intrinsic` lists every intrinsic Tempo lists.
#[tokio::test(flavor = "multi_thread")]
async fn tags_list_event_link_and_intrinsic_names() {
    let desk = fleet_desk().await;
    // A span carrying the fleet's fault event and a link, on top of the fixture.
    let mut req = request("faults", &[Sp::new(77, 1, "faulty")]);
    let span = &mut req.resource_spans[0].scope_spans[0].spans[0];
    span.events
        .push(opentelemetry_proto::tonic::trace::v1::span::Event {
            name: "fault injected".into(),
            attributes: vec![
                kv("fault.point", s("payment.charge")),
                kv("fault.source", s("scenario")),
                kv("fault.spec", s("error:0.5")),
            ],
            ..Default::default()
        });
    span.links
        .push(opentelemetry_proto::tonic::trace::v1::span::Link {
            trace_id: vec![9; 16],
            span_id: vec![9; 8],
            attributes: vec![kv("link.reason", s("retry"))],
            ..Default::default()
        });
    post_protobuf(&desk, &req).await;

    let all = get_json(&desk, "/api/search/tags").await;
    for want in [
        "fault.point",
        "fault.source",
        "fault.spec",
        "level",
        "dependency",
        "link.reason",
        "service.name",
    ] {
        assert!(
            all["tagNames"].as_array().unwrap().contains(&json!(want)),
            "{want}: {all}"
        );
    }
    let event = get_json(&desk, "/api/search/tags?scope=event").await;
    let names = event["tagNames"].as_array().unwrap();
    assert!(
        names.contains(&json!("fault.spec")) && names.contains(&json!("error")),
        "{event}"
    );
    assert!(!names.contains(&json!("service.name")), "{event}");
    let link = get_json(&desk, "/api/search/tags?scope=link").await;
    assert_eq!(link, json!({"tagNames": ["link.reason"]}));
    let v2 = get_json(&desk, "/api/v2/search/tags").await;
    let scope = |name: &str| -> Vec<Value> {
        v2["scopes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .map(|s| s["tags"].as_array().unwrap().clone())
            .unwrap_or_default()
    };
    assert!(scope("event").contains(&json!("fault.point")), "{v2}");
    assert_eq!(scope("link"), vec![json!("link.reason")]);
    let intrinsic = scope("intrinsic");
    for want in [
        "duration",
        "name",
        "status",
        "kind",
        "statusMessage",
        "span:id",
        "trace:id",
        "span:parentID",
        "event:name",
        "event:timeSinceStart",
        "link:traceID",
        "link:spanID",
        "instrumentation:name",
        "instrumentation:version",
        "trace:rootService",
        "rootServiceName",
    ] {
        assert!(intrinsic.contains(&json!(want)), "{want}: {intrinsic:?}");
    }
    assert_eq!(intrinsic.len(), 25);
    // Each listed intrinsic is one the desk's TraceQL accepts.
    for name in &intrinsic {
        let q = format!("{{ {0} = {0} }}", name.as_str().unwrap());
        assert!(trace_desk::traceql::parse(&q).is_ok(), "{q}");
    }
    // Values of the event and instrumentation intrinsics.
    let v = get_json(&desk, "/api/v2/search/tag/event:name/values").await;
    let names: Vec<&str> = v["tagValues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["value"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"fault injected") && names.contains(&"charge failed"),
        "{v}"
    );
    let v = get_json(&desk, "/api/v2/search/tag/instrumentation:name/values").await;
    assert!(
        v["tagValues"]
            .as_array()
            .unwrap()
            .contains(&json!({"type": "string", "value": "fleet"})),
        "{v}"
    );
    // The link is searchable by its ids and attributes.
    for q in [
        r#"{ link:traceID = "09090909090909090909090909090909" }"#,
        r#"{ link:spanID = "0909090909090909" && link.link.reason = "retry" }"#,
        r#"{ link.link.reason =~ "re.*" } !> { }"#,
    ] {
        let v = search(&desk, q).await;
        assert_eq!(v["traces"].as_array().unwrap().len(), 1, "{q}: {v}");
    }
    // And the fault event is searchable.
    let v = search(
        &desk,
        r#"{ event.fault.point = "payment.charge" && event:name = "fault injected" }"#,
    )
    .await;
    assert_eq!(v["traces"].as_array().unwrap().len(), 1, "{v}");
    desk.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn rejected_queries_point_at_the_problem() {
    let desk = fleet_desk().await;
    // (query, column of the problem, a word the message must contain)
    let rows: &[(&str, usize, &str)] = &[
        (r#"{ name = "x" "#, 14, "expected `}`"),
        ("{ span.http.route = }", 21, "expected an attribute"),
        (r#"{ name = "a" } | rate()"#, 18, "metrics function"),
        (
            "{ } | quantile_over_time(duration, .9)",
            7,
            "metrics function",
        ),
        ("{ span:bogus = 1 }", 3, "unknown intrinsic"),
        (r#"{ foo = "x" }"#, 3, "unknown intrinsic"),
        (r#"{ duration > "slow" }"#, 3, "duration"),
        ("{ status = 200 }", 3, "`status` can only be compared"),
        (r#"{ name =~ "(" }"#, 3, "regular expression"),
        ("{ status }", 10, "comparison operator"),
        ("{ parent.name = \"x\" }", 3, "`parent.` attribute scope"),
        ("{ event:bogus = \"x\" }", 3, "unknown intrinsic"),
        ("{ span.foo > nil }", 3, "nil"),
        ("{ name + 1 > 2 }", 8, "arithmetic"),
        (
            "({ kind = server } | count() > 2) && { name = \"x\" }",
            35,
            "parenthesised pipeline",
        ),
        ("{ duration > 1 / 0 }", 16, "division by zero"),
        ("{ } | frobnicate()", 7, "unknown pipeline stage"),
        ("{ } | count() > name", 17, "number or a duration"),
        ("{ } extra", 5, "unexpected"),
        ("span.x = 1", 1, "spanset filter"),
        ("{ duration > 5xs }", 14, "duration"),
        (r#"{ name = "unterminated }"#, 10, "unterminated string"),
    ];
    for (q, col, word) in rows {
        let resp = get(&desk, &format!("/api/search?q={}", enc(q))).await;
        assert_eq!(resp.status(), 400, "{q}");
        let text = resp.text().await.unwrap();
        assert!(text.contains(&format!("column {col} ")), "{q}: {text}");
        assert!(text.contains(word), "{q}: {text}");
        assert!(text.contains("docs/traceql.md"), "{q}: {text}");
    }
    desk.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn response_shape_like_tempo() {
    let desk = fleet_desk().await;
    // by() over arithmetic: keyed by the expression as Tempo prints it.
    let v = search(
        &desk,
        "{ span.app.payment.amount_cents > 0 } | by(span.app.payment.amount_cents / 1000)",
    )
    .await;
    let keys: Vec<&str> = v["traces"][0]["spanSets"][0]["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["by((span.app.payment.amount_cents / 1000))"], "{v}");
    // by(): one spanset per group that passes the count, with the group and the count.
    let v = search(&desk, "{ } | by(resource.service.name) | count() > 3").await;
    let t = v["traces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| format!("{:0>32}", t["traceID"].as_str().unwrap()) == PAID1)
        .unwrap();
    let sets = t["spanSets"].as_array().unwrap();
    assert_eq!(sets.len(), 2, "{t:#}");
    let order = sets
        .iter()
        .find(|s| s["attributes"][0]["value"]["stringValue"] == "order-api")
        .unwrap();
    assert_eq!(order["matched"], 9);
    assert_eq!(order["spans"].as_array().unwrap().len(), 3);
    assert_eq!(
        order["attributes"],
        json!([
            {"key": "by(resource.service.name)", "value": {"stringValue": "order-api"}},
            {"key": "count()", "value": {"intValue": "9"}},
        ])
    );
    assert_eq!(t["spanSet"], sets[0]);

    // Matched spans carry the attributes named in the query and in select().
    let v = get_json(
        &desk,
        &format!(
            "/api/search?limit=100&spss=10&q={}",
            enc(r#"{ status = error && resource.service.name = "payment-api" } | select(span.http.route, span.rpc.response.status_code)"#)
        ),
    )
    .await;
    let t = v["traces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| format!("{:0>32}", t["traceID"].as_str().unwrap()) == FAULT)
        .unwrap();
    let ss = &t["spanSets"][0];
    assert_eq!(ss["matched"], 3);
    let spans = ss["spans"].as_array().unwrap();
    assert_eq!(spans.len(), 3);
    let server = spans
        .iter()
        .find(|s| s["name"] == "payment.v1.PaymentService/Charge")
        .unwrap();
    assert_eq!(server["spanID"], "fb25d8b8780418c8");
    assert_eq!(server["durationNanos"].as_str().unwrap().len(), 8);
    let attrs = server["attributes"].as_array().unwrap();
    assert!(
        attrs.contains(&json!({"key":"status","value":{"stringValue":"error"}})),
        "{attrs:?}"
    );
    assert!(attrs.contains(&json!({"key":"service.name","value":{"stringValue":"payment-api"}})));
    assert!(attrs.contains(
        &json!({"key":"rpc.response.status_code","value":{"stringValue":"UNAVAILABLE"}})
    ));
    assert!(!attrs.iter().any(|a| a["key"] == "http.route"), "{attrs:?}");

    // spss limits the listed spans, not matched; limit and newest-first still apply.
    let v = get_json(
        &desk,
        &format!("/api/search?limit=2&spss=1&q={}", enc("{ kind = server }")),
    )
    .await;
    let traces = v["traces"].as_array().unwrap();
    assert_eq!(traces.len(), 2);
    assert_eq!(
        format!("{:0>32}", traces[0]["traceID"].as_str().unwrap()),
        PRODUCTS
    );
    assert_eq!(
        traces[0]["spanSets"][0]["spans"].as_array().unwrap().len(),
        1
    );
    assert_eq!(traces[0]["spanSets"][0]["matched"], 2);

    // start/end: a window before the fixture finds nothing.
    let v = get_json(
        &desk,
        &format!("/api/search?start=1000&end=2000&q={}", enc("{ }")),
    )
    .await;
    assert!(v["traces"].as_array().unwrap().is_empty());
    desk.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn typed_attribute_values() {
    let desk = desk(100).await;
    post_protobuf(
        &desk,
        &request(
            "typed",
            &[
                Sp::new(1, 1, "one")
                    .attr("cached", Av::BoolValue(true))
                    .attr("ratio", Av::DoubleValue(0.5))
                    .attr("retries", Av::IntValue(3))
                    .attr("label", s("3")),
                Sp::new(2, 2, "two")
                    .at(100, 10)
                    .attr("cached", Av::BoolValue(false))
                    .attr("ratio", Av::DoubleValue(1.0))
                    .attr("retries", Av::IntValue(1))
                    .attr("label", s("1")),
            ],
        ),
    )
    .await;
    let one = hex_trace(1);
    let two = hex_trace(2);
    let rows: Vec<(&str, Vec<&str>)> = vec![
        ("{ span.cached = true }", vec![&one]),
        // A bare attribute is a boolean test (Tempo's `{ .a }`).
        ("{ .cached }", vec![&one]),
        ("{ span.cached && span.cached }", vec![&one]),
        ("{ .cached != true }", vec![&two]),
        ("{ span.cached = false }", vec![&two]),
        ("{ span.ratio > 0.75 }", vec![&two]),
        ("{ span.ratio = 1 }", vec![&two]),
        ("{ span.ratio <= 0.5 }", vec![&one]),
        ("{ span.retries = 3.0 }", vec![&one]),
        ("{ span.retries > 1 }", vec![&one]),
        ("{ span.label = 3 }", vec![]),
        ("{ span.retries = \"3\" }", vec![]),
        ("{ span.cached = \"true\" }", vec![]),
        ("{ span.cached > 0 }", vec![]),
        ("{ span.label =~ \"[0-9]\" }", vec![&one, &two]),
        ("{ span.retries =~ \"3\" }", vec![]),
        ("{ span.ratio != nil && span.nothing != nil }", vec![]),
    ];
    for (q, want) in rows {
        let got = ids(&search(&desk, q).await);
        assert_eq!(got, set(&want), "{q}");
    }
    desk.shutdown().await;
}
