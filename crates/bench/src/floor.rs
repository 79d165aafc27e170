//! The floor: the checkout path's hops with nothing else. gateway (axum) → order (axum, HTTP) →
//! payment (tonic) → provider (axum, sleeps like the real one); gateway → notification (tonic)
//! beside the reply. Same wire messages (fleet-proto), same JSON shapes, no database, no
//! telemetry, no logs. Each role is its own process, like the fleet's.

use std::io::Write as _;
use std::time::Duration;

use anyhow::Context as _;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use fleet_proto::notification::v1::notification_service_client::NotificationServiceClient;
use fleet_proto::notification::v1::notification_service_server::{
    NotificationService, NotificationServiceServer,
};
use fleet_proto::notification::v1::{
    ListOutboxRequest, ListOutboxResponse, OrderLine, SendEmailRequest, SendEmailResponse,
};
use fleet_proto::payment::v1::payment_service_client::PaymentServiceClient;
use fleet_proto::payment::v1::payment_service_server::{PaymentService, PaymentServiceServer};
use fleet_proto::payment::v1::{ChargeRequest, ChargeResponse};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tonic::transport::Channel;

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Role {
    Gateway,
    Order,
    Payment,
    Notification,
    Provider,
}

const CATALOGUE: [(&str, i64); 8] = [
    ("COFFEE-250G", 1450),
    ("GRINDER-HAND", 8900),
    ("KETTLE-GOOSE", 6500),
    ("MUG-CERAMIC", 1800),
    ("FILTER-V60", 650),
    ("DRIPPER-V60", 2300),
    ("SCALE-01", 4200),
    ("TEA-SENCHA", 1200),
];

fn var(name: &str) -> anyhow::Result<String> {
    std::env::var(name).with_context(|| format!("{name} is not set"))
}

pub async fn serve(role: Role) -> anyhow::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "floor:listening {addr}")?;
        out.flush()?;
    }
    match role {
        Role::Provider => {
            let latency = Duration::from_millis(var("PROVIDER_LATENCY_MS")?.parse()?);
            let app = Router::new()
                .route("/v1/charges", post(provider_charge))
                .with_state(latency);
            axum::serve(listener, app).await?;
        }
        Role::Payment => {
            let svc = Payment {
                http: reqwest::Client::new(),
                url: format!("{}/v1/charges", var("FLOOR_PROVIDER_URL")?),
            };
            tonic::transport::Server::builder()
                .add_service(PaymentServiceServer::new(svc))
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
                .await?;
        }
        Role::Notification => {
            tonic::transport::Server::builder()
                .add_service(NotificationServiceServer::new(Notification))
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
                .await?;
        }
        Role::Order => {
            let channel = Channel::from_shared(var("FLOOR_PAYMENT_ADDR")?)?.connect_lazy();
            let app = Router::new()
                .route("/orders", post(create_order))
                .with_state(PaymentServiceClient::new(channel));
            axum::serve(listener, app).await?;
        }
        Role::Gateway => {
            let channel = Channel::from_shared(var("FLOOR_NOTIFICATION_ADDR")?)?.connect_lazy();
            let state = Gateway {
                http: reqwest::Client::new(),
                orders_url: format!("{}/orders", var("FLOOR_ORDER_URL")?),
                notifications: NotificationServiceClient::new(channel),
            };
            let app = Router::new()
                .route("/checkout", post(checkout))
                .route("/products", get(products))
                .with_state(state);
            axum::serve(listener, app).await?;
        }
    }
    Ok(())
}

async fn provider_charge(
    State(latency): State<Duration>,
    Json(body): Json<Value>,
) -> impl IntoResponse {
    tokio::time::sleep(latency).await;
    Json(json!({
        "id": format!("ch_{:016x}", rand::random::<u64>()),
        "object": "charge",
        "amount": body["amount"],
        "currency": body["currency"],
        "status": "succeeded",
    }))
}

struct Payment {
    http: reqwest::Client,
    url: String,
}

#[tonic::async_trait]
impl PaymentService for Payment {
    async fn charge(
        &self,
        request: tonic::Request<ChargeRequest>,
    ) -> Result<tonic::Response<ChargeResponse>, tonic::Status> {
        let r = request.into_inner();
        let answer = self
            .http
            .post(&self.url)
            .json(&json!({"amount": r.amount_cents, "currency": r.currency, "card_number": r.card_number}))
            .send()
            .await
            .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        let charge: Value = answer
            .json()
            .await
            .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        Ok(tonic::Response::new(ChargeResponse {
            charge_id: charge["id"].as_str().unwrap_or_default().to_owned(),
            status: charge["status"].as_str().unwrap_or_default().to_owned(),
        }))
    }

    async fn get_charge(
        &self,
        _: tonic::Request<fleet_proto::payment::v1::GetChargeRequest>,
    ) -> Result<tonic::Response<ChargeResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("the floor keeps no charges"))
    }
}

struct Notification;

#[tonic::async_trait]
impl NotificationService for Notification {
    async fn send_email(
        &self,
        request: tonic::Request<SendEmailRequest>,
    ) -> Result<tonic::Response<SendEmailResponse>, tonic::Status> {
        let r = request.into_inner();
        let body: String = r
            .lines
            .iter()
            .map(|l| format!("{} x {}\n", l.quantity, l.name))
            .collect();
        Ok(tonic::Response::new(SendEmailResponse {
            message_id: format!("<{}.{}@floor>", r.order_id, body.len()),
        }))
    }

    async fn list_outbox(
        &self,
        _request: tonic::Request<ListOutboxRequest>,
    ) -> Result<tonic::Response<ListOutboxResponse>, tonic::Status> {
        Ok(tonic::Response::new(ListOutboxResponse {
            emails: Vec::new(),
        }))
    }
}

fn price(sku: &str) -> Option<i64> {
    CATALOGUE.iter().find(|(s, _)| *s == sku).map(|(_, p)| *p)
}

async fn create_order(
    State(mut payments): State<PaymentServiceClient<Channel>>,
    Json(body): Json<Value>,
) -> axum::response::Response {
    let order_id = format!("{:032x}", rand::random::<u128>());
    let mut items = Vec::new();
    let mut total = 0i64;
    for item in body["items"].as_array().into_iter().flatten() {
        let sku = item["sku"].as_str().unwrap_or_default();
        let quantity = item["quantity"].as_i64().unwrap_or(1);
        let Some(unit) = price(sku) else {
            return (StatusCode::UNPROCESSABLE_ENTITY, "unknown sku").into_response();
        };
        total += unit * quantity;
        items
            .push(json!({"sku": sku, "name": sku, "quantity": quantity, "unit_price_cents": unit}));
    }
    let charge = payments
        .charge(ChargeRequest {
            order_id: order_id.clone(),
            amount_cents: total,
            currency: "EUR".into(),
            card_number: body["card_number"].as_str().unwrap_or_default().to_owned(),
            idempotency_key: String::new(),
        })
        .await;
    match charge {
        Ok(_) => (
            StatusCode::CREATED,
            Json(json!({
                "id": order_id,
                "customer_email": body["customer_email"],
                "status": "paid",
                "total_cents": total,
                "currency": "EUR",
                "items": items,
            })),
        )
            .into_response(),
        Err(status) => (StatusCode::BAD_GATEWAY, status.message().to_owned()).into_response(),
    }
}

#[derive(Clone)]
struct Gateway {
    http: reqwest::Client,
    orders_url: String,
    notifications: NotificationServiceClient<Channel>,
}

async fn products() -> Json<Value> {
    let products: Vec<Value> = CATALOGUE
        .iter()
        .map(|(sku, p)| json!({"sku": sku, "name": sku, "price_cents": p, "currency": "EUR"}))
        .collect();
    Json(json!({ "products": products }))
}

async fn checkout(
    State(state): State<Gateway>,
    Json(body): Json<Value>,
) -> axum::response::Response {
    let answer = match state.http.post(&state.orders_url).json(&body).send().await {
        Ok(a) => a,
        Err(e) => return (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    };
    if answer.status() != StatusCode::CREATED {
        return (StatusCode::BAD_GATEWAY, "order failed").into_response();
    }
    let order: Value = match answer.json().await {
        Ok(v) => v,
        Err(e) => return (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    };
    // Beside the reply, like the real gateway.
    let email = SendEmailRequest {
        to: order["customer_email"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        order_id: order["id"].as_str().unwrap_or_default().to_owned(),
        total_cents: order["total_cents"].as_i64().unwrap_or_default(),
        currency: "EUR".into(),
        lines: order["items"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|i| OrderLine {
                sku: i["sku"].as_str().unwrap_or_default().to_owned(),
                name: i["name"].as_str().unwrap_or_default().to_owned(),
                quantity: i["quantity"].as_i64().unwrap_or_default() as i32,
                unit_price_cents: i["unit_price_cents"].as_i64().unwrap_or_default(),
            })
            .collect(),
    };
    let mut notifications = state.notifications.clone();
    tokio::spawn(async move {
        let _ = notifications.send_email(email).await;
    });
    (
        StatusCode::CREATED,
        Json(json!({
            "order_id": order["id"],
            "status": order["status"],
            "total_cents": order["total_cents"],
            "currency": order["currency"],
            "items": order["items"],
            "email_sent": "queued",
        })),
    )
        .into_response()
}
