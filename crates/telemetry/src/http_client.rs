//! HTTP CLIENT spans around reqwest, with the context injected into the outgoing headers.
//!
//! Written here rather than taken from reqwest-tracing, which supports OpenTelemetry only up to
//! 0.32: beside a 0.33 stack it compiles, yet `traceparent` silently stops crossing the hop.

use tracing::Instrument as _;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use crate::cancel::CancelGuard;
use crate::propagation;
use crate::server::method_attribute;

/// Whether `url` is plain HTTP, which no root certificate is ever needed for.
pub fn is_plain_http(url: &str) -> bool {
    url.get(..7)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("http://"))
}

/// Why a client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The URL needs TLS, which this build leaves out (the `tls` feature adds it).
    #[error(
        "{0} is an https:// URL, but this build has no TLS: build with `--features tls`, or send through a plain-HTTP Collector beside the service"
    )]
    NeedsTls(String),
    #[error(transparent)]
    Build(#[from] reqwest::Error),
}

/// Whether `url` is `https://`, which needs TLS.
pub fn is_https(url: &str) -> bool {
    url.trim_start()
        .get(..8)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("https://"))
}

/// Refuses an `https://` URL in a build without the `tls` feature, at start-up and naming the
/// URL, instead of at the first request with reqwest's "scheme is not http".
pub fn check_scheme(url: &str) -> Result<(), ClientError> {
    if cfg!(feature = "tls") || !is_https(url) {
        Ok(())
    } else {
        Err(ClientError::NeedsTls(url.to_owned()))
    }
}

/// `builder` trusting no root certificates when `url` is plain HTTP. Otherwise reqwest's
/// rustls verifier reads and parses the system's whole CA bundle (PEM, base64) for each client
/// built — 7% of order-api's instructions over 150 checkouts, and the parsed store held for the
/// life of the process — for a client that only ever talks `http://` (docs/performance.md).
/// A redirect to `https://` then fails its certificate check; the fleet's APIs never redirect.
/// Without the `tls` feature there is no verifier to skip: `builder` as it is.
pub fn without_roots_for_plain_http(
    builder: reqwest::ClientBuilder,
    url: &str,
) -> reqwest::ClientBuilder {
    #[cfg(feature = "tls")]
    if is_plain_http(url) {
        return builder.tls_certs_only(Vec::new());
    }
    let _ = url;
    builder
}

/// [`without_roots_for_plain_http`] for a blocking client (the OTLP/HTTP exporter's).
pub fn without_roots_for_plain_http_blocking(
    builder: reqwest::blocking::ClientBuilder,
    url: &str,
) -> reqwest::blocking::ClientBuilder {
    #[cfg(feature = "tls")]
    if is_plain_http(url) {
        return builder.tls_certs_only(Vec::new());
    }
    let _ = url;
    builder
}

/// A reqwest client whose every request is a CLIENT span and carries `traceparent`/`baggage`.
#[derive(Debug, Clone)]
pub struct TracedClient {
    inner: reqwest::Client,
}

impl TracedClient {
    pub fn new(inner: reqwest::Client) -> Self {
        Self { inner }
    }

    /// A client for `base_url` with an overall `timeout` per request and a 2 s connect
    /// timeout, so an unreachable peer fails fast and a slow one is cut off. For a plain
    /// `http://` base it loads no root certificates (see [`without_roots_for_plain_http`]); an
    /// `https://` base needs the `tls` feature ([`check_scheme`]).
    pub fn with_timeout(base_url: &str, timeout: std::time::Duration) -> Result<Self, ClientError> {
        check_scheme(base_url)?;
        let client = without_roots_for_plain_http(reqwest::Client::builder(), base_url)
            .timeout(timeout)
            .connect_timeout(std::time::Duration::from_secs(2))
            .build()?;
        Ok(Self::new(client))
    }

    pub fn inner(&self) -> &reqwest::Client {
        &self.inner
    }

    /// Sends `request`. `url_template` (e.g. `/orders/{id}`) names the span `GET /orders/{id}`
    /// instead of just `GET`, and is recorded as `url.template`.
    pub async fn send(
        &self,
        request: reqwest::Request,
        url_template: Option<&str>,
    ) -> Result<reqwest::Response, reqwest::Error> {
        self.send_attempt(request, url_template, 0).await
    }

    /// [`TracedClient::send`] for a retry: `resend_count` > 0 is recorded as
    /// `http.request.resend_count`, so each attempt is its own span as the conventions ask.
    pub async fn send_attempt(
        &self,
        mut request: reqwest::Request,
        url_template: Option<&str>,
        resend_count: u32,
    ) -> Result<reqwest::Response, reqwest::Error> {
        let method = method_attribute(request.method());
        let name = match (method, url_template) {
            ("_OTHER", _) => "HTTP".to_owned(),
            (m, Some(t)) => format!("{m} {t}"),
            (m, None) => m.to_owned(),
        };
        let url = request.url();
        let mut full = url.clone();
        let _ = full.set_username("");
        let _ = full.set_password(None);
        if let Some(query) = url.query()
            && let std::borrow::Cow::Owned(redacted) = crate::redact::redact_query(query)
        {
            full.set_query(Some(&redacted));
        }
        let span = tracing::info_span!(
            "http.client",
            otel.name = %name,
            otel.kind = "client",
            otel.status_code = Empty,
            otel.status_description = Empty,
            http.request.method = method,
            url.full = %full,
            url.template = url_template,
            server.address = url.host_str(),
            server.port = url.port_or_known_default().map(i64::from),
            network.protocol.version = Empty,
            http.response.status_code = Empty,
            http.request.resend_count = (resend_count > 0).then_some(i64::from(resend_count)),
            "http.response.header.retry-after" = Empty,
            error.type = Empty,
        );
        propagation::inject(&span.context(), request.headers_mut());
        let mut guard = CancelGuard::new(span.clone(), |span| {
            span.record("error.type", "cancelled");
            span.record("otel.status_code", "ERROR");
            span.record("otel.status_description", "the caller stopped waiting");
        });
        let result = self.inner.execute(request).instrument(span.clone()).await;
        guard.disarm();
        match &result {
            Ok(response) => {
                let status = response.status();
                span.record("http.response.status_code", i64::from(status.as_u16()));
                crate::server::record_retry_after(&span, response.headers());
                span.record(
                    "network.protocol.version",
                    match response.version() {
                        http::Version::HTTP_2 => "2",
                        http::Version::HTTP_10 => "1.0",
                        _ => "1.1",
                    },
                );
                if status.is_client_error() || status.is_server_error() {
                    span.record("error.type", status.as_str());
                    span.record("otel.status_code", "ERROR");
                }
            }
            Err(err) => {
                let kind = if err.is_timeout() {
                    "timeout"
                } else if err.is_connect() {
                    "connect_error"
                } else if err.is_body() || err.is_decode() {
                    "body_error"
                } else {
                    "reqwest::Error"
                };
                span.record("error.type", kind);
                span.record("otel.status_code", "ERROR");
                span.record("otel.status_description", err.to_string());
                span.in_scope(|| tracing::warn!(error = %err, "HTTP request failed"));
            }
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_https_needs_tls() {
        assert!(is_https("https://a.example") && is_https(" HTTPS://a.example"));
        assert!(!is_https("http://a.example") && !is_https("a.example:443") && !is_https("https:"));
        for url in ["http://127.0.0.1:8081", "127.0.0.1:4318", ""] {
            assert!(check_scheme(url).is_ok(), "{url}");
        }
    }

    #[cfg(not(feature = "tls"))]
    #[test]
    fn without_tls_an_https_client_is_refused_naming_the_url_and_the_feature() {
        let err =
            TracedClient::with_timeout("https://pay.example/v1", std::time::Duration::from_secs(1))
                .unwrap_err()
                .to_string();
        assert!(err.contains("https://pay.example/v1"), "{err}");
        assert!(err.contains("--features tls"), "{err}");
    }

    #[cfg(feature = "tls")]
    #[test]
    fn with_tls_an_https_client_is_built() {
        assert!(check_scheme("https://pay.example").is_ok());
        TracedClient::with_timeout("https://pay.example/v1", std::time::Duration::from_secs(1))
            .unwrap();
    }
}
