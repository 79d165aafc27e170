//! `trace-desk`: see the library documentation. Configured through
//! `DESK_API_ADDR`, `DESK_OTLP_GRPC_ADDR`, `DESK_OTLP_HTTP_ADDR`, `DESK_MAX_SPANS`,
//! `DESK_MAX_BYTES`, `DESK_QUERY_TIMEOUT`, `DESK_MAX_CONCURRENT_SEARCHES`, `DESK_MAX_ATTRIBUTES`,
//! `DESK_MAX_EVENTS`, `DESK_MAX_LINKS`, `DESK_MAX_VALUE_BYTES` (see `trace_desk::config`);
//! logs as JSON when `LOG_FORMAT=json` (filter with `RUST_LOG`).

use tracing_subscriber::EnvFilter;

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var("LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json")) {
        builder.json().init();
    } else {
        builder.init();
    }
    match trace_desk::run_from_env().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "trace desk failed");
            eprintln!("trace-desk: {e:#}");
            ExitCode::FAILURE
        }
    }
}
