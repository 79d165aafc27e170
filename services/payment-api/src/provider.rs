//! The payment provider's "SDK": one HTTP call, wrapped in a `stripe-sdk.request` span as a
//! vendor SDK would, with the HTTP CLIENT span beneath it.

use fleet_telemetry::http_client::TracedClient;
use serde::Deserialize;
use tracing::Instrument as _;

#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error("card declined: {decline_code}: {message}")]
    Declined {
        decline_code: String,
        message: String,
    },
    #[error("payment provider timed out")]
    Timeout,
    #[error("payment provider unreachable: {0}")]
    Unreachable(String),
    #[error("payment provider failed: {0}")]
    Failed(String),
}

impl ProviderError {
    /// `error.type` for a failure that is a fault (a decline is not one).
    pub fn fault_kind(&self) -> Option<&'static str> {
        match self {
            ProviderError::Declined { .. } => None,
            ProviderError::Timeout => Some("timeout"),
            ProviderError::Unreachable(_) => Some("provider_unreachable"),
            ProviderError::Failed(_) => Some("provider_failed"),
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct Charge {
    pub id: String,
    pub status: String,
}

#[derive(Debug, Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Debug, Deserialize)]
struct ErrorDetail {
    code: Option<String>,
    decline_code: Option<String>,
    message: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ProviderClient {
    base_url: String,
    http: TracedClient,
}

impl ProviderClient {
    pub fn new(
        base_url: &str,
        timeout: std::time::Duration,
    ) -> Result<Self, fleet_telemetry::http_client::ClientError> {
        Ok(Self {
            base_url: base_url.trim_end_matches('/').to_owned(),
            http: TracedClient::with_timeout(base_url, timeout)?,
        })
    }

    /// One charge. With `retry` = (retries, first backoff), failed attempts (never declines)
    /// are retried with doubling backoff, each attempt its own HTTP CLIENT span.
    pub async fn create_charge(
        &self,
        amount_cents: i64,
        currency: &str,
        card_number: &str,
        description: &str,
        idempotency_key: &str,
        retry: Option<(u32, std::time::Duration)>,
    ) -> Result<Charge, ProviderError> {
        let span = tracing::info_span!(
            "stripe-sdk.request",
            otel.kind = "internal",
            otel.status_code = tracing::field::Empty,
            error.type = tracing::field::Empty,
            app.payment.amount_cents = amount_cents
        );
        async {
            let (retries, first_backoff) = retry.unwrap_or((0, std::time::Duration::ZERO));
            let backoff = fleet_server_kit::Backoff {
                attempts: retries.saturating_add(1),
                first_backoff,
            };
            let result = backoff
                .run(
                    |n| {
                        self.attempt(
                            amount_cents,
                            currency,
                            card_number,
                            description,
                            idempotency_key,
                            n - 1,
                        )
                    },
                    |err, _| {
                        matches!(
                            err,
                            ProviderError::Unreachable(_)
                                | ProviderError::Failed(_)
                                | ProviderError::Timeout
                        )
                    },
                )
                .await;
            if let Err(kind) = result.as_ref().map_err(ProviderError::fault_kind)
                && let Some(kind) = kind
            {
                let span = tracing::Span::current();
                span.record("otel.status_code", "ERROR");
                span.record("error.type", kind);
            }
            result
        }
        .instrument(span)
        .await
    }

    async fn attempt(
        &self,
        amount_cents: i64,
        currency: &str,
        card_number: &str,
        description: &str,
        idempotency_key: &str,
        attempt: u32,
    ) -> Result<Charge, ProviderError> {
        // Every attempt carries the same key: a retry after a lost answer returns the first
        // charge instead of charging the card again.
        let request = self
            .http
            .inner()
            .post(format!("{}/v1/charges", self.base_url))
            .header("idempotency-key", idempotency_key)
            .json(&serde_json::json!({
                "amount": amount_cents,
                "currency": currency,
                "card_number": card_number,
                "description": description,
            }))
            .build()
            .map_err(|e| ProviderError::Failed(e.to_string()))?;
        let response = self
            .http
            .send_attempt(request, Some("/v1/charges"), attempt)
            .await
            .map_err(|e| {
                if e.is_timeout() {
                    ProviderError::Timeout
                } else {
                    ProviderError::Unreachable(e.to_string())
                }
            })?;
        let status = response.status();
        if status.is_success() {
            return response
                .json::<Charge>()
                .await
                .map_err(|e| ProviderError::Failed(format!("unreadable charge: {e}")));
        }
        let detail = response.json::<ErrorBody>().await.ok().map(|b| b.error);
        Self::answer_error(status, detail)
    }

    fn answer_error(
        status: reqwest::StatusCode,
        detail: Option<ErrorDetail>,
    ) -> Result<Charge, ProviderError> {
        if status == reqwest::StatusCode::PAYMENT_REQUIRED {
            let detail = detail.unwrap_or(ErrorDetail {
                code: None,
                decline_code: None,
                message: None,
            });
            return Err(ProviderError::Declined {
                decline_code: detail
                    .decline_code
                    .or(detail.code)
                    .unwrap_or_else(|| "card_declined".into()),
                message: detail.message.unwrap_or_else(|| "card declined".into()),
            });
        }
        Err(ProviderError::Failed(format!(
            "provider answered {status}{}",
            detail
                .and_then(|d| d.message)
                .map(|m| format!(": {m}"))
                .unwrap_or_default()
        )))
    }

    /// What the provider answered `idempotency_key`: `None` when it never saw the key (so the
    /// card was not charged under it).
    pub async fn find_charge(
        &self,
        idempotency_key: &str,
    ) -> Result<Option<Charge>, ProviderError> {
        let span = tracing::info_span!(
            "stripe-sdk.request",
            otel.kind = "internal",
            otel.status_code = tracing::field::Empty,
            error.type = tracing::field::Empty,
        );
        async {
            let mut url = reqwest::Url::parse(&format!("{}/v1/charges", self.base_url))
                .map_err(|e| ProviderError::Failed(e.to_string()))?;
            url.query_pairs_mut()
                .append_pair("idempotency_key", idempotency_key);
            let request = self
                .http
                .inner()
                .get(url)
                .build()
                .map_err(|e| ProviderError::Failed(e.to_string()))?;
            let response = self
                .http
                .send_attempt(request, Some("/v1/charges"), 0)
                .await
                .map_err(|e| {
                    if e.is_timeout() {
                        ProviderError::Timeout
                    } else {
                        ProviderError::Unreachable(e.to_string())
                    }
                })?;
            if !response.status().is_success() {
                return Err(ProviderError::Failed(format!(
                    "charge search answered {}",
                    response.status()
                )));
            }
            let found: SearchResult = response
                .json()
                .await
                .map_err(|e| ProviderError::Failed(format!("unreadable search: {e}")))?;
            let Some(kept) = found.data.into_iter().next() else {
                return Ok(None);
            };
            let status = reqwest::StatusCode::from_u16(kept.status)
                .map_err(|e| ProviderError::Failed(e.to_string()))?;
            if status.is_success() {
                return serde_json::from_value(kept.body)
                    .map(Some)
                    .map_err(|e| ProviderError::Failed(format!("unreadable charge: {e}")));
            }
            let detail = serde_json::from_value::<ErrorBody>(kept.body)
                .ok()
                .map(|b| b.error);
            Self::answer_error(status, detail).map(Some)
        }
        .instrument(span)
        .await
    }
}

#[derive(Debug, Deserialize)]
struct SearchResult {
    data: Vec<SearchHit>,
}

#[derive(Debug, Deserialize)]
struct SearchHit {
    status: u16,
    body: serde_json::Value,
}
