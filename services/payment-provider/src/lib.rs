//! A stand-in for a third-party payment provider (think Stripe): its own process, its own
//! rules, and no telemetry at all — in a trace it appears only as payment-api's client span.
//!
//! `POST /v1/charges` with `{"amount":1999,"currency":"usd","card_number":"4242…"}` answers
//! 200 with a charge, or 402 with a Stripe-shaped decline for these test cards:
//!
//! | card | outcome |
//! | --- | --- |
//! | 4000 0000 0000 0002 | `card_declined` / `generic_decline` |
//! | 4000 0000 0000 9995 | `card_declined` / `insufficient_funds` |
//! | 4000 0000 0000 0069 | `expired_card` |
//! | 4000 0000 0000 0119 | 500 `processing_error` (a provider fault) |
//! | anything else | success |

pub mod config;
pub mod server;

pub use config::Config;
pub use server::router;

use fleet_server_kit::Running;

pub const SERVICE_NAME: &str = "payment-provider";

/// Starts the provider on `config.listen_addr` (port 0 picks a free one), untraced: a third
/// party sends us no spans.
pub async fn start(config: Config, faults: fleet_faults::Faults) -> anyhow::Result<Running> {
    let listener = fleet_server_kit::bind(&config.listen_addr, SERVICE_NAME).await?;
    let max_in_flight = config.max_in_flight;
    let metrics = fleet_server_kit::Metrics::new(SERVICE_NAME);
    faults.count_in(&metrics);
    let app = router(config, faults, &metrics);
    Running::spawn(listener, app, metrics, max_in_flight, false, async {})
}

/// Runs the provider until Ctrl-C/SIGTERM. Plain logs only.
/// Boxed here, where its body is compiled (see `fleet_server_kit::ProcessMain`).
pub fn run_from_env() -> fleet_server_kit::ProcessMain {
    Box::pin(serve_from_env())
}

async fn serve_from_env() -> anyhow::Result<()> {
    fleet_server_kit::run_untraced(|| async {
        start(
            Config::from_env()?,
            fleet_faults::Faults::from_env(SERVICE_NAME, server::FAULT_POINTS)?,
        )
        .await
    })
    .await
}
