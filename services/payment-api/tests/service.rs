//! payment-api in-process on port 0 against the provider stand-in (also in-process), called
//! through its typed gRPC client; spans from an in-memory exporter.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use fleet_proto::payment::v1::ChargeRequest;
use opentelemetry::trace::SpanKind;
use payment_api::client::{CallOptions, PaymentClient};

struct Services {
    provider: fleet_server_kit::Running,
    payments: fleet_server_kit::Running,
    client: PaymentClient,
}

async fn start() -> Services {
    start_with(fleet_server_kit::DEFAULT_MAX_IN_FLIGHT, "").await
}

/// payment-api (behind the provider stand-in) with `max_in_flight` and `faults` armed.
async fn start_with(max_in_flight: usize, faults: &str) -> Services {
    let none = |s, points| fleet_faults::Faults::new(s, points, false, false, None);
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
    let armed = none("payment-api", payment_api::server::FAULT_POINTS);
    armed
        .replace(fleet_faults::parse_faults(faults).unwrap())
        .unwrap();
    let payments = payment_api::start(
        payment_api::Config {
            listen_addr: "127.0.0.1:0".into(),
            provider_url: provider.url(),
            provider_timeout: Duration::from_secs(5),
            max_in_flight,
        },
        armed,
    )
    .await
    .unwrap();
    let client = PaymentClient::connect_lazy(&payments.url(), Duration::from_secs(10)).unwrap();
    Services {
        provider,
        payments,
        client,
    }
}

fn charge(order_id: &str, amount_cents: i64, card: &str) -> ChargeRequest {
    ChargeRequest {
        order_id: order_id.into(),
        amount_cents,
        currency: "USD".into(),
        card_number: card.into(),
        idempotency_key: String::new(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_charge_is_traced_as_the_course_draws_it() {
    let (_guard, spans) = fleet_telemetry::testing::capture("payment-api").unwrap();
    let s = start().await;
    let ok = s
        .client
        .charge(
            CallOptions::default(),
            charge("order-1", 1299, "4242424242424242"),
        )
        .await
        .unwrap();
    assert_eq!(ok.status, "succeeded");
    let declined = s
        .client
        .charge(
            CallOptions::default(),
            charge("order-2", 1299, "4000000000009995"),
        )
        .await
        .unwrap_err();
    assert_eq!(declined.code(), tonic::Code::FailedPrecondition);
    s.payments.shutdown().await.unwrap();
    s.provider.shutdown().await.unwrap();

    // SERVER Charge -> charge -> stripe-sdk.request -> POST /v1/charges (CLIENT), twice.
    let server: Vec<_> = spans
        .named("payment.v1.PaymentService/Charge")
        .into_iter()
        .filter(|s| s.span_kind == SpanKind::Server)
        .collect();
    assert_eq!(server.len(), 2);
    let charges = spans.named("charge");
    let sdk = spans.named("stripe-sdk.request");
    let http = spans.named("POST /v1/charges");
    assert_eq!((charges.len(), sdk.len(), http.len()), (2, 2, 2));
    for http in &http {
        assert_eq!(http.span_kind, SpanKind::Client);
        assert!(
            sdk.iter()
                .any(|s| s.span_context.span_id() == http.parent_span_id)
        );
    }
    let attr = |span: &opentelemetry_sdk::trace::SpanData, k: &str| {
        span.attributes
            .iter()
            .find(|kv| kv.key.as_str() == k)
            .map(|kv| kv.value.to_string())
    };
    let codes: Vec<_> = server.iter().map(|s| attr(s, "rpc.status_code")).collect();
    assert!(codes.contains(&Some("OK".into())));
    assert!(codes.contains(&Some("FAILED_PRECONDITION".into())));
    assert!(
        charges
            .iter()
            .any(|c| attr(c, "app.order.id").as_deref() == Some("order-1"))
    );
    // A decline is the card's outcome, not a server fault: the SERVER span is not an error.
    assert!(
        server
            .iter()
            .all(|s| s.status == opentelemetry::trace::Status::Unset)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_charges_are_invalid_arguments_and_never_reach_a_span() {
    let (_guard, spans) = fleet_telemetry::testing::capture("payment-api").unwrap();
    let s = start().await;
    let max_id = "x".repeat(payment_api::server::MAX_ORDER_ID_CHARS);
    let ok = s
        .client
        .charge(
            CallOptions::default(),
            charge(
                &max_id,
                payment_api::server::MAX_AMOUNT_CENTS,
                "4242424242424242",
            ),
        )
        .await;
    assert!(ok.is_ok(), "at the bounds: {ok:?}");
    let long_id = "x".repeat(payment_api::server::MAX_ORDER_ID_CHARS + 1);
    for (request, why) in [
        (
            charge(&long_id, 100, "4242424242424242"),
            "order id one over",
        ),
        (charge("\0", 100, "4242424242424242"), "NUL order id"),
        // Found by tests/hostile_inputs.rs: it was the provider's key and answered UNAVAILABLE.
        (charge("🌀", 100, "4242424242424242"), "non-ASCII order id"),
        (
            charge(&"z".repeat(10_000), 100, "4242424242424242"),
            "10 KB order id",
        ),
        (charge("o", i64::MAX, "4242424242424242"), "i64::MAX"),
        (
            charge(
                "o",
                payment_api::server::MAX_AMOUNT_CENTS + 1,
                "4242424242424242",
            ),
            "one cent over",
        ),
        (charge("o", -5, "4242424242424242"), "negative"),
    ] {
        let err = s
            .client
            .charge(CallOptions::default(), request)
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{why}: {err:?}");
    }
    // A 3 MB order id: refused at the message bound, before decoding.
    let err = s
        .client
        .charge(
            CallOptions::default(),
            charge(&"y".repeat(3_000_000), 100, "4242424242424242"),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::OutOfRange, "{err:?}");
    s.payments.shutdown().await.unwrap();
    s.provider.shutdown().await.unwrap();
    let longest = spans
        .spans()
        .iter()
        .flat_map(|s| s.attributes.iter().map(|kv| kv.value.as_str().len()))
        .max()
        .unwrap_or(0);
    assert!(longest <= 200, "a span attribute of {longest} bytes");
}

/// A `Charge` whose field 1 is a varint where a string belongs: not decodable.
#[derive(Clone, PartialEq, prost::Message)]
struct Undecodable {
    #[prost(int64, tag = "1")]
    order_id: i64,
}

#[tokio::test(flavor = "multi_thread")]
async fn a_malformed_message_is_invalid_argument_not_internal() {
    let s = start().await;
    let channel = tonic::transport::Endpoint::from_shared(s.payments.url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let answer: Result<tonic::Response<fleet_proto::payment::v1::ChargeResponse>, _> = grpc
        .unary(
            tonic::Request::new(Undecodable { order_id: 7 }),
            http::uri::PathAndQuery::from_static("/payment.v1.PaymentService/Charge"),
            tonic_prost::ProstCodec::default(),
        )
        .await;
    let err = answer.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    assert_eq!(
        metric(&s.payments, "fleet_grpc_invalid_argument_total").await,
        1,
        "counted as the caller sees it: INVALID_ARGUMENT, not INTERNAL"
    );
    s.payments.shutdown().await.unwrap();
    s.provider.shutdown().await.unwrap();
}

/// A counter of payment-api's as `GET /metrics` serves it now.
async fn metric(running: &fleet_server_kit::Running, name: &str) -> u64 {
    let text = reqwest::get(format!("{}/metrics", running.url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    fleet_server_kit::metrics::sample(&text, name, Some(("service", "payment-api")))
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn refusals_are_counted_at_the_message_bound_and_past_the_fields() {
    use prost::Message as _;
    let s = start().await;
    let (too_large, invalid) = (
        "fleet_grpc_message_too_large_total",
        "fleet_grpc_invalid_argument_total",
    );
    let max_id = "x".repeat(payment_api::server::MAX_ORDER_ID_CHARS);
    s.client
        .charge(
            CallOptions::default(),
            charge(&max_id, 100, "4242424242424242"),
        )
        .await
        .unwrap();
    assert_eq!(metric(&s.payments, invalid).await, 0, "at the bound");
    let long_id = "x".repeat(payment_api::server::MAX_ORDER_ID_CHARS + 1);
    let err = s
        .client
        .charge(
            CallOptions::default(),
            charge(&long_id, 100, "4242424242424242"),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert_eq!(metric(&s.payments, invalid).await, 1, "one past");
    // A message of exactly MAX_MESSAGE_BYTES is decoded (and refused for its order id); one
    // byte more is refused before decoding.
    let sized = |bytes: usize| {
        let mut c = charge("", 100, "4242424242424242");
        let base = c.encoded_len();
        // The order id costs its length, a tag byte and a 2-byte length prefix here.
        c.order_id = "y".repeat(bytes - base - 3);
        assert_eq!(c.encoded_len(), bytes);
        c
    };
    let at = payment_api::server::MAX_MESSAGE_BYTES;
    let err = s
        .client
        .charge(CallOptions::default(), sized(at))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    assert_eq!(metric(&s.payments, too_large).await, 0, "at the bound");
    assert_eq!(metric(&s.payments, invalid).await, 2);
    let err = s
        .client
        .charge(CallOptions::default(), sized(at + 1))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::OutOfRange, "{err:?}");
    assert_eq!(metric(&s.payments, too_large).await, 1, "one byte past");
    assert_eq!(metric(&s.payments, invalid).await, 2, "not counted twice");
    s.payments.shutdown().await.unwrap();
    s.provider.shutdown().await.unwrap();
}

/// payment-api with `max_in_flight` of 2 and the `payment.charge` fault holding each Charge for
/// 3 s: two charges in flight are served, the third is answered at once with UNAVAILABLE.
#[tokio::test(flavor = "multi_thread")]
async fn past_max_in_flight_a_charge_is_shed_with_unavailable() {
    let (_guard, spans) = fleet_telemetry::testing::capture("payment-api").unwrap();
    let s = start_with(2, "payment.charge:latency=3s").await;
    let client = s.client.clone();

    let held: Vec<_> = (0..2)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move {
                client
                    .charge(
                        CallOptions::default(),
                        charge(&format!("held-{i}"), 100, "4242424242424242"),
                    )
                    .await
            })
        })
        .collect();
    let mut in_flight = 0;
    for _ in 0..100 {
        in_flight = metric(&s.payments, "fleet_requests_in_flight").await;
        if in_flight == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(in_flight, 2, "both charges held by the fault");

    let started = std::time::Instant::now();
    let shed = client
        .charge(
            CallOptions::default(),
            charge("shed", 100, "4242424242424242"),
        )
        .await
        .unwrap_err();
    assert_eq!(shed.code(), tonic::Code::Unavailable, "{shed:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "shed at once, not after the held ones"
    );
    assert_eq!(metric(&s.payments, "fleet_requests_shed_total").await, 1);
    for held in held {
        assert_eq!(held.await.unwrap().unwrap().status, "succeeded");
    }
    s.payments.shutdown().await.unwrap();
    s.provider.shutdown().await.unwrap();

    let server: Vec<_> = spans
        .named("payment.v1.PaymentService/Charge")
        .into_iter()
        .filter(|s| s.span_kind == SpanKind::Server)
        .collect();
    assert_eq!(server.len(), 3);
    let overloaded: Vec<_> = server
        .iter()
        .filter(|s| {
            s.attributes
                .iter()
                .any(|kv| kv.key.as_str() == "error.type" && kv.value.as_str() == "overloaded")
        })
        .collect();
    assert_eq!(overloaded.len(), 1, "the shed one, and only it");
    assert!(matches!(
        overloaded[0].status,
        opentelemetry::trace::Status::Error { .. }
    ));
    // The shed charge never reached the handler: no `charge` span for it.
    assert_eq!(spans.named("charge").len(), 2);
}

/// The default build has no TLS: an https:// provider is refused at start, naming the URL and
/// the feature that adds TLS, instead of failing every charge later.
#[cfg(not(feature = "tls"))]
#[tokio::test]
async fn an_https_provider_is_refused_at_start_without_the_tls_feature() {
    let none = fleet_faults::Faults::new(
        "payment-api",
        payment_api::server::FAULT_POINTS,
        false,
        false,
        None,
    );
    let err = payment_api::start(
        payment_api::Config {
            listen_addr: "127.0.0.1:0".into(),
            provider_url: "https://api.stripe.example".into(),
            provider_timeout: Duration::from_secs(5),
            max_in_flight: fleet_server_kit::DEFAULT_MAX_IN_FLIGHT,
        },
        none,
    )
    .await
    .err()
    .expect("an https provider needs the tls feature");
    let text = format!("{err:#}");
    assert!(text.contains("https://api.stripe.example"), "{text}");
    assert!(text.contains("--features tls"), "{text}");
}
