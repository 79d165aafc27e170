//! Generated gRPC contracts shared by the services and their typed clients.

pub mod payment {
    pub mod v1 {
        tonic::include_proto!("payment.v1");
    }
}

pub mod notification {
    pub mod v1 {
        tonic::include_proto!("notification.v1");
    }
}
