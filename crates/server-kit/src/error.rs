use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// A 4xx/5xx answer with a JSON body: `{"error":{"code":..,"message":..,"field"?:..,"dependency"?:..}}`.
#[derive(Debug, Clone, Serialize, thiserror::Error)]
#[error("{status}: {code}: {message}")]
pub struct ApiError {
    #[serde(skip)]
    pub status: StatusCode,
    /// Stable, machine-readable, snake_case.
    pub code: String,
    pub message: String,
    /// The request field that was wrong, for 4xx on input.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// The upstream service that failed, for 502/503/504.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dependency: Option<String>,
    /// Anything else the caller needs, e.g. the id of an order whose payment failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<Box<serde_json::Value>>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            status,
            code: code.into(),
            message: message.into(),
            field: None,
            dependency: None,
            details: None,
        }
    }

    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("invalid_{field}"),
            message,
        )
        .with_field(field)
    }

    pub fn not_found(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    pub fn with_field(mut self, field: &str) -> Self {
        self.field = Some(field.to_owned());
        self
    }

    /// 502 (bad answer), 503 (unreachable) or 504 (too slow) from `dependency`.
    pub fn upstream(status: StatusCode, dependency: &str, message: impl Into<String>) -> Self {
        let code = match status {
            StatusCode::GATEWAY_TIMEOUT => "upstream_timeout",
            StatusCode::SERVICE_UNAVAILABLE => "upstream_unavailable",
            _ => "upstream_error",
        };
        let mut e = Self::new(status, code, message);
        e.dependency = Some(dependency.to_owned());
        e
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
}

/// The code of the [`ApiError`] an answer carries, as a response extension.
#[derive(Debug, Clone)]
pub(crate) struct ErrorCode(pub(crate) String);

/// `Retry-After` on every 503 and 409 answer, in seconds.
pub const RETRY_AFTER_SECONDS: &str = "1";

#[derive(Serialize)]
struct Body<'a> {
    error: &'a ApiError,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(code = %self.code, dependency = self.dependency.as_deref(), "{}", self.message);
        }
        self.into_quiet_response()
    }
}

impl ApiError {
    /// The answer without the error log line a 5xx otherwise writes (for refusals counted
    /// elsewhere, such as a shed request).
    pub(crate) fn into_quiet_response(self) -> Response {
        let mut response = (self.status, axum::Json(Body { error: &self })).into_response();
        // For the metrics layer, which counts refusals by their code.
        response
            .extensions_mut()
            .insert(ErrorCode(self.code.clone()));
        if matches!(
            self.status,
            axum::http::StatusCode::SERVICE_UNAVAILABLE | axum::http::StatusCode::CONFLICT
        ) {
            // Every 503 (and 409: the same request still in progress) is a "not now": say
            // when to come back.
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static(RETRY_AFTER_SECONDS),
            );
        }
        response
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        let status = rejection.status();
        let code = match &rejection {
            JsonRejection::JsonDataError(_) => "invalid_body",
            JsonRejection::JsonSyntaxError(_) => "malformed_json",
            JsonRejection::MissingJsonContentType(_) => "unsupported_media_type",
            _ if status == StatusCode::PAYLOAD_TOO_LARGE => "body_too_large",
            _ => "bad_request",
        };
        Self::new(status, code, rejection.body_text())
    }
}

/// `axum::Json`, but a rejection is answered with an [`ApiError`] body instead of plain text.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    axum::Json<T>: FromRequest<S, Rejection = JsonRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let axum::Json(value) = axum::Json::<T>::from_request(req, state).await?;
        Ok(Self(value))
    }
}

impl<T: Serialize> IntoResponse for ApiJson<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// Largest request body any service accepts; bigger ones get `413 body_too_large`.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// `Idempotency-Key`, as payment APIs take it: 1 to 255 visible ASCII characters.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

/// The caller's `Idempotency-Key`, or a fresh one when it sent none.
pub fn idempotency_key(headers: &axum::http::HeaderMap) -> Result<String, ApiError> {
    let mut values = headers.get_all("idempotency-key").iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        if headers.contains_key("idempotency-key") {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_idempotency_key",
                "send one Idempotency-Key header, not several",
            ));
        }
        return Ok(uuid::Uuid::new_v4().to_string());
    };
    match value.to_str() {
        Ok(key)
            if !key.is_empty()
                && key.len() <= MAX_IDEMPOTENCY_KEY_LEN
                && key.chars().all(|c| c.is_ascii_graphic()) =>
        {
            Ok(key.to_owned())
        }
        _ => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_idempotency_key",
            format!(
                "Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} visible ASCII characters"
            ),
        )),
    }
}

/// A plausible email address: one `@`, something on each side, a dot in the domain, no spaces.
pub fn valid_email(address: &str) -> bool {
    let Some((local, domain)) = address.split_once('@') else {
        return false;
    };
    address.len() <= 254
        && !local.is_empty()
        && local.len() <= 64
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains('@')
        && !address.chars().any(|c| c.is_whitespace() || c.is_control())
}

#[cfg(test)]
mod tests {
    use super::valid_email;

    #[test]
    fn emails() {
        assert!(valid_email("ada@example.com"));
        assert!(!valid_email("ada@"));
        assert!(!valid_email("ada example@x.com"));
        assert!(!valid_email("ada@localhost"));
        assert!(!valid_email("a@b@c.com"));
    }
}
