//! Server spans: one axum middleware for every route of every service, HTTP or gRPC.
//!
//! gRPC services are served as an axum router (tonic's routes plus `/healthz`), so the same
//! middleware sees both kinds of request and applies the HTTP or the RPC conventions by
//! content type.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use http::{HeaderValue, Method};
use opentelemetry::baggage::BaggageExt as _;
use opentelemetry::trace::TraceContextExt as _;
use tracing::Instrument as _;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use crate::cancel::CancelGuard;
use crate::propagation;
use crate::status::{grpc_code_name, grpc_server_error, grpc_status_of};

/// Paths that probes hit every few seconds: traced, they would bury the traces learners look for.
const UNTRACED_PATHS: &[&str] = &[
    "/healthz",
    "/readyz",
    "/metrics",
    "/admin/faults",
    "/grpc.health.v1.Health/Check",
];

/// A response extension naming the error more precisely than its status does: the server span's
/// `error.type` (e.g. `overloaded` on a shed request's 503 or `UNAVAILABLE`). Semantic
/// conventions let `error.type` be a low-cardinality name of the error class when one is known.
#[derive(Debug, Clone, Copy)]
pub struct ErrorType(pub &'static str);

/// Baggage entries copied onto server spans, at most, so a hostile header cannot bloat spans.
const MAX_BAGGAGE_ATTRIBUTES: usize = 16;

/// The middleware: `router.layer(axum::middleware::from_fn(fleet_telemetry::server::trace_requests))`.
///
/// Serve with `into_make_service_with_connect_info::<SocketAddr>()` to get `client.address`.
pub async fn trace_requests(req: Request, next: Next) -> Response {
    if UNTRACED_PATHS.contains(&req.uri().path()) {
        return next.run(req).await;
    }
    let parent = propagation::extract(req.headers());
    let grpc = is_grpc(req.headers());
    // No route matched: for gRPC an unknown service, whose method must not name the span.
    let recognised = req.extensions().get::<MatchedPath>().is_some();
    let span = if grpc {
        rpc_span(&req, recognised)
    } else {
        http_span(&req)
    };
    let _ = span.set_parent(parent.clone());
    let allowed = baggage_attributes();
    for (key, (value, _)) in parent
        .baggage()
        .iter()
        .filter(|(k, _)| allowed.allows(k.as_str()))
        .take(MAX_BAGGAGE_ATTRIBUTES)
    {
        span.set_attribute(key.clone(), value.clone());
    }

    let mut guard = CancelGuard::new(
        span.clone(),
        if grpc {
            |span| {
                span.record("rpc.status_code", "CANCELLED");
            }
        } else {
            |_| {}
        },
    );
    let mut response = next.run(req).instrument(span.clone()).await;
    guard.disarm();

    // Recorded once: a second record of the same field would be a second attribute.
    let named = response.extensions().get::<ErrorType>().map(|t| t.0);
    if grpc {
        let (code, message) = grpc_status_of(response.status(), response.headers());
        span.record("rpc.status_code", grpc_code_name(code));
        if grpc_server_error(code) {
            span.record("error.type", named.unwrap_or(grpc_code_name(code)));
            span.record("otel.status_code", "ERROR");
            if let Some(message) = message {
                span.record("otel.status_description", message);
            }
        }
    } else {
        let status = response.status();
        span.record("http.response.status_code", i64::from(status.as_u16()));
        record_retry_after(&span, response.headers());
        if status.is_server_error() {
            span.record("error.type", named.unwrap_or(status.as_str()));
            span.record("otel.status_code", "ERROR");
        }
    }

    let sc = span.context().span().span_context().clone();
    if sc.is_valid() {
        // W3C Trace Context level 2 `traceresponse`, plus a plain id to paste into Grafana.
        let flags = if sc.is_sampled() { "01" } else { "00" };
        let value = format!("00-{}-{}-{flags}", sc.trace_id(), sc.span_id());
        if let Ok(v) = HeaderValue::from_str(&value) {
            response.headers_mut().insert("traceresponse", v);
        }
        if let Ok(v) = HeaderValue::from_str(&sc.trace_id().to_string()) {
            response.headers_mut().insert("x-trace-id", v);
        }
    }
    response
}

/// `Retry-After` (a shed request's 503, a 409) as the conventions' opt-in
/// `http.response.header.retry-after`: in a waterfall it tells "refused, come back" from a crash.
pub(crate) fn record_retry_after(span: &tracing::Span, headers: &http::HeaderMap) {
    if let Some(value) = headers
        .get(http::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
    {
        span.record("http.response.header.retry-after", value);
    }
}

fn is_grpc(headers: &http::HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/grpc"))
}

/// `server.address`/`server.port` as the client addressed us (`Host` or `:authority`).
fn server_address(req: &Request) -> (Option<String>, Option<i64>) {
    let authority = req
        .uri()
        .authority()
        .map(|a| a.as_str().to_owned())
        .or_else(|| {
            req.headers()
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_owned)
        });
    match authority.and_then(|a| a.parse::<http::uri::Authority>().ok()) {
        Some(a) => (Some(a.host().to_owned()), a.port_u16().map(i64::from)),
        None => (None, None),
    }
}

fn peer(req: &Request) -> Option<SocketAddr> {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| *addr)
}

fn protocol_version(version: http::Version) -> &'static str {
    match version {
        http::Version::HTTP_09 => "0.9",
        http::Version::HTTP_10 => "1.0",
        http::Version::HTTP_2 => "2",
        http::Version::HTTP_3 => "3",
        _ => "1.1",
    }
}

/// The method as the HTTP conventions record it: known methods as-is, anything else `_OTHER`.
pub fn method_attribute(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::CONNECT => "CONNECT",
        _ => "_OTHER",
    }
}

fn http_span(req: &Request) -> tracing::Span {
    let method = method_attribute(req.method());
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned());
    let name = match (&route, method) {
        (_, "_OTHER") => "HTTP".to_owned(),
        (Some(route), m) => format!("{m} {route}"),
        (None, m) => m.to_owned(),
    };
    let (address, port) = server_address(req);
    let span = tracing::info_span!(
        "http.server",
        otel.name = %name,
        otel.kind = "server",
        otel.status_code = Empty,
        otel.status_description = Empty,
        http.request.method = method,
        http.request.method_original = Empty,
        http.route = route.as_deref(),
        url.path = req.uri().path(),
        url.query = req.uri().query().map(crate::redact::redact_query).as_deref(),
        url.scheme = "http",
        server.address = address.as_deref(),
        server.port = port,
        network.protocol.version = protocol_version(req.version()),
        client.address = Empty,
        client.port = Empty,
        network.peer.address = Empty,
        network.peer.port = Empty,
        user_agent.original = Empty,
        http.response.status_code = Empty,
        "http.response.header.retry-after" = Empty,
        error.type = Empty,
    );
    if method == "_OTHER" {
        span.record("http.request.method_original", req.method().as_str());
    }
    if let Some(peer) = peer(req) {
        span.record("client.address", peer.ip().to_string());
        span.record("client.port", i64::from(peer.port()));
        span.record("network.peer.address", peer.ip().to_string());
        span.record("network.peer.port", i64::from(peer.port()));
    }
    if let Some(ua) = req
        .headers()
        .get(http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
    {
        span.record("user_agent.original", ua);
    }
    span
}

fn rpc_span(req: &Request, recognised: bool) -> tracing::Span {
    let path = req.uri().path().trim_start_matches('/').to_owned();
    let (name, method) = if recognised {
        (path.clone(), path.clone())
    } else {
        ("grpc".to_owned(), "_OTHER".to_owned())
    };
    let (address, port) = server_address(req);
    let span = tracing::info_span!(
        "rpc.server",
        otel.name = %name,
        otel.kind = "server",
        otel.status_code = Empty,
        otel.status_description = Empty,
        rpc.system.name = "grpc",
        rpc.method = %method,
        rpc.method_original = Empty,
        rpc.status_code = Empty,
        server.address = address.as_deref(),
        server.port = port,
        client.address = Empty,
        client.port = Empty,
        network.peer.address = Empty,
        network.peer.port = Empty,
        network.transport = "tcp",
        error.type = Empty,
    );
    if !recognised {
        span.record("rpc.method_original", path.as_str());
    }
    if let Some(peer) = peer(req) {
        span.record("client.address", peer.ip().to_string());
        span.record("client.port", i64::from(peer.port()));
        span.record("network.peer.address", peer.ip().to_string());
        span.record("network.peer.port", i64::from(peer.port()));
    }
    span
}

/// Which baggage entries become span attributes: `FLEET_BAGGAGE_ATTRIBUTES`, a comma list of
/// keys (a trailing `*` matches a prefix), default `session.id,user.id,fleet.*`. Copying
/// whatever a stranger sends would let any header bloat every span.
struct BaggageAllowList(Vec<String>);

impl BaggageAllowList {
    fn allows(&self, key: &str) -> bool {
        self.0.iter().any(|p| match p.strip_suffix('*') {
            Some(prefix) => key.starts_with(prefix),
            None => p == key,
        })
    }
}

fn baggage_attributes() -> &'static BaggageAllowList {
    static LIST: std::sync::OnceLock<BaggageAllowList> = std::sync::OnceLock::new();
    LIST.get_or_init(|| {
        let raw = std::env::var("FLEET_BAGGAGE_ATTRIBUTES")
            .unwrap_or_else(|_| "session.id,user.id,fleet.*".to_owned());
        BaggageAllowList(
            raw.split(',')
                .map(str::trim)
                .filter(|k| !k.is_empty())
                .map(str::to_owned)
                .collect(),
        )
    })
}
