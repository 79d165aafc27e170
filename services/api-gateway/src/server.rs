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
use order_api::model::{CreateOrder, Order, OrderItem};
use serde::{Deserialize, Serialize};

use crate::Config;

const ORDER_API: &str = "order-api";

#[derive(Clone)]
pub struct AppState {
    orders: OrderApiClient,
    notifications: NotificationClient,
}

/// What `POST /checkout` answers with 201.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckoutResponse {
    pub order_id: String,
    pub status: String,
    pub total_cents: i64,
    pub currency: String,
    pub items: Vec<OrderItem>,
    /// Whether the confirmation email went out; a failed email does not fail the checkout.
    pub email_sent: bool,
    /// Paste into Grafana (or `fleet trace`) to see this request's trace.
    pub trace_id: Option<String>,
}

/// order-api's own errors pass through with their status and body; transport failures name it.
fn upstream(err: OrderApiError) -> Response {
    match err {
        OrderApiError::Status { status, body } => {
            let status = StatusCode::from_u16(status.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
            (status, Json(body)).into_response()
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

async fn checkout(
    State(state): State<Arc<AppState>>,
    ApiJson(req): ApiJson<CreateOrder>,
) -> Response {
    let order = match state.orders.create_order(&req).await {
        Ok(order) => order,
        Err(err) => return upstream(err),
    };
    let email_sent = send_confirmation(&state, &order).await;
    (
        StatusCode::CREATED,
        Json(CheckoutResponse {
            order_id: order.id,
            status: order.status,
            total_cents: order.total_cents,
            currency: order.currency,
            items: order.items,
            email_sent,
            trace_id: fleet_telemetry::current_trace_id(),
        }),
    )
        .into_response()
}

async fn send_confirmation(state: &AppState, order: &Order) -> bool {
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
    match state.notifications.send_email(request).await {
        Ok(_) => true,
        Err(status) => {
            tracing::warn!(code = ?status.code(), message = status.message(), "confirmation email not sent");
            false
        }
    }
}

async fn get_order(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Response {
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

pub fn router(config: &Config) -> anyhow::Result<axum::Router> {
    let state = Arc::new(AppState {
        orders: OrderApiClient::new(&config.order_api_url, config.order_api_timeout)?,
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
        .merge(fleet_server_kit::health_router(None)))
}
