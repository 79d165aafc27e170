//! `GET/PUT/DELETE /admin/faults`: arm and disarm this service's fault points at run time.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use fleet_server_kit::ApiError;

use crate::registry::Faults;
use crate::spec::{FaultSpec, parse_faults};

fn authorise(faults: &Faults, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(token) = faults.admin_token() else {
        return Ok(());
    };
    // The scheme is case-insensitive (RFC 9110 §11.1): `bearer` and `BEARER` are fine.
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    match given {
        Some(g) if constant_time_eq(g.as_bytes(), token.as_bytes()) => Ok(()),
        Some(_) => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "the bearer token is wrong",
        )),
        None => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing_token",
            "send Authorization: Bearer <FLEET_ADMIN_TOKEN>",
        )),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn listing(faults: &Faults) -> Json<serde_json::Value> {
    let points: Vec<_> = faults
        .points()
        .iter()
        .map(|p| serde_json::json!({"point": p.name, "what": p.about}))
        .collect();
    // During a quiz the answer stays hidden here too.
    let armed = if faults.hides_evidence() && !faults.armed().is_empty() {
        serde_json::json!({"hidden": "a quiz is running: find the fault from the traces"})
    } else {
        serde_json::json!(faults.armed())
    };
    Json(serde_json::json!({
        "service": faults.service(),
        "faults": armed,
        "points": points,
    }))
}

async fn get_faults(State(faults): State<Faults>, headers: HeaderMap) -> Response {
    match authorise(&faults, &headers) {
        Ok(()) => listing(&faults).into_response(),
        Err(e) => e.into_response(),
    }
}

/// The body is either JSON (`{"order.db": {"latency": "800ms", "p": 0.3}}`) or, as
/// `text/plain`, the `FLEET_FAULTS` grammar. It replaces what is armed; on any error nothing changes.
#[derive(serde::Deserialize)]
struct PutQuery {
    /// `?quiz=true`: arm without leaving `fault.injected` events (for `fleet quiz`).
    #[serde(default)]
    quiz: bool,
}

async fn put_faults(
    State(faults): State<Faults>,
    query: Result<Query<PutQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // The token first: nothing about the request is judged for a caller who may not make it.
    if let Err(e) = authorise(&faults, &headers) {
        return e.into_response();
    }
    let Query(query) = match query {
        Ok(q) => q,
        Err(e) => {
            return ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", e.body_text())
                .with_field("quiz")
                .into_response();
        }
    };
    let is_text = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("text/plain"));
    let parsed: Result<BTreeMap<String, FaultSpec>, ApiError> = if is_text {
        std::str::from_utf8(&body)
            .map_err(|_| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_fault_spec",
                    "the body is not UTF-8",
                )
            })
            .and_then(|text| {
                parse_faults(text).map_err(|e| {
                    ApiError::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "invalid_fault_spec",
                        e.to_string(),
                    )
                })
            })
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_fault_spec",
                format!("body must be a JSON object of point → fault: {e}"),
            )
        })
    };
    let result = parsed.and_then(|map| {
        faults.replace(map).map_err(|e| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_fault_spec",
                e.to_string(),
            )
        })
    });
    match result {
        Ok(()) => {
            faults.set_quiz(query.quiz);
            if !query.quiz {
                tracing::info!(faults = ?faults.armed(), "faults armed");
            }
            listing(&faults).into_response()
        }
        Err(e) => {
            faults.note_refused();
            e.into_response()
        }
    }
}

async fn delete_faults(State(faults): State<Faults>, headers: HeaderMap) -> Response {
    if let Err(e) = authorise(&faults, &headers) {
        return e.into_response();
    }
    let _ = faults.replace(BTreeMap::new());
    faults.set_quiz(false);
    tracing::info!("faults cleared");
    listing(&faults).into_response()
}

/// The admin routes, to merge into a service's router.
pub fn admin_router(faults: Faults) -> Router {
    Router::new()
        .route(
            "/admin/faults",
            get(get_faults).put(put_faults).delete(delete_faults),
        )
        .with_state(faults)
}
