//! The trace desk: receives OTLP traces (gRPC and HTTP), keeps them in a bounded
//! in-memory store and serves a Tempo-compatible subset of Tempo's HTTP API, so
//! anything that reads traces from Grafana Tempo can read them from the desk. With
//! `DESK_DATA_DIR` set it also keeps what it holds on disk and replays it at start
//! ([`persist`]).
//!
//! The desk exports no telemetry of its own.

pub mod api;
pub mod config;
pub mod jsonpb;
pub mod limits;
pub mod metrics_query;
pub mod otlp;
pub mod persist;
pub mod prom_text;
pub mod prune;
pub mod search;
pub mod search_pool;
pub mod store;
pub mod summary;
pub mod trace_view;
pub mod traceql;

use std::io::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use config::{ConfigError, DeskConfig};
pub use persist::{Intake, Persist, PersistConfig};
pub use store::{Store, StoreStats, StoredSpan};

/// How long [`RunningDesk::shutdown`] waits for connections to drain.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// A started desk: three listeners served by background tasks.
#[derive(Debug)]
pub struct RunningDesk {
    api_addr: SocketAddr,
    otlp_grpc_addr: SocketAddr,
    otlp_http_addr: SocketAddr,
    store: Store,
    persist: Option<Persist>,
    stop: watch::Sender<bool>,
    tasks: Vec<(&'static str, JoinHandle<anyhow::Result<()>>)>,
}

impl RunningDesk {
    /// Bound address of the Tempo API.
    pub fn api_addr(&self) -> SocketAddr {
        self.api_addr
    }

    /// Bound address of the OTLP gRPC receiver.
    pub fn otlp_grpc_addr(&self) -> SocketAddr {
        self.otlp_grpc_addr
    }

    /// Bound address of the OTLP HTTP receiver.
    pub fn otlp_http_addr(&self) -> SocketAddr {
        self.otlp_http_addr
    }

    /// The span store the desk serves.
    pub fn store(&self) -> Store {
        self.store.clone()
    }

    /// The desk's persistence, when `DESK_DATA_DIR` is set.
    pub fn persist(&self) -> Option<Persist> {
        self.persist.clone()
    }

    /// Stops accepting, lets in-flight requests finish (up to [`SHUTDOWN_GRACE`]),
    /// then ends the server tasks and closes the data file.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for (name, mut task) in self.tasks {
            let began = std::time::Instant::now();
            let result = tokio::time::timeout(SHUTDOWN_GRACE, &mut task).await;
            tracing::debug!(listener = name, elapsed = ?began.elapsed(), "listener stopped");
            match result {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => {
                    tracing::warn!(listener = name, error = %e, "server ended with an error")
                }
                Ok(Err(e)) => tracing::warn!(listener = name, error = %e, "server task failed"),
                Err(_) => {
                    tracing::warn!(listener = name, "graceful shutdown timed out; aborting");
                    task.abort();
                }
            }
        }
        if let Some(persist) = self.persist {
            persist.close().await;
        }
    }
}

async fn bind(addr: SocketAddr, what: &str) -> anyhow::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the {what} listener on {addr}"))?;
    let local = listener
        .local_addr()
        .with_context(|| format!("reading the {what} listener's address"))?;
    Ok((listener, local))
}

async fn stopped(mut rx: watch::Receiver<bool>) {
    while !*rx.borrow_and_update() {
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// Binds the three listeners (port 0 allowed) and serves them in background tasks.
pub async fn start(config: DeskConfig) -> anyhow::Result<RunningDesk> {
    let store = Store::with_limits(config.max_spans, config.max_bytes)
        .with_attribute_limits(config.attribute_limits);
    let persist = match config.persist.clone() {
        None => None,
        Some(pc) => {
            let replay_store = store.clone();
            let (persist, _) = tokio::task::spawn_blocking(move || Persist::open(pc, replay_store))
                .await
                .context("the replay task failed")??;
            Some(persist)
        }
    };
    let intake = Intake::new(store.clone(), persist.clone());
    let (api_listener, api_addr) = bind(config.api_addr, "api").await?;
    let (grpc_listener, otlp_grpc_addr) = bind(config.otlp_grpc_addr, "otlp-grpc").await?;
    let (http_listener, otlp_http_addr) = bind(config.otlp_http_addr, "otlp-http").await?;
    let (stop, stop_rx) = watch::channel(false);

    let api_router = api::router(
        api::ApiState::new(
            store.clone(),
            config.query_timeout,
            config.max_concurrent_searches,
        )
        .with_persist(persist.clone()),
    );
    let api_stop = stopped(stop_rx.clone());
    let api_task = tokio::spawn(async move {
        axum::serve(api_listener, api_router)
            .with_graceful_shutdown(api_stop)
            .await
            .context("serving the api listener")
    });

    let http_router = otlp::http_router(intake.clone());
    let http_stop = stopped(stop_rx.clone());
    let http_task = tokio::spawn(async move {
        axum::serve(http_listener, http_router)
            .with_graceful_shutdown(http_stop)
            .await
            .context("serving the otlp-http listener")
    });

    let grpc_service = otlp::GrpcIntake::new(intake).into_server();
    let grpc_stop = stopped(stop_rx.clone());
    let grpc_task = tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(grpc_service)
            .serve_with_incoming_shutdown(
                tonic::transport::server::TcpIncoming::from(grpc_listener),
                grpc_stop,
            )
            .await
            .context("serving the otlp-grpc listener")
    });

    let mut tasks = vec![
        ("api", api_task),
        ("otlp-http", http_task),
        ("otlp-grpc", grpc_task),
    ];
    if let Some(p) = persist.clone() {
        let compactor_stop = stopped(stop_rx);
        tasks.push((
            "compactor",
            tokio::spawn(async move {
                p.run_compactor(compactor_stop).await;
                Ok(())
            }),
        ));
    }

    tracing::info!(%api_addr, %otlp_grpc_addr, %otlp_http_addr, max_spans = config.max_spans, max_bytes = config.max_bytes, data_dir = ?config.persist.as_ref().map(|p| &p.dir), "trace desk listening");
    Ok(RunningDesk {
        api_addr,
        otlp_grpc_addr,
        otlp_http_addr,
        store,
        persist,
        stop,
        tasks,
    })
}

/// The `fleet:listening` lines printed when `FLEET_ANNOUNCE` is set.
pub fn announce_lines(desk: &RunningDesk) -> [String; 3] {
    [
        format!("fleet:listening api {}", desk.api_addr()),
        format!("fleet:listening otlp-grpc {}", desk.otlp_grpc_addr()),
        format!("fleet:listening otlp-http {}", desk.otlp_http_addr()),
    ]
}

/// Starts from the environment ([`DeskConfig::from_env`]), announces the
/// listeners if `FLEET_ANNOUNCE` is set, and runs until Ctrl-C or SIGTERM.
/// Boxed here, where its body is compiled (see `fleet_server_kit::ProcessMain`).
pub fn run_from_env() -> fleet_server_kit::ProcessMain {
    Box::pin(serve_from_env())
}

async fn serve_from_env() -> anyhow::Result<()> {
    let config = DeskConfig::from_env().context("reading the trace desk configuration")?;
    let desk = start(config).await?;
    if std::env::var_os("FLEET_ANNOUNCE").is_some() {
        let mut stdout = std::io::stdout().lock();
        for line in announce_lines(&desk) {
            writeln!(stdout, "{line}").context("writing the announce lines")?;
        }
        stdout.flush().context("flushing stdout")?;
    }
    fleet_server_kit::shutdown_signal().await;
    tracing::info!("shutting down");
    desk.shutdown().await;
    Ok(())
}
