use std::future::Future;
use std::io::Write as _;
use std::pin::Pin;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;

use crate::ApiError;
use crate::metrics::Metrics;

/// An environment variable, or `default` when it is unset or empty.
pub fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| default.to_owned())
}

/// Binds `addr` (port 0 picks a free one) and, when `FLEET_ANNOUNCE` is set, prints
/// `fleet:listening <label> <addr>` so `fleet up` and the tests learn the real port.
pub async fn bind(addr: &str, label: &str) -> anyhow::Result<TcpListener> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
    let local = listener.local_addr()?;
    if std::env::var_os("FLEET_ANNOUNCE").is_some() {
        let mut out = std::io::stdout().lock();
        writeln!(out, "fleet:listening {label} {local}")?;
        out.flush()?;
    }
    tracing::info!(%local, "{label} listening");
    Ok(listener)
}

/// Resolves on Ctrl-C or SIGTERM — or, when `FLEET_EXIT_WITH_PARENT` is set (as `fleet up`
/// sets it), when the parent process is gone, so a `fleet up` killed with SIGKILL leaves no
/// orphaned services behind.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
        () = parent_gone() => {},
    }
}

async fn parent_gone() {
    #[cfg(unix)]
    if std::env::var_os("FLEET_EXIT_WITH_PARENT").is_some() {
        let parent = std::os::unix::process::parent_id();
        loop {
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            if std::os::unix::process::parent_id() != parent {
                tracing::warn!("the parent process exited; shutting down");
                return;
            }
        }
    }
    std::future::pending::<()>().await
}

/// What `/readyz` asks: `Ok` when the service can do its work (its database answers, say).
pub type Readiness =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

/// `/healthz` (the process is alive) and `/readyz` (it can serve), untraced by the middleware.
pub fn health_router(readiness: Option<Readiness>) -> Router {
    Router::new()
        .route(
            "/healthz",
            get(|| async { axum::Json(serde_json::json!({"status": "ok"})) }),
        )
        .route(
            "/readyz",
            get(move || {
                let readiness = readiness.clone();
                async move {
                    let result = match readiness {
                        Some(check) => check().await,
                        None => Ok(()),
                    };
                    match result {
                        Ok(()) => (
                            StatusCode::OK,
                            axum::Json(serde_json::json!({"status": "ready"})),
                        )
                            .into_response(),
                        Err(reason) => (
                            StatusCode::SERVICE_UNAVAILABLE,
                            axum::Json(
                                serde_json::json!({"status": "not_ready", "reason": reason}),
                            ),
                        )
                            .into_response(),
                    }
                }
            }),
        )
}

async fn not_found(headers: axum::http::HeaderMap) -> axum::response::Response {
    let grpc = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/grpc"));
    if grpc {
        // A gRPC client gets a gRPC answer: UNIMPLEMENTED, trailers-only.
        return (
            StatusCode::OK,
            [
                ("content-type", "application/grpc"),
                ("grpc-status", "12"),
                ("grpc-message", "unknown service"),
            ],
        )
            .into_response();
    }
    ApiError::not_found("route_not_found", "no such route").into_response()
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method not allowed on this route",
    )
}

/// tonic answers a request it cannot decode with `INTERNAL` (following the gRPC library's own
/// status table); but the fault is the caller's, and the fleet answers bad input as bad input:
/// `INVALID_ARGUMENT`, so it is neither retried as a server fault nor marked as one in traces.
async fn decode_errors_are_invalid_argument(
    mut response: axum::response::Response,
) -> axum::response::Response {
    let headers = response.headers();
    let internal = headers
        .get("grpc-status")
        .is_some_and(|v| v.as_bytes() == b"13");
    let undecodable = headers
        .get("grpc-message")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|m| {
            m.starts_with("failed to decode Protobuf message")
                || m.starts_with("failed%20to%20decode%20Protobuf%20message")
        });
    if internal && undecodable {
        response
            .headers_mut()
            .insert("grpc-status", axum::http::HeaderValue::from_static("3"));
    }
    response
}

/// `GET /metrics`, the JSON 404/405 fallbacks and the body limit every service shares, the
/// refusal counters, load shedding past `max_in_flight` and, when `traced`, the server-span middleware (outermost, so 404s and 413s
/// are traced too).
pub(crate) fn with_fleet_layers(
    app: Router,
    metrics: &Metrics,
    max_in_flight: crate::InFlightLimit,
    traced: bool,
) -> Router {
    let app = app
        .merge(metrics.router())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(crate::error::MAX_BODY_BYTES))
        .layer(axum::middleware::map_response(
            decode_errors_are_invalid_argument,
        ))
        // Outside the remapping above, so an undecodable message counts as INVALID_ARGUMENT.
        .layer(axum::middleware::map_response_with_state(
            metrics.clone(),
            crate::metrics::count_refusals,
        ))
        // Inside the server-span middleware, so a shed request is traced (as an error).
        .layer(axum::middleware::from_fn_with_state(
            crate::shed::Shedder::new(max_in_flight, metrics),
            crate::shed::shed_past_limit,
        ));
    if traced {
        app.layer(axum::middleware::from_fn(
            fleet_telemetry::server::trace_requests,
        ))
    } else {
        app
    }
}
