//! The typed client callers use: traced, with `traceparent` and `baggage` in the metadata.

use fleet_proto::payment::v1::payment_service_client::PaymentServiceClient;
use fleet_proto::payment::v1::{ChargeRequest, ChargeResponse, GetChargeRequest};
use fleet_telemetry::grpc_client::{GrpcClientTrace, SkipPropagation, traced_channel};
use tonic::transport::Channel;

/// How one call is made: a deadline shorter than the channel's, or (a fault) without
/// passing the trace context on.
#[derive(Debug, Clone, Copy)]
pub struct CallOptions {
    pub propagate: bool,
    pub timeout: Option<std::time::Duration>,
}

impl Default for CallOptions {
    fn default() -> Self {
        Self {
            propagate: true,
            timeout: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct PaymentClient {
    inner: PaymentServiceClient<GrpcClientTrace<Channel>>,
}

impl PaymentClient {
    /// Connects lazily, so the service may start after its callers. `addr` is `http://host:port`.
    pub fn connect_lazy(
        addr: &str,
        timeout: std::time::Duration,
    ) -> Result<Self, fleet_telemetry::grpc_client::ChannelError> {
        Ok(Self {
            inner: PaymentServiceClient::new(traced_channel(addr, timeout)?),
        })
    }

    pub async fn charge(
        &self,
        options: CallOptions,
        request: ChargeRequest,
    ) -> Result<ChargeResponse, tonic::Status> {
        let mut client = self.inner.clone();
        let mut request = tonic::Request::new(request);
        if let Some(timeout) = options.timeout {
            request.set_timeout(timeout);
        }
        if !options.propagate {
            request.extensions_mut().insert(SkipPropagation);
        }
        Ok(client.charge(request).await?.into_inner())
    }

    /// What became of the charge made under `idempotency_key` (NOT_FOUND: never made).
    pub async fn get_charge(&self, idempotency_key: &str) -> Result<ChargeResponse, tonic::Status> {
        let mut client = self.inner.clone();
        Ok(client
            .get_charge(GetChargeRequest {
                idempotency_key: idempotency_key.to_owned(),
            })
            .await?
            .into_inner())
    }
}
