//! The provider's HTTP API: `POST /v1/charges`, answered the way Stripe answers.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use fleet_faults::Faults;
use fleet_server_kit::ApiJson;

use crate::config::Config;
use serde::{Deserialize, Serialize};

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

#[derive(Clone)]
struct AppState {
    config: Config,
    faults: Faults,
}

async fn create_charge(
    axum::extract::State(state): axum::extract::State<AppState>,
    headers: axum::http::HeaderMap,
    ApiJson(req): ApiJson<ChargeRequest>,
) -> Response {
    tokio::time::sleep(state.config.latency).await;
    // The fault point `payment.provider`: a slow, failing or hanging third party.
    if let Some(fault) = state.faults.check_headers("payment.provider", &headers) {
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

pub fn router(config: Config, faults: Faults) -> Router {
    Router::new()
        .route("/v1/charges", post(create_charge))
        .with_state(AppState {
            config,
            faults: faults.clone(),
        })
        .merge(fleet_faults::admin_router(faults))
        .merge(fleet_server_kit::health_router(None))
}
