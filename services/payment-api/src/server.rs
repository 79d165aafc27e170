//! The gRPC service and the router that serves it beside `/healthz` and `/readyz`.

use fleet_faults::{Faults, grpc_code_for_status};
use fleet_proto::payment::v1::payment_service_server::{PaymentService, PaymentServiceServer};
use fleet_proto::payment::v1::{ChargeRequest, ChargeResponse, GetChargeRequest};
use tonic::{Code, Request, Response, Status};
use tracing::Instrument as _;

use crate::Config;
use crate::card::validate_card_number;
use crate::provider::{ProviderClient, ProviderError};
use fleet_faults::FaultPoint;

/// This service's fault points (`FLEET_FAULTS`, `/admin/faults`, baggage), each checked below.
pub const CHARGE: FaultPoint = FaultPoint {
    name: "payment.charge",
    about: "the Charge handler: latency or an error status",
};
pub const RETRY: FaultPoint = FaultPoint {
    name: "payment.retry",
    about: "mode=retry: retry failed provider calls (retries=N, backoff=D, doubling)",
};
pub const SHED: FaultPoint = FaultPoint {
    name: "payment.shed",
    about: "max_in_flight=N lowers the load-shedding limit (MAX_IN_FLIGHT): past N requests in flight, UNAVAILABLE at once",
};
pub const FAULT_POINTS: &[FaultPoint] = &[CHARGE, RETRY, SHED];

pub struct Payments {
    provider: ProviderClient,
    faults: Faults,
}

impl Payments {
    pub fn new(provider: ProviderClient, faults: Faults) -> Self {
        Self { provider, faults }
    }
}

/// Largest `Charge` message accepted (tonic's default is 4 MiB); bigger ones are refused with
/// `OUT_OF_RANGE` before they are decoded.
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024;
/// Longest `order_id`: order ids are UUIDs (36); this leaves room for other callers' ids.
pub const MAX_ORDER_ID_CHARS: usize = 64;
/// Longest idempotency key (the provider's limit).
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;
/// Largest charge: 1,000,000.00 in the currency's major unit.
pub const MAX_AMOUNT_CENTS: i64 = 100_000_000;

fn validate(req: &ChargeRequest) -> Result<(), Status> {
    if req.order_id.trim().is_empty() {
        return Err(Status::invalid_argument("order_id is required"));
    }
    // Visible ASCII: with no idempotency key the order id is the provider's key, and an HTTP
    // header carries nothing else (a non-ASCII id answered UNAVAILABLE before this check).
    if req.order_id.len() > MAX_ORDER_ID_CHARS
        || req.order_id.chars().any(|c| !c.is_ascii_graphic())
    {
        return Err(Status::invalid_argument(format!(
            "order_id must be at most {MAX_ORDER_ID_CHARS} visible ASCII characters"
        )));
    }
    if req.idempotency_key.len() > MAX_IDEMPOTENCY_KEY_LEN
        || req.idempotency_key.chars().any(|c| !c.is_ascii_graphic())
    {
        return Err(Status::invalid_argument(format!(
            "idempotency_key must be at most {MAX_IDEMPOTENCY_KEY_LEN} visible ASCII characters"
        )));
    }
    if req.amount_cents <= 0 {
        return Err(Status::invalid_argument("amount_cents must be positive"));
    }
    if req.amount_cents > MAX_AMOUNT_CENTS {
        return Err(Status::invalid_argument(format!(
            "amount_cents must be at most {MAX_AMOUNT_CENTS}"
        )));
    }
    if req.currency.len() != 3 || !req.currency.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err(Status::invalid_argument(
            "currency must be a 3-letter ISO 4217 code",
        ));
    }
    validate_card_number(&req.card_number).map_err(Status::invalid_argument)
}

#[tonic::async_trait]
impl PaymentService for Payments {
    async fn charge(
        &self,
        request: Request<ChargeRequest>,
    ) -> Result<Response<ChargeResponse>, Status> {
        let req = request.into_inner();
        let span = tracing::info_span!(
            "charge",
            otel.kind = "internal",
            otel.status_code = tracing::field::Empty,
            error.type = tracing::field::Empty,
            app.order.id = tracing::field::Empty,
            app.payment.amount_cents = tracing::field::Empty,
            app.payment.currency = tracing::field::Empty,
        );
        async {
            validate(&req)?;
            // Recorded once valid, so no caller can put a megabyte into a span.
            let span = tracing::Span::current();
            span.record("app.order.id", req.order_id.as_str());
            span.record("app.payment.amount_cents", req.amount_cents);
            span.record("app.payment.currency", req.currency.as_str());
            if let Some(fault) = self.faults.check(CHARGE) {
                fault.delay().await;
                if let Some(status) = fault.spec.error {
                    return Err(Status::new(
                        Code::from(grpc_code_for_status(status)),
                        "charge failed: internal error",
                    ));
                }
            }
            let retry = self
                .faults
                .check(RETRY)
                .filter(|f| f.mode() == Some("retry"))
                .map(|f| {
                    (
                        f.spec
                            .retries
                            .unwrap_or(fleet_faults::Limits::DEFAULT_RETRIES),
                        f.spec
                            .backoff
                            .unwrap_or(fleet_faults::Limits::DEFAULT_BACKOFF),
                    )
                });
            let description = format!("order {}", req.order_id);
            let key = if req.idempotency_key.is_empty() {
                req.order_id.as_str()
            } else {
                req.idempotency_key.as_str()
            };
            match self
                .provider
                .create_charge(
                    req.amount_cents,
                    &req.currency,
                    &req.card_number,
                    &description,
                    key,
                    retry,
                )
                .await
            {
                Ok(charge) => Ok(Response::new(ChargeResponse {
                    charge_id: charge.id,
                    status: charge.status,
                })),
                Err(err) => {
                    let status = match &err {
                        ProviderError::Declined { .. } => {
                            Status::failed_precondition(err.to_string())
                        }
                        ProviderError::Timeout => Status::deadline_exceeded(err.to_string()),
                        ProviderError::Unreachable(_) | ProviderError::Failed(_) => {
                            Status::unavailable(err.to_string())
                        }
                    };
                    // A decline is the card's outcome, not a fault of ours.
                    if let Some(kind) = err.fault_kind() {
                        let span = tracing::Span::current();
                        span.record("otel.status_code", "ERROR");
                        span.record("error.type", kind);
                    }
                    tracing::warn!(error = %err, "charge failed");
                    Err(status)
                }
            }
        }
        .instrument(span)
        .await
    }

    async fn get_charge(
        &self,
        request: Request<GetChargeRequest>,
    ) -> Result<Response<ChargeResponse>, Status> {
        let key = request.into_inner().idempotency_key;
        if key.is_empty()
            || key.len() > MAX_IDEMPOTENCY_KEY_LEN
            || key.chars().any(|c| !c.is_ascii_graphic())
        {
            return Err(Status::invalid_argument(format!(
                "idempotency_key must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} visible ASCII characters"
            )));
        }
        match self.provider.find_charge(&key).await {
            Ok(Some(charge)) => Ok(Response::new(ChargeResponse {
                charge_id: charge.id,
                status: charge.status,
            })),
            Ok(None) => Err(Status::not_found("the provider never saw this key")),
            Err(err @ ProviderError::Declined { .. }) => {
                Err(Status::failed_precondition(err.to_string()))
            }
            Err(err) => Err(Status::unavailable(err.to_string())),
        }
    }
}

/// gRPC (PaymentService and grpc.health.v1) plus `/healthz` and `/readyz` on one port.
pub async fn router(config: &Config, faults: Faults) -> anyhow::Result<axum::Router> {
    let provider = ProviderClient::new(&config.provider_url, config.provider_timeout)?;
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_serving::<PaymentServiceServer<Payments>>()
        .await;
    let grpc = tonic::service::Routes::new(
        PaymentServiceServer::new(Payments::new(provider, faults.clone()))
            .max_decoding_message_size(MAX_MESSAGE_BYTES),
    )
    .add_service(health)
    .into_axum_router();
    Ok(grpc
        .merge(fleet_faults::admin_router(faults))
        .merge(fleet_server_kit::health_router(None)))
}
