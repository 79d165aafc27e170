//! The typed client callers use: traced, with `traceparent` and `baggage` in the metadata.

use fleet_proto::payment::v1::payment_service_client::PaymentServiceClient;
use fleet_proto::payment::v1::{ChargeRequest, ChargeResponse};
use fleet_telemetry::grpc_client::{GrpcClientTrace, traced_channel};
use tonic::transport::Channel;

#[derive(Debug, Clone)]
pub struct PaymentClient {
    inner: PaymentServiceClient<GrpcClientTrace<Channel>>,
}

impl PaymentClient {
    /// Connects lazily, so the service may start after its callers. `addr` is `http://host:port`.
    pub fn connect_lazy(
        addr: &str,
        timeout: std::time::Duration,
    ) -> Result<Self, tonic::transport::Error> {
        Ok(Self {
            inner: PaymentServiceClient::new(traced_channel(addr, timeout)?),
        })
    }

    pub async fn charge(&self, request: ChargeRequest) -> Result<ChargeResponse, tonic::Status> {
        let mut client = self.inner.clone();
        Ok(client.charge(request).await?.into_inner())
    }
}
