//! Routes: `GET /products`, `POST /orders`, `GET /orders/{id}`, plus health.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use fleet_proto::payment::v1::ChargeRequest;
use fleet_server_kit::{ApiError, ApiJson};
use payment_api::client::PaymentClient;
use tonic::Code;
use tracing::Instrument as _;

use crate::Config;
use crate::model::{CreateOrder, MAX_ITEMS, MAX_QUANTITY, Order, Product, ProductList};
use crate::store::{DbFaults, NewLine, Store};
use fleet_faults::Faults;
use payment_api::client::CallOptions;

const CURRENCY: &str = "USD";
const PAYMENT_API: &str = "payment-api";

#[derive(Clone)]
pub struct AppState {
    store: Store,
    payments: PaymentClient,
    faults: Faults,
}

fn db_error(err: sqlx::Error) -> ApiError {
    match err {
        sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed => {
            ApiError::upstream(
                StatusCode::SERVICE_UNAVAILABLE,
                "database",
                format!("database unavailable: {err}"),
            )
        }
        other => ApiError::internal(format!("database error: {other}")),
    }
}

async fn list_products(State(state): State<Arc<AppState>>) -> Result<Json<ProductList>, ApiError> {
    let products = state.store.list_products().await.map_err(db_error)?;
    Ok(Json(ProductList { products }))
}

fn parse_order_id(id: &str) -> Result<String, ApiError> {
    uuid::Uuid::parse_str(id)
        .map(|u| u.to_string())
        .map_err(|_| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_order_id",
                "order id must be a UUID",
            )
            .with_field("id")
        })
}

async fn get_order(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<Order>, ApiError> {
    let id = parse_order_id(&id)?;
    match state
        .store
        .get_order(&id, n_plus_one(&state.faults))
        .await
        .map_err(db_error)?
    {
        Some(order) => Ok(Json(order)),
        None => Err(ApiError::not_found(
            "order_not_found",
            format!("no order {id}"),
        )),
    }
}

/// Everything that can be checked without the database, so bad input writes nothing.
fn validate(req: &CreateOrder) -> Result<(), ApiError> {
    if !fleet_server_kit::valid_email(&req.customer_email) {
        return Err(ApiError::invalid(
            "customer_email",
            "customer_email must be a valid email address",
        ));
    }
    if req.items.is_empty() {
        return Err(ApiError::invalid(
            "items",
            "items must list at least one product",
        ));
    }
    if req.items.len() > MAX_ITEMS {
        return Err(ApiError::invalid(
            "items",
            format!("at most {MAX_ITEMS} items per order"),
        ));
    }
    for (i, item) in req.items.iter().enumerate() {
        if item.sku.trim().is_empty() || item.sku.len() > 64 {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_sku",
                "sku must be 1 to 64 characters",
            )
            .with_field(&format!("items[{i}].sku")));
        }
        if !(1..=MAX_QUANTITY).contains(&item.quantity) {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_quantity",
                format!(
                    "quantity must be between 1 and {MAX_QUANTITY}, got {}",
                    item.quantity
                ),
            )
            .with_field(&format!("items[{i}].quantity")));
        }
    }
    payment_api::card::validate_card_number(&req.card_number)
        .map_err(|m| ApiError::invalid("card_number", m))
}

async fn create_order(
    State(state): State<Arc<AppState>>,
    ApiJson(req): ApiJson<CreateOrder>,
) -> Response {
    let span = tracing::info_span!(
        "createOrder",
        otel.kind = "internal",
        otel.status_code = tracing::field::Empty,
        error.type = tracing::field::Empty,
        app.order.id = tracing::field::Empty,
        app.order.items = req.items.len() as i64,
    );
    // Its own task: a caller that hangs up (a timeout upstream) must not cancel the work
    // half-way and strand a `pending` order; the order still ends paid or payment_failed.
    let task =
        tokio::spawn(async move { create_order_inner(&state, req).await }.instrument(span.clone()));
    let result = match task.await {
        Ok(result) => result,
        Err(e) => Err(ApiError::internal(format!("order task failed: {e}"))),
    };
    match result {
        Ok(order) => {
            let location = format!("/orders/{}", order.id);
            (
                StatusCode::CREATED,
                [(header::LOCATION, location)],
                Json(order),
            )
                .into_response()
        }
        Err(err) => {
            if err.status.is_server_error() {
                span.record("otel.status_code", "ERROR");
                span.record("error.type", err.code.as_str());
            }
            err.into_response()
        }
    }
}

async fn create_order_inner(state: &AppState, req: CreateOrder) -> Result<Order, ApiError> {
    validate(&req)?;
    let mut skus: Vec<String> = req.items.iter().map(|i| i.sku.clone()).collect();
    skus.sort();
    skus.dedup();
    let products: HashMap<String, Product> = state
        .store
        .products_by_sku(&skus)
        .await
        .map_err(db_error)?
        .into_iter()
        .map(|p| (p.sku.clone(), p))
        .collect();
    let mut lines = Vec::with_capacity(req.items.len());
    for (i, item) in req.items.iter().enumerate() {
        let Some(product) = products.get(&item.sku) else {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "unknown_sku",
                format!("no product with sku {:?}", item.sku),
            )
            .with_field(&format!("items[{i}].sku")));
        };
        lines.push(NewLine {
            sku: item.sku.clone(),
            name: product.name.clone(),
            quantity: item.quantity,
            unit_price_cents: product.price_cents,
        });
    }
    let total: i64 = lines.iter().map(|l| l.quantity * l.unit_price_cents).sum();
    let id = uuid::Uuid::new_v4().to_string();
    tracing::Span::current().record("app.order.id", id.as_str());
    // Fault points around the write: a neighbour's lock, an exhausted pool, a slow or broken query.
    if let Some(fault) = state.faults.check("order.db.lock") {
        state.store.hold_lock(fault.delay).await.map_err(db_error)?;
    }
    if let Some(fault) = state.faults.check("order.db.pool") {
        state.store.exhaust_pool(fault.delay).await;
    }
    let db_faults = match state.faults.check("order.db") {
        Some(fault) => DbFaults {
            slow_query: (!fault.delay.is_zero()).then_some(fault.delay),
            broken: fault.spec.error.is_some(),
        },
        None => DbFaults::default(),
    };
    state
        .store
        .insert_order(&id, &req.customer_email, CURRENCY, &lines, db_faults)
        .await
        .map_err(db_error)?;

    let call = match state.faults.check("order.payment") {
        Some(fault) => CallOptions {
            propagate: fault.mode() != Some("drop_context"),
            timeout: fault.spec.timeout,
        },
        None => CallOptions::default(),
    };
    let charge = state
        .payments
        .charge(
            call,
            ChargeRequest {
                order_id: id.clone(),
                amount_cents: total,
                currency: CURRENCY.into(),
                card_number: req.card_number.clone(),
            },
        )
        .await;

    // Whatever the payment did, the order ends paid or payment_failed, never pending.
    let (status, payment_id, failure, error) = match charge {
        Ok(c) => ("paid", Some(c.charge_id), None, None),
        Err(status) => {
            let message = status.message().to_owned();
            let error = match status.code() {
                Code::FailedPrecondition => ApiError::new(
                    StatusCode::PAYMENT_REQUIRED,
                    "payment_declined",
                    message.clone(),
                ),
                Code::InvalidArgument => ApiError::invalid("card_number", message.clone()),
                Code::DeadlineExceeded => ApiError::upstream(
                    StatusCode::GATEWAY_TIMEOUT,
                    PAYMENT_API,
                    format!("payment-api timed out: {message}"),
                ),
                Code::Unavailable => ApiError::upstream(
                    StatusCode::SERVICE_UNAVAILABLE,
                    PAYMENT_API,
                    format!("payment-api unavailable: {message}"),
                ),
                _ => ApiError::upstream(
                    StatusCode::BAD_GATEWAY,
                    PAYMENT_API,
                    format!("payment-api failed: {message}"),
                ),
            };
            ("payment_failed", None, Some(message), Some(error))
        }
    };
    state
        .store
        .finish_order(&id, status, payment_id.as_deref(), failure.as_deref())
        .await
        .map_err(db_error)?;
    if let Some(mut error) = error {
        error.details = Some(Box::new(
            serde_json::json!({ "order_id": id, "order_status": status }),
        ));
        return Err(error);
    }
    state
        .store
        .get_order(&id, n_plus_one(&state.faults))
        .await
        .map_err(db_error)?
        .ok_or_else(|| ApiError::internal("order vanished after it was written"))
}

/// Routes plus `/healthz` and `/readyz` (ready when the database answers).
fn n_plus_one(faults: &Faults) -> bool {
    faults
        .check("order.lookup")
        .is_some_and(|f| f.mode() == Some("n_plus_one"))
}

pub fn router(config: &Config, store: Store, faults: Faults) -> anyhow::Result<axum::Router> {
    let payments = PaymentClient::connect_lazy(&config.payment_api_addr, config.payment_timeout)?;
    let state = Arc::new(AppState {
        store: store.clone(),
        payments,
        faults: faults.clone(),
    });
    let readiness: fleet_server_kit::Readiness = Arc::new(move || {
        let store = store.clone();
        Box::pin(async move { store.ping().await.map_err(|e| format!("database: {e}")) })
    });
    Ok(axum::Router::new()
        .route("/products", get(list_products))
        .route("/orders", post(create_order))
        .route("/orders/{id}", get(get_order))
        .with_state(state)
        .merge(fleet_faults::admin_router(faults))
        .merge(fleet_server_kit::health_router(Some(readiness))))
}
