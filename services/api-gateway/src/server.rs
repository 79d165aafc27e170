//! Routes: `POST /checkout`, `GET /orders/{id}`, `GET /products`, plus health.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use fleet_proto::notification::v1::{OrderLine, SendEmailRequest};
use fleet_server_kit::{ApiError, ApiJson};
use notification::client::NotificationClient;
use order_api::client::{OrderApiClient, OrderApiError};
use order_api::model::{CreateOrder, Order};

use crate::Config;
pub use crate::model::CheckoutResponse;
use fleet_faults::FaultPoint;
use fleet_faults::{Faults, Injection};
use tokio_util::task::TaskTracker;
use tracing::Instrument as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// This service's fault points (`FLEET_FAULTS`, `/admin/faults`, baggage), each checked below.
pub const ORDERS: FaultPoint = FaultPoint {
    name: "gateway.orders",
    about: "the call to order-api: latency before it, an error instead of it, or a shorter timeout",
};
pub const NOTIFICATION: FaultPoint = FaultPoint {
    name: "gateway.notification",
    about: "the confirmation email: latency or an error; mode=sequential makes the reply wait for it",
};
pub const SHED: FaultPoint = FaultPoint {
    name: "gateway.shed",
    about: "max_in_flight=N lowers the load-shedding limit (MAX_IN_FLIGHT): past N requests in flight, 503 overloaded with Retry-After at once",
};
pub const FAULT_POINTS: &[FaultPoint] = &[ORDERS, NOTIFICATION, SHED];

const ORDER_API: &str = "order-api";

#[derive(Clone)]
pub struct AppState {
    orders: OrderApiClient,
    notifications: NotificationClient,
    faults: Faults,
    /// Work that outlives a reply (the confirmation email); drained on shutdown.
    background: TaskTracker,
    /// Confirmation emails sent again after notification answered UNAVAILABLE.
    email_retries: fleet_server_kit::metrics::Counter,
    /// Confirmation emails given up on (an error other than UNAVAILABLE, or every attempt).
    emails_not_sent: fleet_server_kit::metrics::Counter,
}

/// Attempts per confirmation email when notification answers UNAVAILABLE (it sheds past its
/// `MAX_IN_FLIGHT`, and the emails that go out beside the replies are not bounded by the
/// gateway's own limit): the first, then after 100 ms and 200 ms. 300 ms in all, inside the
/// 1 s a stopping gateway gives its emails.
pub const EMAIL_ATTEMPTS: u32 = 3;
const EMAIL_FIRST_BACKOFF: std::time::Duration = std::time::Duration::from_millis(100);

/// order-api's own errors pass through with their status and body; transport failures name it.
fn upstream(err: OrderApiError) -> Response {
    match err {
        OrderApiError::Status { status, body } => {
            let status = StatusCode::from_u16(status.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
            let mut response = (status, Json(body)).into_response();
            if status == StatusCode::SERVICE_UNAVAILABLE {
                response.headers_mut().insert(
                    axum::http::header::RETRY_AFTER,
                    axum::http::HeaderValue::from_static(fleet_server_kit::RETRY_AFTER_SECONDS),
                );
            }
            response
        }
        OrderApiError::Timeout => ApiError::upstream(
            StatusCode::GATEWAY_TIMEOUT,
            ORDER_API,
            "order-api timed out",
        )
        .into_response(),
        OrderApiError::Unreachable(e) => ApiError::upstream(
            StatusCode::SERVICE_UNAVAILABLE,
            ORDER_API,
            format!("order-api unreachable: {e}"),
        )
        .into_response(),
        OrderApiError::BadResponse(e) => ApiError::upstream(
            StatusCode::BAD_GATEWAY,
            ORDER_API,
            format!("order-api sent a bad answer: {e}"),
        )
        .into_response(),
    }
}

/// `POST /checkout`: the answer always carries the `Idempotency-Key` it was made under (the
/// caller's, or a fresh one): send it again to retry without ordering or charging twice.
async fn checkout(
    State(state): State<Arc<AppState>>,
    headers: axum::http::HeaderMap,
    ApiJson(req): ApiJson<CreateOrder>,
) -> Response {
    let key = match fleet_server_kit::idempotency_key(&headers) {
        Ok(key) => key,
        Err(err) => return err.into_response(),
    };
    let mut response = place_order(state, req, &key).await;
    if let Ok(value) = axum::http::HeaderValue::from_str(&key) {
        response.headers_mut().insert("idempotency-key", value);
    }
    response
}

async fn place_order(state: Arc<AppState>, req: CreateOrder, key: &str) -> Response {
    // The fault point `gateway.orders`: latency before the call, an error instead of it, or a
    // timeout shorter than the one order-api needs.
    let fault = state.faults.check(ORDERS);
    if let Some(fault) = &fault {
        fault.delay().await;
        if let Some(status) = fault.spec.error {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
            return ApiError::upstream(status, ORDER_API, "order-api failed").into_response();
        }
    }
    let timeout = fault.and_then(|f| f.spec.timeout);
    let order = match state.orders.create_order(&req, key, timeout).await {
        Ok(order) => order,
        Err(err) => return upstream(err),
    };
    // The email does not change the answer, so it goes out beside the reply, not before it;
    // `gateway.notification:mode=sequential` makes the reply wait (the slower shape).
    // One roll of the dice per checkout: the same injection decides the shape and the email.
    let fault = state.faults.check(NOTIFICATION);
    let sequential = fault
        .as_ref()
        .is_some_and(|f| f.mode() == Some("sequential"));
    let email = if sequential {
        if send_confirmation(&state, &order, fault.as_ref()).await {
            "sent"
        } else {
            "failed"
        }
    } else {
        // A span of its own, parented in OpenTelemetry only: as a tracing child it would hold
        // the server span open until the email was done, hiding the parallelism.
        let span = tracing::info_span!(
            parent: None,
            "send confirmation",
            otel.kind = "internal",
            otel.status_code = tracing::field::Empty,
            error.type = tracing::field::Empty,
        );
        let _ = span.set_parent(tracing::Span::current().context());
        let (state2, order2) = (Arc::clone(&state), order.clone());
        state.background.spawn(
            async move {
                // Boxed: the gRPC call's state machine (~2 KiB in a debug build) is not moved
                // by value through tokio's spawn on every checkout.
                if !Box::pin(send_confirmation(&state2, &order2, fault.as_ref())).await {
                    let span = tracing::Span::current();
                    span.record("otel.status_code", "ERROR");
                    span.record("error.type", "email_not_sent");
                }
            }
            .instrument(span),
        );
        "queued"
    };
    (
        StatusCode::CREATED,
        Json(CheckoutResponse {
            order_id: order.id,
            status: order.status,
            total_cents: order.total_cents,
            currency: order.currency,
            items: order.items,
            email: email.to_owned(),
            trace_id: fleet_telemetry::current_trace_id(),
        }),
    )
        .into_response()
}

async fn send_confirmation(state: &AppState, order: &Order, fault: Option<&Injection>) -> bool {
    if let Some(fault) = fault {
        fault.delay().await;
        if fault.spec.error.is_some() {
            tracing::warn!("confirmation email not sent: notification call failed");
            return false;
        }
    }
    send_email(state, order).await
}

async fn send_email(state: &AppState, order: &Order) -> bool {
    let request = SendEmailRequest {
        to: order.customer_email.clone(),
        order_id: order.id.clone(),
        total_cents: order.total_cents,
        currency: order.currency.clone(),
        lines: order
            .items
            .iter()
            .map(|i| OrderLine {
                sku: i.sku.clone(),
                name: i.name.clone(),
                quantity: i.quantity as i32,
                unit_price_cents: i.unit_price_cents,
            })
            .collect(),
    };
    let backoff = fleet_server_kit::Backoff {
        attempts: EMAIL_ATTEMPTS,
        first_backoff: EMAIL_FIRST_BACKOFF,
    };
    // Each attempt is its own CLIENT span; a shed one is red with `UNAVAILABLE`.
    let sent = backoff
        .run(
            |_| state.notifications.send_email(request.clone()),
            |status, attempt| {
                let again = status.code() == tonic::Code::Unavailable;
                if again {
                    state.email_retries.inc();
                    tracing::info!(
                        attempt,
                        message = status.message(),
                        "notification unavailable; sending the email again"
                    );
                }
                again
            },
        )
        .await;
    match sent {
        Ok(_) => true,
        Err(status) => {
            state.emails_not_sent.inc();
            tracing::warn!(code = ?status.code(), message = status.message(), "confirmation email not sent");
            false
        }
    }
}

async fn get_order(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Response {
    let Some(id) = order_api::model::canonical_order_id(&id) else {
        return ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_order_id",
            "order id must be a UUID",
        )
        .with_field("id")
        .into_response();
    };
    match state.orders.get_order(&id).await {
        Ok(order) => Json(order).into_response(),
        Err(err) => upstream(err),
    }
}

async fn list_products(State(state): State<Arc<AppState>>) -> Response {
    match state.orders.list_products().await {
        Ok(products) => Json(products).into_response(),
        Err(err) => upstream(err),
    }
}

pub fn router(
    config: &Config,
    faults: Faults,
    background: TaskTracker,
    metrics: &fleet_server_kit::Metrics,
) -> anyhow::Result<axum::Router> {
    let state = Arc::new(AppState {
        email_retries: metrics.counter(
            "gateway_email_retries",
            &format!(
                "Confirmation emails sent again after notification answered UNAVAILABLE (at most {} attempts each).",
                EMAIL_ATTEMPTS
            ),
        ),
        emails_not_sent: metrics.counter(
            "gateway_emails_not_sent",
            "Confirmation emails given up on: notification failed with an error other than UNAVAILABLE, or on every attempt.",
        ),
        orders: OrderApiClient::new(&config.order_api_url, config.order_api_timeout)?,
        faults: faults.clone(),
        background,
        notifications: NotificationClient::connect_lazy(
            &config.notification_addr,
            config.notification_timeout,
        )?,
    });
    Ok(axum::Router::new()
        .route("/checkout", post(checkout))
        .route("/orders/{id}", get(get_order))
        .route("/products", get(list_products))
        .with_state(state)
        .merge(fleet_faults::admin_router(faults))
        .merge(fleet_server_kit::health_router(None)))
}
