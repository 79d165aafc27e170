//! A typed client for the gateway's callers: tests, the load generator, scripts.

use order_api::model::{CreateOrder, Order, ProductList};

use crate::model::CheckoutResponse;

/// One answer from the gateway: status, the trace id it reported, and the JSON body.
#[derive(Debug, Clone)]
pub struct Answer<T> {
    pub status: reqwest::StatusCode,
    pub trace_id: Option<String>,
    pub body: Result<T, serde_json::Value>,
}

#[derive(Debug, Clone)]
pub struct GatewayClient {
    base_url: String,
    http: reqwest::Client,
}

impl GatewayClient {
    pub fn new(base_url: &str) -> Self {
        Self {
            base_url: base_url.trim_end_matches('/').to_owned(),
            http: reqwest::Client::new(),
        }
    }

    async fn answer<T: serde::de::DeserializeOwned>(
        response: reqwest::Response,
    ) -> Result<Answer<T>, reqwest::Error> {
        let status = response.status();
        let trace_id = response
            .headers()
            .get("x-trace-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = response.bytes().await?;
        let body = if status.is_success() {
            serde_json::from_slice::<T>(&bytes)
                .map_err(|e| serde_json::json!({"client_error": e.to_string()}))
        } else {
            Err(serde_json::from_slice(&bytes).unwrap_or_else(|_| {
                serde_json::Value::String(String::from_utf8_lossy(&bytes).into_owned())
            }))
        };
        Ok(Answer {
            status,
            trace_id,
            body,
        })
    }

    /// `headers` lets a caller send its own `traceparent` or `baggage`.
    pub async fn checkout(
        &self,
        order: &CreateOrder,
        headers: &[(&str, &str)],
    ) -> Result<Answer<CheckoutResponse>, reqwest::Error> {
        let mut request = self
            .http
            .post(format!("{}/checkout", self.base_url))
            .json(order);
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        Self::answer(request.send().await?).await
    }

    pub async fn order(&self, id: &str) -> Result<Answer<Order>, reqwest::Error> {
        Self::answer(
            self.http
                .get(format!("{}/orders/{id}", self.base_url))
                .send()
                .await?,
        )
        .await
    }

    pub async fn products(&self) -> Result<Answer<ProductList>, reqwest::Error> {
        Self::answer(
            self.http
                .get(format!("{}/products", self.base_url))
                .send()
                .await?,
        )
        .await
    }
}
