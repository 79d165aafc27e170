//! Load shedding: past `MAX_IN_FLIGHT` requests in flight a service answers at once — `503
//! overloaded` with `Retry-After` (gRPC: `UNAVAILABLE`) — instead of queueing, so what a service
//! holds under overload (buffers, futures, connections to its dependencies) is bounded by design.
//!
//! Unlike tower's `ConcurrencyLimit`, which makes the request wait for a slot (and so grows the
//! queue, and the memory, with the overload), this never waits.
//!
//! The limit can be lowered at run time per request (an [`InFlightLimit::lowered_by`] hook: the
//! services use a fault point, `order.shed:max_in_flight=2`), so a scenario can show shedding
//! with a handful of requests instead of hundreds.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::metrics::gauge::Gauge;

use crate::ApiError;
use crate::metrics::{Counter, Metrics};

/// `MAX_IN_FLIGHT`'s default: requests one service serves at once before it sheds. Normal load
/// is far below it (200 checkouts/s at ~35 ms is ~7 in flight), and so is saturation on 2 cores
/// (~420 checkouts/s at ~75 ms: ~32). Past that, more in flight is only a longer queue: with
/// 256 allowed, 800 checkouts/s offered got the same throughput as with 64 at a p50 of 777 ms
/// instead of 183 ms and 1.5x the memory (docs/performance.md).
pub const DEFAULT_MAX_IN_FLIGHT: usize = 64;

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

/// Asked once per request: a limit lower than the start-up one for this request, if any.
pub type LowerLimit = Arc<dyn Fn() -> Option<usize> + Send + Sync>;

/// How many requests a service serves at once: `MAX_IN_FLIGHT` from start-up, optionally
/// lowered at run time (never raised) by a hook. A bare `usize` converts into it.
#[derive(Clone)]
pub struct InFlightLimit {
    max: usize,
    lower: Option<LowerLimit>,
}

impl InFlightLimit {
    pub fn new(max: usize) -> Self {
        Self { max, lower: None }
    }

    /// `lower` is asked per request; a limit it returns applies to that request when it is
    /// below the start-up one (at least 1 is kept, so a lowered limit still serves).
    pub fn lowered_by(mut self, lower: impl Fn() -> Option<usize> + Send + Sync + 'static) -> Self {
        self.lower = Some(Arc::new(lower));
        self
    }

    /// The limit for the request being admitted now.
    fn now(&self) -> usize {
        match self.lower.as_ref().and_then(|lower| lower()) {
            Some(lowered) => lowered.clamp(1, self.max),
            None => self.max,
        }
    }
}

impl From<usize> for InFlightLimit {
    fn from(max: usize) -> Self {
        Self::new(max)
    }
}

/// The shedding layer's state: one per started service, shared by all its routes.
#[derive(Clone)]
pub(crate) struct Shedder {
    limit: InFlightLimit,
    /// Requests admitted and not yet answered (plus, for an instant, one being refused).
    admitted: Arc<AtomicUsize>,
    in_flight: Gauge,
    shed: Counter,
}

impl Shedder {
    /// A limit of `limit` requests in flight, its counters registered in `metrics`.
    pub(crate) fn new(mut limit: InFlightLimit, metrics: &Metrics) -> Self {
        limit.max = limit.max.max(1);
        let max = limit.max;
        let shed = metrics.counter(
            "requests_shed",
            &format!(
                "Requests answered at once with 503 overloaded (gRPC UNAVAILABLE) because \
                 {max} (MAX_IN_FLIGHT, or less when lowered at run time) were already in flight"
            ),
        );
        let in_flight = Gauge::default();
        metrics.register_gauge(
            "requests_in_flight",
            &format!("Requests being served now; past {max} (MAX_IN_FLIGHT) they are shed"),
            &in_flight,
        );
        Self {
            limit,
            admitted: Arc::new(AtomicUsize::new(0)),
            in_flight,
            shed,
        }
    }
}

/// Gives the slot back however the request ends (answered, refused, or dropped mid-way).
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
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
    let limit = shedder.limit.now();
    // Take a slot, then look: admitted only if fewer than `limit` were in flight before it, so
    // the limit holds exactly (a lowered limit too) without a lock.
    let before = shedder.admitted.fetch_add(1, Ordering::AcqRel);
    let _slot = Slot(shedder.admitted.clone());
    if before >= limit {
        shedder.shed.inc();
        return overloaded(limit, is_grpc(req.headers()));
    }
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
