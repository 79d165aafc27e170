//! The provider's HTTP API: `POST /v1/charges`, answered the way Stripe answers.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use fleet_faults::Faults;
use fleet_server_kit::metrics::Counter;
use fleet_server_kit::{ApiJson, Metrics};

use crate::config::Config;
use fleet_faults::FaultPoint;
use serde::{Deserialize, Serialize};

/// This service's fault points (`FLEET_FAULTS`, `/admin/faults`, baggage), each checked below.
pub const PROVIDER: FaultPoint = FaultPoint {
    name: "payment.provider",
    about: "the external provider: latency, an error status, or a hang of `timeout`",
};
pub const FAULT_POINTS: &[FaultPoint] = &[PROVIDER];

#[derive(Debug, Deserialize)]
pub struct ChargeRequest {
    pub amount: i64,
    pub currency: String,
    pub card_number: String,
    #[serde(default)]
    pub description: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Charge {
    pub id: String,
    pub object: String,
    pub amount: i64,
    pub currency: String,
    pub status: String,
}

fn card_error(
    status: StatusCode,
    code: &str,
    decline_code: Option<&str>,
    message: &str,
) -> Response {
    let kind = if status == StatusCode::PAYMENT_REQUIRED {
        "card_error"
    } else {
        "api_error"
    };
    let mut error = serde_json::json!({"type": kind, "code": code, "message": message});
    if let Some(d) = decline_code {
        error["decline_code"] = serde_json::Value::from(d);
    }
    (status, Json(serde_json::json!({ "error": error }))).into_response()
}

/// Most idempotency keys remembered; the oldest are forgotten first (Stripe keeps 24 hours).
pub const MAX_IDEMPOTENCY_KEYS: usize = 100_000;
/// Longest idempotency key accepted (Stripe's limit).
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

#[derive(Clone, Debug, Serialize)]
pub struct KeptCharge {
    pub idempotency_key: String,
    pub status: u16,
    pub body: serde_json::Value,
    pub description: Option<String>,
}

enum Slot {
    InFlight,
    Done(KeptCharge),
}

/// What each idempotency key was answered, so a repeat gets the first answer, not a new charge.
#[derive(Default)]
struct Ledger {
    by_key: std::collections::HashMap<String, Slot>,
    order: std::collections::VecDeque<String>,
    charges_created: u64,
    replays: u64,
}

#[derive(Clone)]
struct AppState {
    config: Config,
    faults: Faults,
    ledger: std::sync::Arc<std::sync::Mutex<Ledger>>,
    key_refused: Counter,
    keys_forgotten: Counter,
}

fn lock(ledger: &std::sync::Mutex<Ledger>) -> std::sync::MutexGuard<'_, Ledger> {
    ledger.lock().unwrap_or_else(|p| p.into_inner())
}

fn idempotency_key(headers: &axum::http::HeaderMap) -> Result<Option<String>, ()> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    match value.to_str() {
        Ok(k) if !k.is_empty() && k.len() <= MAX_IDEMPOTENCY_KEY_LEN => Ok(Some(k.to_owned())),
        _ => Err(()),
    }
}

async fn create_charge(
    axum::extract::State(state): axum::extract::State<AppState>,
    headers: axum::http::HeaderMap,
    ApiJson(req): ApiJson<ChargeRequest>,
) -> Response {
    let key = match idempotency_key(&headers) {
        Ok(key) => key,
        Err(()) => {
            state.key_refused.inc();
            return card_error(
                StatusCode::BAD_REQUEST,
                "idempotency_key_invalid",
                None,
                "Idempotency-Key must be 1 to 255 visible ASCII characters.",
            );
        }
    };
    if let Some(key) = &key {
        let mut ledger = lock(&state.ledger);
        match ledger.by_key.get(key) {
            Some(Slot::Done(kept)) => {
                let kept = kept.clone();
                ledger.replays += 1;
                let status = StatusCode::from_u16(kept.status).unwrap_or(StatusCode::OK);
                return (status, [("idempotent-replayed", "true")], Json(kept.body))
                    .into_response();
            }
            Some(Slot::InFlight) => {
                return card_error(
                    StatusCode::CONFLICT,
                    "idempotency_key_in_use",
                    None,
                    "A request with this Idempotency-Key is still being processed.",
                );
            }
            None => {
                ledger.by_key.insert(key.clone(), Slot::InFlight);
            }
        }
    }
    // If the caller hangs up mid-charge this future is dropped: free the key, or every retry
    // would be told "in use" forever.
    let _release = key.as_ref().map(|k| ReleaseInFlight {
        ledger: state.ledger.clone(),
        key: k.clone(),
    });
    let description = req.description.clone();
    let answer = decide(&state, &headers, req).await;
    let status = answer.status();
    if let Some(key) = key {
        // A card's outcome (charged or declined) is kept; a fault before the charge ran is
        // not, so a retry with the same key tries again.
        let outcome = status.is_success() || status == StatusCode::PAYMENT_REQUIRED;
        let (parts, body) = answer.into_parts();
        let bytes = axum::body::to_bytes(body, 64 * 1024)
            .await
            .unwrap_or_default();
        let mut ledger = lock(&state.ledger);
        if outcome {
            let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
            ledger.by_key.insert(
                key.clone(),
                Slot::Done(KeptCharge {
                    idempotency_key: key.clone(),
                    status: status.as_u16(),
                    body,
                    description,
                }),
            );
            ledger.order.push_back(key);
            while ledger.order.len() > MAX_IDEMPOTENCY_KEYS {
                if let Some(old) = ledger.order.pop_front() {
                    ledger.by_key.remove(&old);
                    state.keys_forgotten.inc();
                }
            }
        } else {
            ledger.by_key.remove(&key);
        }
        if status.is_success() {
            ledger.charges_created += 1;
        }
        return Response::from_parts(parts, axum::body::Body::from(bytes));
    }
    if status.is_success() {
        lock(&state.ledger).charges_created += 1;
    }
    answer
}

struct ReleaseInFlight {
    ledger: std::sync::Arc<std::sync::Mutex<Ledger>>,
    key: String,
}

impl Drop for ReleaseInFlight {
    fn drop(&mut self) {
        let mut ledger = lock(&self.ledger);
        if matches!(ledger.by_key.get(&self.key), Some(Slot::InFlight)) {
            ledger.by_key.remove(&self.key);
        }
    }
}

#[derive(Debug, Deserialize)]
struct ChargeSearch {
    idempotency_key: Option<String>,
}

/// `GET /v1/charges?idempotency_key=K`: what the provider answered that key (`data` empty when
/// it never saw it), and how many charges it created and replayed in all. Stripe's own answer
/// to "did that charge go through?" is its charge search; this is the stand-in's.
async fn search_charges(
    axum::extract::State(state): axum::extract::State<AppState>,
    query: axum::extract::Query<ChargeSearch>,
) -> Json<serde_json::Value> {
    let ledger = lock(&state.ledger);
    let data: Vec<&KeptCharge> = match &query.idempotency_key {
        Some(key) => match ledger.by_key.get(key) {
            Some(Slot::Done(kept)) => vec![kept],
            _ => vec![],
        },
        None => ledger
            .order
            .iter()
            .filter_map(|k| match ledger.by_key.get(k) {
                Some(Slot::Done(kept)) => Some(kept),
                _ => None,
            })
            .collect(),
    };
    Json(serde_json::json!({
        "object": "list",
        "data": data,
        "charges_created": ledger.charges_created,
        "replays": ledger.replays,
    }))
}

async fn decide(state: &AppState, headers: &axum::http::HeaderMap, req: ChargeRequest) -> Response {
    tokio::time::sleep(state.config.latency).await;
    // The fault point `payment.provider`: a slow, failing or hanging third party.
    if let Some(fault) = state.faults.check_headers(PROVIDER, headers) {
        fault.delay().await;
        if let Some(hang) = fault.spec.timeout {
            tokio::time::sleep(hang).await;
        }
        if let Some(status) = fault.spec.error {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return card_error(
                status,
                "processing_error",
                None,
                "An error occurred while processing your card.",
            );
        }
    }
    if req.amount <= 0 {
        return card_error(
            StatusCode::BAD_REQUEST,
            "amount_too_small",
            None,
            "amount must be positive",
        );
    }
    match req.card_number.as_str() {
        "4000000000000002" => card_error(
            StatusCode::PAYMENT_REQUIRED,
            "card_declined",
            Some("generic_decline"),
            "Your card was declined.",
        ),
        "4000000000009995" => card_error(
            StatusCode::PAYMENT_REQUIRED,
            "card_declined",
            Some("insufficient_funds"),
            "Your card has insufficient funds.",
        ),
        "4000000000000069" => card_error(
            StatusCode::PAYMENT_REQUIRED,
            "expired_card",
            Some("expired_card"),
            "Your card has expired.",
        ),
        "4000000000000119" => card_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "processing_error",
            None,
            "An error occurred while processing your card.",
        ),
        _ => Json(Charge {
            id: format!("ch_{}", uuid::Uuid::new_v4().simple()),
            object: "charge".into(),
            amount: req.amount,
            currency: req.currency.to_lowercase(),
            status: "succeeded".into(),
        })
        .into_response(),
    }
}

/// The provider's routes, its refusals and forgotten keys counted in `metrics`.
pub fn router(config: Config, faults: Faults, metrics: &Metrics) -> Router {
    let keys_forgotten = metrics.counter(
        "provider_idempotency_keys_forgotten",
        &format!(
            "Idempotency keys forgotten, oldest first, to keep at most {MAX_IDEMPOTENCY_KEYS} \
             (a repeat of one is charged again)"
        ),
    );
    Router::new()
        .route("/v1/charges", post(create_charge).get(search_charges))
        .with_state(AppState {
            config,
            faults: faults.clone(),
            ledger: Default::default(),
            key_refused: metrics.idempotency_key_refused().clone(),
            keys_forgotten,
        })
        .merge(fleet_faults::admin_router(faults))
        .merge(fleet_server_kit::health_router(None))
}
