//! A service started in this process: the desk's shape (`start(config) -> Running`) for every
//! service, so tests start several on port 0 in one process, and one runner for the process edge.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// How long a stopping service lets in-flight requests finish before it drops them. With the
/// 1.5 s span flush after it, a service stops within about 3 s whatever its callers or its
/// collector do; `fleet up` stops the whole fleet within 5 s (docs/reliability.md).
pub const DRAIN_DEADLINE: Duration = Duration::from_millis(1500);

/// A serving service: where it listens, and how to stop it.
pub struct Running {
    addr: SocketAddr,
    metrics: Metrics,
    stop: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Running {
    /// Serves `app` on `listener` (with `GET /metrics` from `metrics`, the shared fallbacks,
    /// body limit, refusal counters, load shedding past `max_in_flight` requests in flight
    /// and, when `traced`, the server-span middleware) until
    /// [`Running::shutdown`]; then drains for at most [`DRAIN_DEADLINE`] and runs `after_stop`
    /// (e.g. waiting for background work).
    pub fn spawn(
        listener: TcpListener,
        app: Router,
        metrics: Metrics,
        max_in_flight: impl Into<crate::InFlightLimit>,
        traced: bool,
        after_stop: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<Self> {
        let addr = listener.local_addr()?;
        let stop = CancellationToken::new();
        let app = crate::serve::with_fleet_layers(app, &metrics, max_in_flight.into(), traced);
        let graceful = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(stop.clone().cancelled_owned());
        let stopping = stop.clone();
        let task = tokio::spawn(async move {
            let mut serving = tokio::spawn(async move { graceful.await });
            let drained = tokio::select! {
                served = &mut serving => Some(served),
                () = async {
                    stopping.cancelled().await;
                    tokio::time::sleep(DRAIN_DEADLINE).await;
                } => None,
            };
            let result = match drained {
                Some(Ok(served)) => served.map_err(anyhow::Error::from),
                Some(Err(join)) => Err(anyhow::anyhow!("server task failed: {join}")),
                None => {
                    serving.abort();
                    tracing::warn!(deadline = ?DRAIN_DEADLINE, "requests still in flight at the drain deadline were dropped");
                    Ok(())
                }
            };
            after_stop.await;
            result
        });
        Ok(Self {
            addr,
            metrics,
            stop,
            task,
        })
    }

    /// The service's counters (what `GET /metrics` serves), readable after it stopped too.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`, for clients.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting, drains (bounded), and returns the server's result.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.stop.cancel();
        match self.task.await {
            Ok(result) => result,
            Err(join) => Err(anyhow::anyhow!("server task failed: {join}")),
        }
    }

    /// Resolves if the server stops on its own (an accept error), which it should not.
    async fn ended(&mut self) -> anyhow::Result<()> {
        match (&mut self.task).await {
            Ok(result) => result,
            Err(join) => Err(anyhow::anyhow!("server task failed: {join}")),
        }
    }
}

/// The process edge of a traced service (`fleet run NAME`, a container's entry point):
/// installs global telemetry from the `OTEL_*` variables, starts the service, serves until
/// Ctrl-C/SIGTERM, drains, and flushes spans — each step bounded.
pub async fn run<F, Fut>(service: &str, version: &str, start: F) -> anyhow::Result<()>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = anyhow::Result<Running>>,
{
    let mut telemetry = fleet_telemetry::init(fleet_telemetry::TelemetryConfig::from_env(
        service, version,
    )?)?;
    let result = serve_until_signal(start).await;
    telemetry.shutdown();
    result
}

/// [`run`] for a process that exports no telemetry (the payment provider's stand-in).
pub async fn run_untraced<F, Fut>(start: F) -> anyhow::Result<()>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = anyhow::Result<Running>>,
{
    fleet_telemetry::init_logs()?;
    serve_until_signal(start).await
}

async fn serve_until_signal<F, Fut>(start: F) -> anyhow::Result<()>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = anyhow::Result<Running>>,
{
    let mut running = start().await?;
    tokio::select! {
        () = crate::shutdown_signal() => {}
        ended = running.ended() => return ended,
    }
    running.shutdown().await
}
