//! The typed client callers use: traced, with `traceparent` and `baggage` in the metadata.

use fleet_proto::notification::v1::notification_service_client::NotificationServiceClient;
use fleet_proto::notification::v1::{
    ListOutboxRequest, ListOutboxResponse, SendEmailRequest, SendEmailResponse,
};
use fleet_telemetry::grpc_client::{GrpcClientTrace, traced_channel};
use tonic::transport::Channel;

#[derive(Debug, Clone)]
pub struct NotificationClient {
    inner: NotificationServiceClient<GrpcClientTrace<Channel>>,
}

impl NotificationClient {
    /// Connects lazily, so the service may start after its callers. `addr` is `http://host:port`.
    pub fn connect_lazy(
        addr: &str,
        timeout: std::time::Duration,
    ) -> Result<Self, fleet_telemetry::grpc_client::ChannelError> {
        Ok(Self {
            inner: NotificationServiceClient::new(traced_channel(addr, timeout)?),
        })
    }

    pub async fn send_email(
        &self,
        request: SendEmailRequest,
    ) -> Result<SendEmailResponse, tonic::Status> {
        let mut client = self.inner.clone();
        Ok(client.send_email(request).await?.into_inner())
    }

    pub async fn list_outbox(
        &self,
        to: &str,
        limit: i32,
    ) -> Result<ListOutboxResponse, tonic::Status> {
        let mut client = self.inner.clone();
        Ok(client
            .list_outbox(ListOutboxRequest {
                to: to.to_owned(),
                limit,
            })
            .await?
            .into_inner())
    }
}
