//! The JSON order-api speaks, shared with its callers through [`crate::client`].

use serde::{Deserialize, Serialize};

/// Most lines one order may have, and most units of one line.
pub const MAX_ITEMS: usize = 50;

/// An order id in its one spelling (a lowercase hyphenated UUID), or `None`: callers check ids
/// before they become a URL path (`..` would otherwise walk out of `/orders/`).
pub fn canonical_order_id(id: &str) -> Option<String> {
    uuid::Uuid::parse_str(id).ok().map(|u| u.to_string())
}
pub const MAX_QUANTITY: i64 = 100;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreateOrder {
    pub customer_email: String,
    pub items: Vec<OrderItemInput>,
    pub card_number: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OrderItemInput {
    pub sku: String,
    /// Signed and wide so that 0, negatives and huge numbers get our 422, not a parser error.
    pub quantity: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Product {
    pub sku: String,
    pub name: String,
    pub price_cents: i64,
    pub currency: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Order {
    pub id: String,
    pub customer_email: String,
    /// `pending` only while the charge is in flight, then `paid` or `payment_failed`.
    pub status: String,
    pub total_cents: i64,
    pub currency: String,
    pub payment_id: Option<String>,
    pub failure_reason: Option<String>,
    pub created_at: String,
    pub items: Vec<OrderItem>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct OrderItem {
    pub sku: String,
    pub name: String,
    pub quantity: i64,
    pub unit_price_cents: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProductList {
    pub products: Vec<Product>,
}
