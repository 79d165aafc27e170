//! Load shedding: past `MAX_IN_FLIGHT` requests in flight a service answers at once — `503
//! overloaded` with `Retry-After` (gRPC: `UNAVAILABLE`) — instead of queueing, so what a service
//! holds under overload (buffers, futures, connections to its dependencies) is bounded by design.
//!
//! Unlike tower's `ConcurrencyLimit`, which makes the request wait for a slot (and so grows the
//! queue, and the memory, with the overload), this never waits.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::Semaphore;

use crate::ApiError;
use crate::metrics::{Counter, Metrics};

/// `MAX_IN_FLIGHT`'s default: requests one service serves at once before it sheds. Normal load
/// is far below it (200 checkouts/s at ~35 ms is ~7 in flight); `fleet load`'s open model
/// stops sending at 256 in flight, so the bench's overload steps reach it but never pass it.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 256;

/// The `error.type` of a shed request's server span, and the JSON error code it is answered with.
pub const OVERLOADED: &str = "overloaded";

/// Paths never shed (nor counted in flight): probes and scrapes must answer under overload, or
/// an orchestrator restarts a service that is merely busy.
const NEVER_SHED: &[&str] = &[
    "/healthz",
    "/readyz",
    "/metrics",
    "/grpc.health.v1.Health/Check",
];

/// `MAX_IN_FLIGHT` from the environment (at least 1), or [`DEFAULT_MAX_IN_FLIGHT`].
pub fn max_in_flight_from_env() -> anyhow::Result<usize> {
    let raw = crate::env_or("MAX_IN_FLIGHT", &DEFAULT_MAX_IN_FLIGHT.to_string());
    match raw.trim().parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => anyhow::bail!("MAX_IN_FLIGHT: {raw:?} is not a whole number of at least 1"),
    }
}

/// The shedding layer's state: one per started service, shared by all its routes.
#[derive(Clone)]
pub(crate) struct Shedder {
    limit: usize,
    permits: Arc<Semaphore>,
    in_flight: Gauge,
    shed: Counter,
}

impl Shedder {
    /// A limit of `limit` requests in flight, its counters registered in `metrics`.
    pub(crate) fn new(limit: usize, metrics: &Metrics) -> Self {
        let limit = limit.clamp(1, Semaphore::MAX_PERMITS);
        let shed = metrics.counter(
            "requests_shed",
            &format!(
                "Requests answered at once with 503 overloaded (gRPC UNAVAILABLE) because \
                 {limit} were already in flight (MAX_IN_FLIGHT)"
            ),
        );
        let in_flight = Gauge::default();
        metrics.register_gauge(
            "requests_in_flight",
            &format!("Requests being served now; past {limit} (MAX_IN_FLIGHT) they are shed"),
            &in_flight,
        );
        Self {
            limit,
            permits: Arc::new(Semaphore::new(limit)),
            in_flight,
            shed,
        }
    }
}

/// Decrements the in-flight gauge however the request ends (answered, or dropped mid-way).
struct InFlight(Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The middleware (inside the server-span one, so a shed request is a span with
/// `error.type=overloaded`).
pub(crate) async fn shed_past_limit(
    State(shedder): State<Shedder>,
    req: Request,
    next: Next,
) -> Response {
    if NEVER_SHED.contains(&req.uri().path()) {
        return next.run(req).await;
    }
    let Ok(_permit) = shedder.permits.clone().try_acquire_owned() else {
        shedder.shed.inc();
        return overloaded(shedder.limit, is_grpc(req.headers()));
    };
    shedder.in_flight.inc();
    let _in_flight = InFlight(shedder.in_flight.clone());
    next.run(req).await
}

fn is_grpc(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/grpc"))
}

/// The answer to a shed request. Not logged: under overload a log line per refusal would add
/// to the load it refuses; the counter and the span say it.
fn overloaded(limit: usize, grpc: bool) -> Response {
    let message = format!("more than {limit} requests in flight; retry later");
    let mut response = if grpc {
        // Trailers-only: the status in the headers, no body. UNAVAILABLE is the code gRPC
        // clients retry (with backoff).
        let mut response =
            (StatusCode::OK, [(header::CONTENT_TYPE, "application/grpc")]).into_response();
        let headers = response.headers_mut();
        headers.insert("grpc-status", HeaderValue::from_static("14"));
        if let Ok(v) = HeaderValue::from_str(&message.replace(' ', "%20")) {
            headers.insert("grpc-message", v);
        }
        headers.insert(
            header::RETRY_AFTER,
            HeaderValue::from_static(crate::RETRY_AFTER_SECONDS),
        );
        response
    } else {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, OVERLOADED, message).into_quiet_response()
    };
    response
        .extensions_mut()
        .insert(fleet_telemetry::server::ErrorType(OVERLOADED));
    response
}
