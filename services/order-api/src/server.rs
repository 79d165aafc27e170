//! Routes: `GET /products`, `POST /orders`, `GET /orders/{id}`, plus health.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use fleet_proto::payment::v1::ChargeRequest;
use fleet_server_kit::metrics::Counter;
use fleet_server_kit::{ApiError, ApiJson, Metrics};
use payment_api::client::PaymentClient;
use tonic::Code;
use tracing::Instrument as _;

use crate::Config;
use crate::model::{CreateOrder, MAX_ITEMS, MAX_QUANTITY, Order, Product, ProductList};
use crate::store::{DbFaults, NewLine, NewOrder, Store};
use fleet_faults::FaultPoint;
use fleet_faults::Faults;
use payment_api::client::CallOptions;

/// This service's fault points (`FLEET_FAULTS`, `/admin/faults`, baggage), each checked below.
pub const DB: FaultPoint = FaultPoint {
    name: "order.db",
    about: "INSERT orders: latency makes it a slow query (pg_sleep), error makes it fail in the database",
};
pub const DB_LOCK: FaultPoint = FaultPoint {
    name: "order.db.lock",
    about: "another session holds a lock on orders for `latency`, so the INSERT waits on it",
};
pub const DB_POOL: FaultPoint = FaultPoint {
    name: "order.db.pool",
    about: "connections are held elsewhere for `latency`: requests queue for one (pool exhaustion)",
};
pub const LOOKUP: FaultPoint = FaultPoint {
    name: "order.lookup",
    about: "mode=n_plus_one: reading an order fetches each item with its own query",
};
pub const PAYMENT: FaultPoint = FaultPoint {
    name: "order.payment",
    about: "the gRPC call to payment-api: mode=drop_context stops traceparent; timeout shortens its deadline",
};
pub const SHED: FaultPoint = FaultPoint {
    name: "order.shed",
    about: "max_in_flight=N lowers the load-shedding limit (MAX_IN_FLIGHT): past N requests in flight, 503 overloaded with Retry-After at once",
};
pub const FAULT_POINTS: &[FaultPoint] = &[DB, DB_LOCK, DB_POOL, LOOKUP, PAYMENT, SHED];

const CURRENCY: &str = "USD";
const PAYMENT_API: &str = "payment-api";

#[derive(Clone)]
pub struct AppState {
    store: Store,
    payments: PaymentClient,
    faults: Faults,
    counters: OrderCounters,
}

/// What order-api counts beyond the kit's refusals: finishing retries and the reconciler's
/// work. `Default` gives unregistered counters (for a reconciler built outside the service).
#[derive(Clone, Default)]
pub struct OrderCounters {
    pub finish_retries: Counter,
    pub finish_gave_up: Counter,
    pub reconciled_paid: Counter,
    pub reconciled_payment_failed: Counter,
}

impl OrderCounters {
    /// Registered in `metrics`, so `GET /metrics` shows them.
    pub fn register(metrics: &Metrics) -> Self {
        let finish_retries = metrics.counter(
            "order_finish_retries",
            &format!(
                "Retries of recording an order's outcome after a transient database error \
                 (at most {} per order: FINISH_ATTEMPTS = {FINISH_ATTEMPTS})",
                FINISH_ATTEMPTS - 1
            ),
        );
        let finish_gave_up = metrics.counter(
            "order_finish_gave_up",
            &format!(
                "Orders left pending for the reconciler because recording the outcome failed \
                 {FINISH_ATTEMPTS} times (FINISH_ATTEMPTS) or not transiently"
            ),
        );
        let mut reconciled = metrics
            .counters_by(
                "orders_reconciled",
                "Orders left pending past ORDER_PENDING_BOUND_MS that the reconciler settled, \
                 by the status it recorded",
                "status",
                &["paid", "payment_failed"],
            )
            .into_iter();
        Self {
            finish_retries,
            finish_gave_up,
            reconciled_paid: reconciled.next().unwrap_or_default(),
            reconciled_payment_failed: reconciled.next().unwrap_or_default(),
        }
    }
}

/// Whether a database error means "the database is not there right now" (retry later) rather
/// than "this statement is wrong": pool and I/O failures, and the SQLSTATE classes 08
/// (connection exception), 57P0x (operator intervention: shutdown, crash, cannot connect now)
/// and 53 (insufficient resources).
pub fn transient(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::Io(_)
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|c| c.starts_with("08") || c.starts_with("57P0") || c.starts_with("53")),
        _ => false,
    }
}

/// 503 (with `Retry-After`) when the database is away, 500 otherwise; never the database's own
/// message, which can carry data and schema details. The log line and the span keep it.
fn db_error(err: sqlx::Error) -> ApiError {
    if transient(&err) {
        tracing::warn!(error = %err, "database unavailable");
        ApiError::upstream(
            StatusCode::SERVICE_UNAVAILABLE,
            "database",
            "the database is unavailable; retry shortly",
        )
    } else {
        tracing::error!(error = %err, "database error");
        ApiError::internal("the database could not complete the request")
    }
}

async fn list_products(State(state): State<Arc<AppState>>) -> Result<Json<ProductList>, ApiError> {
    let products = state.store.list_products().await.map_err(db_error)?;
    Ok(Json(ProductList { products }))
}

fn parse_order_id(id: &str) -> Result<String, ApiError> {
    crate::model::canonical_order_id(id).ok_or_else(invalid_order_id)
}

/// `400 invalid_order_id`: the answer for an order id that is not one, at any service.
pub fn invalid_order_id() -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "invalid_order_id",
        "order id must be a UUID",
    )
    .with_field("id")
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
        if item.sku.trim().is_empty()
            || item.sku.len() > 64
            || item.sku.chars().any(|c| c.is_control())
        {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_sku",
                "sku must be 1 to 64 printable characters",
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
    headers: axum::http::HeaderMap,
    ApiJson(req): ApiJson<CreateOrder>,
) -> Response {
    let key = match fleet_server_kit::idempotency_key(&headers) {
        Ok(key) => key,
        Err(err) => return err.into_response(),
    };
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
    let task = tokio::spawn(order_task(state, req, key).instrument(span.clone()));
    let result = match task.await {
        Ok(result) => result,
        Err(e) => Err(ApiError::internal(format!("order task failed: {e}"))),
    };
    match result {
        Ok((order, replayed)) => {
            let location = format!("/orders/{}", order.id);
            let mut response = (
                StatusCode::CREATED,
                [(header::LOCATION, location)],
                Json(order),
            )
                .into_response();
            if replayed {
                response.headers_mut().insert(
                    "idempotent-replayed",
                    axum::http::HeaderValue::from_static("true"),
                );
            }
            response
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

/// How many times, and how far apart, finishing an order is tried before the answer says
/// "pending, retry" (about 3 s in all); the reconciler finishes what is left.
pub const FINISH_ATTEMPTS: u32 = 5;
pub const FINISH_FIRST_BACKOFF: std::time::Duration = std::time::Duration::from_millis(100);

/// The order's work as a task: `create_order_inner`'s state machine (~9 KiB in a debug build)
/// waits in a box, so what `tokio::spawn` moves by value on every checkout is a few hundred
/// bytes, not all of it (tokio boxes only futures past 16 KiB; memcpy was 15.8% of the
/// services' self time, docs/performance.md).
async fn order_task(
    state: Arc<AppState>,
    req: CreateOrder,
    key: String,
) -> Result<(Order, bool), ApiError> {
    Box::pin(create_order_inner(&state, req, &key)).await
}

/// Returns the order, and whether it was an earlier request's (same idempotency key).
async fn create_order_inner(
    state: &AppState,
    req: CreateOrder,
    key: &str,
) -> Result<(Order, bool), ApiError> {
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
    if let Some(fault) = state.faults.check(DB_LOCK) {
        state.store.hold_lock(fault.delay).await.map_err(db_error)?;
    }
    if let Some(fault) = state.faults.check(DB_POOL) {
        state.store.exhaust_pool(fault.delay).await;
    }
    let db_faults = match state.faults.check(DB) {
        Some(fault) => DbFaults {
            slow_query: (!fault.delay.is_zero()).then_some(fault.delay),
            broken: fault.spec.error.is_some(),
        },
        None => DbFaults::default(),
    };
    if let Err(err) = state
        .store
        .insert_order(
            NewOrder {
                id: &id,
                email: &req.customer_email,
                currency: CURRENCY,
                idempotency_key: key,
                lines: &lines,
            },
            db_faults,
        )
        .await
    {
        // The key is taken: an earlier request (or one racing us) made this order. No lookup
        // before the INSERT, so a first checkout costs no extra query; a repeat shows in its
        // trace as an INSERT refused with 23505, then the lookup.
        if let sqlx::Error::Database(db) = &err
            && db.is_unique_violation()
            && let Some(existing) = state.store.order_id_by_key(key).await.map_err(db_error)?
        {
            return resume(state, &existing, &req).await;
        }
        return Err(db_error(err));
    }
    pay_and_finish(state, &id, total, &req.card_number).await
}

/// An order made by an earlier request with the same key: answer what it became.
async fn resume(state: &AppState, id: &str, req: &CreateOrder) -> Result<(Order, bool), ApiError> {
    tracing::Span::current().record("app.order.id", id);
    let order = state
        .store
        .get_order(id, false)
        .await
        .map_err(db_error)?
        .ok_or_else(|| ApiError::internal("order vanished"))?;
    match order.status.as_str() {
        "paid" => Ok((order, true)),
        "payment_failed" => {
            let mut error = ApiError::new(
                StatusCode::PAYMENT_REQUIRED,
                "payment_failed",
                order
                    .failure_reason
                    .clone()
                    .unwrap_or_else(|| "payment failed".into()),
            );
            error.details = Some(Box::new(
                serde_json::json!({ "order_id": id, "order_status": "payment_failed" }),
            ));
            Err(error)
        }
        _ => {
            // Still pending: the first request is in flight, or died after the charge. Paying
            // again here could race it, so say "in progress"; the first request or the
            // reconciler (within ORDER_PENDING_BOUND_MS) finishes it, and a retry then gets it.
            let _ = req;
            let mut error = ApiError::new(
                StatusCode::CONFLICT,
                "request_in_progress",
                "a request with this Idempotency-Key is still being processed; retry shortly",
            );
            error.details = Some(Box::new(
                serde_json::json!({ "order_id": id, "order_status": "pending" }),
            ));
            Err(error)
        }
    }
}

async fn pay_and_finish(
    state: &AppState,
    id: &str,
    total: i64,
    card_number: &str,
) -> Result<(Order, bool), ApiError> {
    let id = id.to_owned();
    let call = match state.faults.check(PAYMENT) {
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
                card_number: card_number.to_owned(),
                // One charge per order, however often it is retried.
                idempotency_key: format!("order-{id}"),
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
    finish_with_retries(
        &state.store,
        &state.counters,
        &id,
        status,
        payment_id.as_deref(),
        failure.as_deref(),
    )
    .await
    .map_err(|err| {
        // Charged (or not) but not recorded: the order exists, pending; a retry with the
        // same Idempotency-Key, or the reconciler, finishes it without charging again.
        let mut e = db_error(err);
        e.details = Some(Box::new(
            serde_json::json!({ "order_id": id, "order_status": "pending" }),
        ));
        e
    })?;
    if let Some(mut error) = error {
        error.details = Some(Box::new(
            serde_json::json!({ "order_id": id, "order_status": status }),
        ));
        return Err(error);
    }
    let order = state
        .store
        .get_order(&id, n_plus_one(&state.faults))
        .await
        .map_err(|err| {
            let mut e = db_error(err);
            e.details = Some(Box::new(
                serde_json::json!({ "order_id": id, "order_status": status }),
            ));
            e
        })?
        .ok_or_else(|| ApiError::internal("order vanished after it was written"))?;
    Ok((order, false))
}

/// Records an order's outcome, retrying a database that is away (a restart, a failover) with
/// doubling backoff, [`FINISH_ATTEMPTS`] times.
pub async fn finish_with_retries(
    store: &Store,
    counters: &OrderCounters,
    id: &str,
    status: &str,
    payment_id: Option<&str>,
    failure: Option<&str>,
) -> Result<(), sqlx::Error> {
    let backoff = fleet_server_kit::Backoff {
        attempts: FINISH_ATTEMPTS,
        first_backoff: FINISH_FIRST_BACKOFF,
    };
    let result = backoff
        .run(
            |_| store.finish_order(id, status, payment_id, failure),
            |err, attempt| {
                let again = transient(err);
                if again {
                    tracing::warn!(error = %err, attempt, "finishing the order failed; retrying");
                    counters.finish_retries.inc();
                }
                again
            },
        )
        .await;
    if result.is_err() {
        counters.finish_gave_up.inc();
    }
    result
}

/// Routes plus `/healthz` and `/readyz` (ready when the database answers).
fn n_plus_one(faults: &Faults) -> bool {
    faults
        .check(LOOKUP)
        .is_some_and(|f| f.mode() == Some("n_plus_one"))
}

pub fn router(
    config: &Config,
    store: Store,
    faults: Faults,
    counters: OrderCounters,
) -> anyhow::Result<axum::Router> {
    let payments = PaymentClient::connect_lazy(&config.payment_api_addr, config.payment_timeout)?;
    let state = Arc::new(AppState {
        store: store.clone(),
        payments,
        faults: faults.clone(),
        counters,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn size_of_output<F, Fut>(_: F) -> usize
    where
        F: FnOnce(Arc<AppState>, CreateOrder, String) -> Fut,
    {
        std::mem::size_of::<Fut>()
    }

    fn size_of_inner<'a, F, Fut>(_: F) -> usize
    where
        F: FnOnce(&'a AppState, CreateOrder, &'a str) -> Fut,
    {
        std::mem::size_of::<Fut>()
    }

    #[test]
    fn the_future_spawned_per_checkout_is_small_and_the_order_s_work_is_boxed() {
        let (spawned, inner) = (
            size_of_output(order_task),
            size_of_inner(create_order_inner),
        );
        assert!(spawned <= 512, "the spawned future is {spawned} bytes");
        assert!(
            inner >= 4 * spawned,
            "boxing pays only for a large future: {inner} bytes boxed, {spawned} spawned"
        );
    }
}
