//! The typed client api-gateway uses to call order-api over HTTP.

use fleet_telemetry::http_client::TracedClient;
use serde::de::DeserializeOwned;

use crate::model::{CreateOrder, Order, ProductList};

#[derive(Debug, thiserror::Error)]
pub enum OrderApiError {
    /// order-api answered with an error status; its JSON body is kept to pass on.
    #[error("order-api answered {status}")]
    Status {
        status: reqwest::StatusCode,
        body: serde_json::Value,
    },
    #[error("order-api timed out")]
    Timeout,
    #[error("order-api unreachable: {0}")]
    Unreachable(String),
    #[error("order-api sent an unreadable answer: {0}")]
    BadResponse(String),
}

#[derive(Debug, Clone)]
pub struct OrderApiClient {
    base_url: String,
    http: TracedClient,
}

impl OrderApiClient {
    pub fn new(
        base_url: &str,
        timeout: std::time::Duration,
    ) -> Result<Self, fleet_telemetry::http_client::ClientError> {
        Ok(Self {
            base_url: base_url.trim_end_matches('/').to_owned(),
            http: TracedClient::with_timeout(base_url, timeout)?,
        })
    }

    async fn call<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
        template: &str,
    ) -> Result<T, OrderApiError> {
        let request = request
            .build()
            .map_err(|e| OrderApiError::BadResponse(e.to_string()))?;
        let response = self.http.send(request, Some(template)).await.map_err(|e| {
            if e.is_timeout() {
                OrderApiError::Timeout
            } else {
                OrderApiError::Unreachable(e.to_string())
            }
        })?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| {
            if e.is_timeout() {
                OrderApiError::Timeout
            } else {
                OrderApiError::BadResponse(e.to_string())
            }
        })?;
        if !status.is_success() {
            let body = serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| serde_json::json!({"error": {"code": "upstream_error", "message": String::from_utf8_lossy(&bytes)}}));
            return Err(OrderApiError::Status { status, body });
        }
        serde_json::from_slice(&bytes).map_err(|e| OrderApiError::BadResponse(e.to_string()))
    }

    /// `timeout` overrides the client's own for this call.
    /// `idempotency_key`: the same key again returns the first order (and charges once).
    pub async fn create_order(
        &self,
        order: &CreateOrder,
        idempotency_key: &str,
        timeout: Option<std::time::Duration>,
    ) -> Result<Order, OrderApiError> {
        let http = self.http.inner();
        let mut request = http
            .post(format!("{}/orders", self.base_url))
            .header("idempotency-key", idempotency_key)
            .json(order);
        if let Some(timeout) = timeout {
            request = request.timeout(timeout);
        }
        self.call(request, "/orders").await
    }

    pub async fn get_order(&self, id: &str) -> Result<Order, OrderApiError> {
        let http = self.http.inner();
        let mut url = reqwest::Url::parse(&self.base_url)
            .map_err(|e| OrderApiError::BadResponse(e.to_string()))?;
        url.path_segments_mut()
            .map_err(|_| OrderApiError::BadResponse("order-api URL cannot be a base".into()))?
            .pop_if_empty()
            .extend(["orders", id]);
        self.call(http.get(url), "/orders/{id}").await
    }

    pub async fn list_products(&self) -> Result<ProductList, OrderApiError> {
        let http = self.http.inner();
        self.call(http.get(format!("{}/products", self.base_url)), "/products")
            .await
    }
}
