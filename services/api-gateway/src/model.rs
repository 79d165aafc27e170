//! The JSON the gateway speaks, shared with its callers through [`crate::client`].

use order_api::model::OrderItem;
use serde::{Deserialize, Serialize};

/// What `POST /checkout` answers with 201.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckoutResponse {
    pub order_id: String,
    pub status: String,
    pub total_cents: i64,
    pub currency: String,
    pub items: Vec<OrderItem>,
    /// `queued` (sent beside the reply), or with the sequential fault `sent`/`failed`;
    /// an email never fails the checkout.
    pub email: String,
    /// Paste into Grafana (or `fleet trace`) to see this request's trace.
    pub trace_id: Option<String>,
}
