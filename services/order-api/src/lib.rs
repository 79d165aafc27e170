//! order-api: products and orders over HTTP, stored in PostgreSQL (or an embedded SQLite file
//! when `DATABASE_URL` is unset), paid through payment-api over gRPC.
//!
//! `server` holds the router and handlers, `client` the typed client api-gateway uses,
//! `store` the database, `model` the JSON both sides share.

pub mod client;
#[cfg(feature = "server")]
pub mod config;
pub mod model;
#[cfg(feature = "server")]
pub mod reconcile;
#[cfg(feature = "server")]
pub mod server;
#[cfg(feature = "server")]
pub mod store;

pub const SERVICE_NAME: &str = "order-api";

#[cfg(feature = "server")]
pub use config::Config;
#[cfg(feature = "server")]
use fleet_server_kit::Running;

/// Starts order-api on `config.listen_addr` (port 0 picks a free one): opens the database,
/// binds, serves. Telemetry is the caller's: see [`run_from_env`].
#[cfg(feature = "server")]
pub async fn start(config: Config, faults: fleet_faults::Faults) -> anyhow::Result<Running> {
    let store = match &config.database_url {
        Some(url) => store::Store::postgres(url, config.database_max_connections).await?,
        None => store::Store::sqlite(&config.sqlite_path).await?,
    };
    tracing::info!(database = store.system(), "database ready");
    let listener = fleet_server_kit::bind(&config.listen_addr, SERVICE_NAME).await?;
    let metrics = fleet_server_kit::Metrics::new(SERVICE_NAME);
    faults.count_in(&metrics);
    let max_in_flight = fleet_server_kit::InFlightLimit::new(config.max_in_flight)
        .lowered_by(faults.in_flight_limit(server::SHED));
    let counters = server::OrderCounters::register(&metrics);
    let reconciler = reconcile::Reconciler {
        store: store.clone(),
        payments: payment_api::client::PaymentClient::connect_lazy(
            &config.payment_api_addr,
            config.payment_timeout,
        )?,
        pending_bound: config.pending_bound,
        interval: config.reconcile_interval,
        counters: counters.clone(),
    };
    let app = server::router(&config, store, faults, counters)?;
    let reconciling = tokio::spawn(reconciler.run());
    Running::spawn(listener, app, metrics, max_in_flight, true, async move {
        reconciling.abort()
    })
}

/// The process edge: telemetry from `OTEL_*`, configuration from the environment, serve until
/// Ctrl-C/SIGTERM, drain, flush.
/// Boxed here, where its body is compiled (see `fleet_server_kit::ProcessMain`).
#[cfg(feature = "server")]
pub fn run_from_env() -> fleet_server_kit::ProcessMain {
    Box::pin(serve_from_env())
}

#[cfg(feature = "server")]
async fn serve_from_env() -> anyhow::Result<()> {
    fleet_server_kit::run(SERVICE_NAME, env!("CARGO_PKG_VERSION"), || async {
        start(
            Config::from_env()?,
            fleet_faults::Faults::from_env(SERVICE_NAME, server::FAULT_POINTS)?,
        )
        .await
    })
    .await
}
