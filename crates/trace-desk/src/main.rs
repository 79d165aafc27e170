//! `trace-desk`: see the library documentation. Configured through
//! `DESK_API_ADDR`, `DESK_OTLP_GRPC_ADDR`, `DESK_OTLP_HTTP_ADDR`, `DESK_MAX_SPANS`;
//! logs as JSON when `LOG_FORMAT=json` (filter with `RUST_LOG`).

use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var("LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json")) {
        builder.json().init();
    } else {
        builder.init();
    }
    trace_desk::run_from_env().await
}
