//! The gRPC service and the router that serves it beside `/healthz` and `/readyz`.

use fleet_faults::{Faults, grpc_code_for_status};
use fleet_proto::payment::v1::payment_service_server::{PaymentService, PaymentServiceServer};
use fleet_proto::payment::v1::{ChargeRequest, ChargeResponse};
use tonic::{Code, Request, Response, Status};
use tracing::Instrument as _;

use crate::Config;
use crate::card::validate_card_number;
use crate::provider::{ProviderClient, ProviderError};

pub struct Payments {
    provider: ProviderClient,
    faults: Faults,
}

impl Payments {
    pub fn new(provider: ProviderClient, faults: Faults) -> Self {
        Self { provider, faults }
    }
}

fn validate(req: &ChargeRequest) -> Result<(), Status> {
    if req.order_id.trim().is_empty() {
        return Err(Status::invalid_argument("order_id is required"));
    }
    if req.amount_cents <= 0 {
        return Err(Status::invalid_argument("amount_cents must be positive"));
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
            app.order.id = %req.order_id,
            app.payment.amount_cents = req.amount_cents,
            app.payment.currency = %req.currency,
        );
        async {
            validate(&req)?;
            if let Some(fault) = self.faults.check("payment.charge") {
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
                .check("payment.retry")
                .filter(|f| f.mode() == Some("retry"))
                .map(|f| {
                    (
                        f.spec.retries.unwrap_or(3),
                        f.spec
                            .backoff
                            .unwrap_or(std::time::Duration::from_millis(100)),
                    )
                });
            let description = format!("order {}", req.order_id);
            match self
                .provider
                .create_charge(
                    req.amount_cents,
                    &req.currency,
                    &req.card_number,
                    &description,
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
}

/// gRPC (PaymentService and grpc.health.v1) plus `/healthz` and `/readyz` on one port.
pub async fn router(config: &Config, faults: Faults) -> anyhow::Result<axum::Router> {
    let provider = ProviderClient::new(&config.provider_url, config.provider_timeout)?;
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_serving::<PaymentServiceServer<Payments>>()
        .await;
    let grpc = tonic::service::Routes::new(PaymentServiceServer::new(Payments::new(
        provider,
        faults.clone(),
    )))
    .add_service(health)
    .into_axum_router();
    Ok(grpc
        .merge(fleet_faults::admin_router(faults))
        .merge(fleet_server_kit::health_router(None)))
}
