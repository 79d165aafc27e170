//! gRPC CLIENT spans: a tower layer around a tonic `Channel` that starts the span and injects
//! the context into the request metadata.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tracing::Instrument as _;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use crate::cancel::CancelGuard;
use crate::propagation;
use crate::status::{grpc_code_name, grpc_status_from_headers};

/// Put in a request's extensions to send it without `traceparent`/`baggage`: the downstream
/// service then starts a new trace. Only the fault injection uses it, to teach what a broken
/// hop looks like.
#[derive(Debug, Clone, Copy)]
pub struct SkipPropagation;

/// `PaymentServiceClient::new(GrpcClientTraceLayer::new("127.0.0.1", 50051).layer(channel))`.
#[derive(Debug, Clone)]
pub struct GrpcClientTraceLayer {
    server_address: String,
    server_port: u16,
}

impl GrpcClientTraceLayer {
    pub fn new(server_address: impl Into<String>, server_port: u16) -> Self {
        Self {
            server_address: server_address.into(),
            server_port,
        }
    }
}

impl<S> tower::Layer<S> for GrpcClientTraceLayer {
    type Service = GrpcClientTrace<S>;
    fn layer(&self, inner: S) -> Self::Service {
        GrpcClientTrace {
            inner,
            server_address: self.server_address.clone(),
            server_port: self.server_port,
        }
    }
}

#[derive(Debug, Clone)]
pub struct GrpcClientTrace<S> {
    inner: S,
    server_address: String,
    server_port: u16,
}

impl<S, ReqBody, ResBody> tower::Service<http::Request<ReqBody>> for GrpcClientTrace<S>
where
    S: tower::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: std::error::Error + 'static,
    ReqBody: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<ReqBody>) -> Self::Future {
        let method = req.uri().path().trim_start_matches('/').to_owned();
        let span = tracing::info_span!(
            "rpc.client",
            otel.name = %method,
            otel.kind = "client",
            otel.status_code = Empty,
            otel.status_description = Empty,
            rpc.system.name = "grpc",
            rpc.method = %method,
            rpc.status_code = Empty,
            server.address = %self.server_address,
            server.port = i64::from(self.server_port),
            error.type = Empty,
        );
        if req.extensions().get::<SkipPropagation>().is_none() {
            propagation::inject(&span.context(), req.headers_mut());
        }
        let future = self.inner.call(req);
        let mut guard = CancelGuard::new(span.clone(), |span| {
            span.record("rpc.status_code", "CANCELLED");
            span.record("error.type", "CANCELLED");
            span.record("otel.status_code", "ERROR");
        });
        Box::pin(
            async move {
                let result = future.await;
                guard.disarm();
                let span = tracing::Span::current();
                match &result {
                    Ok(response) => {
                        let (code, message) = grpc_status_from_headers(response.headers());
                        span.record("rpc.status_code", grpc_code_name(code));
                        if code != 0 {
                            span.record("error.type", grpc_code_name(code));
                            span.record("otel.status_code", "ERROR");
                            if let Some(message) = message {
                                span.record("otel.status_description", message);
                            }
                        }
                    }
                    Err(err) => {
                        // The code the client itself generates: a deadline it enforced, else
                        // the transport failure tonic reports as UNAVAILABLE.
                        let code = if timed_out(err) {
                            "DEADLINE_EXCEEDED"
                        } else {
                            "UNAVAILABLE"
                        };
                        span.record("rpc.status_code", code);
                        span.record("error.type", code);
                        span.record("otel.status_code", "ERROR");
                        span.record("otel.status_description", err.to_string());
                    }
                }
                result
            }
            .instrument(span),
        )
    }
}

/// Why a gRPC client cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    /// The fleet's gRPC hops are plain h2c and tonic is built without TLS here: an `https://`
    /// address would be dialled in plain text, so it is refused at start instead.
    #[error(
        "{0} is an https:// address, but the fleet's gRPC clients speak plain h2c only (tonic is built without TLS): use http://, with TLS ended by a proxy in front of the service"
    )]
    NeedsTls(String),
    #[error("{address} is not a gRPC address (http://host:port): {source}")]
    Invalid {
        address: String,
        source: tonic::transport::Error,
    },
}

/// A lazily connecting channel to `addr` (`http://host:port`) with the trace layer on it, so a
/// service may start before the one it calls.
pub fn traced_channel(
    addr: &str,
    timeout: std::time::Duration,
) -> Result<GrpcClientTrace<tonic::transport::Channel>, ChannelError> {
    if crate::http_client::is_https(addr) {
        return Err(ChannelError::NeedsTls(addr.to_owned()));
    }
    let endpoint = tonic::transport::Endpoint::from_shared(addr.to_owned())
        .map_err(|source| ChannelError::Invalid {
            address: addr.to_owned(),
            source,
        })?
        .connect_timeout(std::time::Duration::from_secs(2))
        .timeout(timeout);
    let uri = endpoint.uri().clone();
    let host = uri.host().unwrap_or("localhost").to_owned();
    let port = uri.port_u16().unwrap_or(80);
    Ok(tower::Layer::layer(
        &GrpcClientTraceLayer::new(host, port),
        endpoint.connect_lazy(),
    ))
}

fn timed_out(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(err);
    while let Some(e) = next {
        if e.is::<tonic::TimeoutExpired>() {
            return true;
        }
        next = e.source();
    }
    false
}

#[cfg(test)]
mod channel_tests {
    use super::*;

    #[tokio::test]
    async fn an_https_address_is_refused_and_a_plain_one_is_made() {
        let timeout = std::time::Duration::from_secs(1);
        let err = traced_channel("https://payment-api:50051", timeout).unwrap_err();
        assert!(matches!(err, ChannelError::NeedsTls(_)), "{err}");
        assert!(
            err.to_string().contains("https://payment-api:50051"),
            "{err}"
        );
        assert!(traced_channel("http://payment-api:50051", timeout).is_ok());
        let err = traced_channel("not a uri", timeout).unwrap_err();
        assert!(err.to_string().contains("not a uri"), "{err}");
    }
}
