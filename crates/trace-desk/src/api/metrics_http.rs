//! `GET /api/metrics/query_range` and `GET /api/metrics/query` (TraceQL metrics), bounded like
//! search: the same time budget (`DESK_QUERY_TIMEOUT`) and the same search slots, evaluated on
//! a blocking thread over a snapshot of the store.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::{ApiState, text};
use crate::metrics_query::{self, MetricsRequest};

/// `/api/metrics/query_range`.
pub(super) async fn query_range(
    State(state): State<ApiState>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    answer(state, params, false).await
}

/// `/api/metrics/query` (instant: one value per series over the window).
pub(super) async fn query_instant(
    State(state): State<ApiState>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    answer(state, params, true).await
}

async fn answer(state: ApiState, params: HashMap<String, String>, instant: bool) -> Response {
    let deadline = Instant::now() + state.query_timeout;
    let counters = Arc::clone(&state.metrics_counters);
    let req = match MetricsRequest::from_params(&params, instant) {
        Ok(r) => r,
        Err(e) => {
            counters.reject(e.reason());
            // Plain text, like search's 400s and Tempo's.
            return text(StatusCode::BAD_REQUEST, e.to_string());
        }
    };
    let store = state.store.clone();
    let outcome = match state
        .run_bounded(
            deadline,
            "metrics query",
            || metrics_query::out_of_time(&state.store, &req),
            {
                let req = req.clone();
                move |deadline| metrics_query::evaluate(&store, &req, Some(deadline))
            },
        )
        .await
    {
        Ok(outcome) => outcome,
        Err(failed) => return failed,
    };
    counters.answered(&outcome);
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        outcome.body,
    )
        .into_response()
}
