//! The gRPC service, its outbox, and the router that serves both beside the health endpoints.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::routing::get;
use fleet_faults::{Faults, grpc_code_for_status};
use fleet_proto::notification::v1::notification_service_server::{
    NotificationService, NotificationServiceServer,
};
use fleet_proto::notification::v1::{
    Email, ListOutboxRequest, ListOutboxResponse, SendEmailRequest, SendEmailResponse,
};
use fleet_server_kit::ApiError;
use fleet_server_kit::Metrics;
use fleet_server_kit::metrics::Counter;
use serde::{Deserialize, Serialize};
use tonic::{Code, Request, Response, Status};
use tracing::Instrument as _;

use crate::Config;
use fleet_faults::FaultPoint;

/// This service's fault points (`FLEET_FAULTS`, `/admin/faults`, baggage), each checked below.
pub const SEND: FaultPoint = FaultPoint {
    name: "notification.send",
    about: "sending the email: latency (a slow mail server) or an error",
};
pub const SHED: FaultPoint = FaultPoint {
    name: "notification.shed",
    about: "max_in_flight=N lowers the load-shedding limit (MAX_IN_FLIGHT): past N requests in flight, UNAVAILABLE at once",
};
pub const FAULT_POINTS: &[FaultPoint] = &[SEND, SHED];

/// Largest `SendEmail` message accepted (tonic's default is 4 MiB, which held 2,000,000 empty
/// lines); bigger ones are refused with `OUT_OF_RANGE` before they are decoded.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// Most lines in one email: an order has at most `order_api::model::MAX_ITEMS` (50).
pub const MAX_LINES: usize = 100;
/// Longest `order_id`, SKU and item name.
pub const MAX_FIELD_CHARS: usize = 200;

fn email_bytes(e: &Email) -> usize {
    e.message_id.len() + e.to.len() + e.subject.len() + e.body.len() + e.order_id.len() + 8
}

#[derive(Default)]
struct Held {
    emails: VecDeque<Email>,
    bytes: usize,
}

/// Sent emails, newest last, bounded by count and by bytes (`OUTBOX_CAPACITY`,
/// `OUTBOX_MAX_BYTES`): the oldest go first.
#[derive(Clone)]
pub struct Outbox {
    held: Arc<Mutex<Held>>,
    capacity: usize,
    max_bytes: usize,
    dropped_for_count: Counter,
    dropped_for_bytes: Counter,
}

impl Outbox {
    /// An outbox whose drops are counted in `metrics` (`fleet_outbox_dropped_total`).
    pub fn new(capacity: usize, max_bytes: usize, metrics: &Metrics) -> Self {
        let (capacity, max_bytes) = (capacity.max(1), max_bytes.max(1));
        let mut dropped = metrics
            .counters_by(
                "outbox_dropped",
                &format!(
                    "Emails dropped from the outbox, oldest first, to keep it within \
                     {capacity} emails (bound=\"count\", OUTBOX_CAPACITY) or {max_bytes} bytes \
                     (bound=\"bytes\", OUTBOX_MAX_BYTES)"
                ),
                "bound",
                &["count", "bytes"],
            )
            .into_iter();
        Self {
            held: Arc::new(Mutex::new(Held::default())),
            capacity,
            max_bytes,
            dropped_for_count: dropped.next().unwrap_or_default(),
            dropped_for_bytes: dropped.next().unwrap_or_default(),
        }
    }

    fn push(&self, email: Email) {
        let size = email_bytes(&email);
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        while !held.emails.is_empty()
            && (held.emails.len() >= self.capacity || held.bytes + size > self.max_bytes)
        {
            // Full by count takes precedence: that drop was due whatever the sizes.
            if held.emails.len() >= self.capacity {
                self.dropped_for_count.inc();
            } else {
                self.dropped_for_bytes.inc();
            }
            if let Some(old) = held.emails.pop_front() {
                held.bytes -= email_bytes(&old);
            }
        }
        held.bytes += size;
        held.emails.push_back(email);
    }

    /// Bytes the outbox holds now.
    pub fn bytes(&self) -> usize {
        self.held.lock().map(|h| h.bytes).unwrap_or_default()
    }

    /// Newest first; `to` empty means everyone.
    pub fn list(&self, to: &str, limit: usize) -> Vec<Email> {
        let held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        held.emails
            .iter()
            .rev()
            .filter(|e| to.is_empty() || e.to.eq_ignore_ascii_case(to))
            .take(limit)
            .cloned()
            .collect()
    }
}

fn money(cents: i64, currency: &str) -> String {
    format!(
        "{}.{:02} {}",
        cents / 100,
        (cents % 100).abs(),
        currency.to_uppercase()
    )
}

fn render(req: &SendEmailRequest) -> (String, String) {
    let subject = format!("Your order {} is confirmed", req.order_id);
    let mut body = format!("Thank you for your order {}.\n\n", req.order_id);
    for line in &req.lines {
        body.push_str(&format!(
            "  {} x {} ({}) at {}\n",
            line.quantity,
            line.name,
            line.sku,
            money(line.unit_price_cents, &req.currency)
        ));
    }
    body.push_str(&format!(
        "\nTotal: {}\n",
        money(req.total_cents, &req.currency)
    ));
    (subject, body)
}

fn bad_text(s: &str) -> bool {
    s.chars().count() > MAX_FIELD_CHARS || s.chars().any(|c| c.is_control())
}

fn validate(req: &SendEmailRequest) -> Result<(), Status> {
    if !fleet_server_kit::valid_email(&req.to) {
        return Err(Status::invalid_argument("to must be a valid email address"));
    }
    if req.order_id.trim().is_empty() {
        return Err(Status::invalid_argument("order_id is required"));
    }
    if bad_text(&req.order_id) {
        return Err(Status::invalid_argument(format!(
            "order_id must be at most {MAX_FIELD_CHARS} printable characters"
        )));
    }
    if req.lines.len() > MAX_LINES {
        return Err(Status::invalid_argument(format!(
            "at most {MAX_LINES} lines per email"
        )));
    }
    if req
        .lines
        .iter()
        .any(|l| bad_text(&l.name) || bad_text(&l.sku))
    {
        return Err(Status::invalid_argument(format!(
            "line names and SKUs must be at most {MAX_FIELD_CHARS} printable characters"
        )));
    }
    if req.currency.len() != 3 || !req.currency.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err(Status::invalid_argument(
            "currency must be a 3-letter ISO 4217 code",
        ));
    }
    Ok(())
}

pub struct Notifications {
    outbox: Outbox,
    faults: Faults,
}

#[tonic::async_trait]
impl NotificationService for Notifications {
    async fn send_email(
        &self,
        request: Request<SendEmailRequest>,
    ) -> Result<Response<SendEmailResponse>, Status> {
        let req = request.into_inner();
        let span = tracing::info_span!(
            "sendEmail",
            otel.kind = "internal",
            app.order.id = tracing::field::Empty
        );
        async {
            validate(&req)?;
            tracing::Span::current().record("app.order.id", req.order_id.as_str());
            // The fault point `notification.send`: a slow or failing mail server.
            if let Some(fault) = self.faults.check(SEND) {
                fault.delay().await;
                if let Some(status) = fault.spec.error {
                    return Err(Status::new(
                        Code::from(grpc_code_for_status(status)),
                        "mail server rejected the message",
                    ));
                }
            }
            let (subject, body) = render(&req);
            let message_id = format!("<{}@notification.fleet>", uuid::Uuid::new_v4());
            let sent_at_unix_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or_default();
            self.outbox.push(Email {
                message_id: message_id.clone(),
                to: req.to.clone(),
                subject,
                body,
                order_id: req.order_id.clone(),
                sent_at_unix_ms,
            });
            tracing::info!(%message_id, "email sent");
            Ok(Response::new(SendEmailResponse { message_id }))
        }
        .instrument(span)
        .await
    }

    async fn list_outbox(
        &self,
        request: Request<ListOutboxRequest>,
    ) -> Result<Response<ListOutboxResponse>, Status> {
        let req = request.into_inner();
        let limit = if req.limit <= 0 {
            100
        } else {
            req.limit.min(1000) as usize
        };
        Ok(Response::new(ListOutboxResponse {
            emails: self.outbox.list(&req.to, limit),
        }))
    }
}

#[derive(Debug, Deserialize)]
struct OutboxQuery {
    #[serde(default)]
    to: String,
    limit: Option<usize>,
}

#[derive(Debug, Serialize)]
struct OutboxEmail {
    message_id: String,
    to: String,
    subject: String,
    body: String,
    order_id: String,
    sent_at_unix_ms: i64,
}

async fn outbox_http(
    State(outbox): State<Outbox>,
    query: Result<Query<OutboxQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let Query(q) = query.map_err(|e| {
        ApiError::new(
            axum::http::StatusCode::BAD_REQUEST,
            "invalid_query",
            e.body_text(),
        )
    })?;
    let emails: Vec<OutboxEmail> = outbox
        .list(&q.to, q.limit.unwrap_or(100).min(1000))
        .into_iter()
        .map(|e| OutboxEmail {
            message_id: e.message_id,
            to: e.to,
            subject: e.subject,
            body: e.body,
            order_id: e.order_id,
            sent_at_unix_ms: e.sent_at_unix_ms,
        })
        .collect();
    Ok(axum::Json(serde_json::json!({ "emails": emails })))
}

/// gRPC (NotificationService, grpc.health.v1), `GET /outbox`, `/healthz`, `/readyz` on one port
/// (and `/metrics`, which `Running::spawn` adds), the outbox's drops counted in `metrics`.
pub async fn router(config: &Config, faults: Faults, metrics: &Metrics) -> axum::Router {
    let outbox = Outbox::new(config.outbox_capacity, config.outbox_max_bytes, metrics);
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_serving::<NotificationServiceServer<Notifications>>()
        .await;
    let grpc = tonic::service::Routes::new(
        NotificationServiceServer::new(Notifications {
            outbox: outbox.clone(),
            faults: faults.clone(),
        })
        .max_decoding_message_size(MAX_MESSAGE_BYTES),
    )
    .add_service(health)
    .into_axum_router();
    grpc.route("/outbox", get(outbox_http).with_state(outbox))
        .merge(fleet_faults::admin_router(faults))
        .merge(fleet_server_kit::health_router(None))
}
