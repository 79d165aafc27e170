fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A vendored protoc: a fresh machine has none installed.
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    tonic_prost_build::configure().compile_with_config(
        config,
        &[
            "proto/payment/v1/payment.proto",
            "proto/notification/v1/notification.proto",
        ],
        &["proto"],
    )?;
    Ok(())
}
