//! `fleet load`: traffic for the fleet, and what it did.
//!
//! Two models. Open (`--rate`): request *i* is sent at `t0 + i / rate` whatever happened to the
//! earlier ones, so a slow fleet meets the same offered load (no coordinated omission); at most
//! `--max-in-flight` requests are out at once and arrivals past that are counted as dropped.
//! Closed (`--concurrency N`): N workers, each sending its next request when the last one is
//! answered (plus `--think-time`). Every answer's `x-trace-id` is kept for the slowest and the
//! failed requests, so the summary points straight at their traces.

mod mix;
mod payload;
mod schedule;
mod stats;

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rand::SeedableRng as _;
use rand::rngs::StdRng;
use serde_json::Value;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use mix::Mix;
use payload::{KnownOrders, Plan, Planner};
use stats::{Outcome, Recorder, Summary};

#[derive(Args, Debug, Clone)]
pub struct LoadArgs {
    /// The gateway to send traffic to.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Open model: requests per second, at a constant arrival rate (the default model, at 10/s).
    #[arg(long, value_parser = schedule::parse_rate, conflicts_with = "concurrency")]
    rate: Option<f64>,
    /// Closed model: this many workers, each sending its next request when the last is answered.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    concurrency: Option<u64>,
    /// Closed model: pause between a worker's answer and its next request (e.g. 100ms).
    #[arg(long, value_parser = schedule::parse_duration, requires = "concurrency")]
    think_time: Option<Duration>,
    /// How long to send (30s, 2m, 500ms); 0s runs until Ctrl-C or SIGTERM. Default: 30s, or no
    /// limit when --requests is given.
    #[arg(long, value_parser = schedule::parse_duration)]
    duration: Option<Duration>,
    /// Stop after this many requests (open model: arrivals, sent or dropped).
    #[arg(long)]
    requests: Option<u64>,
    /// Open model: at most this many requests out at once; arrivals past it are dropped.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    max_in_flight: u64,
    /// Traffic mix, as weights: checkout (POST /checkout), products (GET /products), order
    /// (GET /orders/{id} of an order this run created; a random id, hence a 404, before any).
    #[arg(long, default_value = "checkout=70,products=20,order=10")]
    mix: Mix,
    /// Seed for the payloads and the mix (default: random, printed in the summary).
    #[arg(long)]
    seed: Option<u64>,
    /// Fraction of checkouts paying with the declined test card (402 payment_declined).
    #[arg(long, default_value_t = 0.05, value_parser = schedule::parse_fraction)]
    decline_rate: f64,
    /// Per-request timeout.
    #[arg(long, default_value = "30s", value_parser = schedule::parse_duration)]
    timeout: Duration,
    /// Also write the summary as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// No progress bar or progress lines; only the summary.
    #[arg(long)]
    quiet: bool,
    /// Where the traces can be read, for the hint under the summary.
    #[arg(long, default_value = "http://127.0.0.1:3200", env = "FLEET_TEMPO_URL")]
    tempo: String,
}

/// What the whole run shares.
struct Shared {
    client: reqwest::Client,
    base: String,
    planner: Planner,
    orders: KnownOrders,
    recorder: Mutex<Recorder>,
    sent: AtomicU64,
    dropped: AtomicU64,
    /// Largest scheduling lag seen, in µs.
    max_lag_us: AtomicU64,
}

impl Shared {
    fn record(&self, outcome: Outcome) {
        if let Ok(mut r) = self.recorder.lock() {
            r.record(outcome);
        }
    }
}

pub async fn run(args: LoadArgs) -> anyhow::Result<()> {
    let base = args.url.trim_end_matches('/').to_owned();
    let client = reqwest::Client::builder()
        .timeout(args.timeout)
        .pool_max_idle_per_host(usize::try_from(args.max_in_flight).unwrap_or(usize::MAX))
        .build()
        .context("building the HTTP client")?;
    let seed = args.seed.unwrap_or_else(rand::random);
    let duration = match args.duration {
        Some(d) if d.is_zero() => None,
        Some(d) => Some(d),
        None if args.requests.is_some() => None,
        None => Some(Duration::from_secs(30)),
    };

    let (skus, setup_trace_ids) = catalogue(&client, &base, args.quiet).await;
    let shared = Arc::new(Shared {
        client,
        base: base.clone(),
        planner: Planner {
            mix: args.mix.clone(),
            skus,
            decline_rate: args.decline_rate,
        },
        orders: KnownOrders::default(),
        recorder: Mutex::new(Recorder::default()),
        sent: AtomicU64::new(0),
        dropped: AtomicU64::new(0),
        max_lag_us: AtomicU64::new(0),
    });

    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        let _ = stop_tx.send(true);
    });

    let model = match args.concurrency {
        Some(n) => Model::Closed {
            workers: n,
            think: args.think_time.unwrap_or_default(),
        },
        None => Model::Open {
            rate: args.rate.unwrap_or(10.0),
            max_in_flight: args.max_in_flight,
        },
    };
    // The bar counts requests when their number is known in advance, else time.
    let planned = match (model, duration) {
        (Model::Open { rate, .. }, Some(d)) => {
            let n = schedule::planned_arrivals(rate, d);
            Some(args.requests.map_or(n, |r| r.min(n)))
        }
        _ => args.requests,
    };
    let progress = Progress::start(
        shared.clone(),
        duration,
        planned,
        args.quiet,
        stop_rx.clone(),
    );

    let t0 = Instant::now();
    let send_window = match model {
        Model::Open {
            rate,
            max_in_flight,
        } => {
            open_model(
                &shared,
                rate,
                max_in_flight,
                duration,
                args.requests,
                seed,
                stop_rx.clone(),
                args.timeout,
            )
            .await
        }
        Model::Closed { workers, think } => {
            closed_model(
                &shared,
                workers,
                think,
                duration,
                args.requests,
                seed,
                stop_rx.clone(),
            )
            .await
        }
    };
    let elapsed = t0.elapsed();
    progress.finish().await;

    let interrupted = *stop_rx.borrow();
    let requests = shared.sent.load(Ordering::Relaxed);
    let summary = {
        let r = shared
            .recorder
            .lock()
            .map_err(|_| anyhow::anyhow!("recorder poisoned"))?;
        Summary {
            url: base,
            model: match model {
                Model::Open { .. } => "open",
                Model::Closed { .. } => "closed",
            },
            rate: match model {
                Model::Open { rate, .. } => Some(rate),
                Model::Closed { .. } => None,
            },
            concurrency: args.concurrency.and_then(|c| usize::try_from(c).ok()),
            mix: args.mix.to_string(),
            seed,
            duration_s: duration.map(|d| d.as_secs_f64()),
            requests,
            answered: r.answered,
            dropped: shared.dropped.load(Ordering::Relaxed),
            transport_errors: r.transport_errors,
            errors: r.errors,
            unexpected_errors: r.unexpected_errors,
            untraced: r.untraced,
            statuses: r.statuses(),
            send_window_s: round3(send_window.as_secs_f64()),
            elapsed_s: round3(elapsed.as_secs_f64()),
            achieved_rate: if send_window.is_zero() {
                0.0
            } else {
                round3(requests as f64 / send_window.as_secs_f64())
            },
            max_schedule_lag_ms: shared.max_lag_us.load(Ordering::Relaxed) as f64 / 1e3,
            latency: r.latency(),
            endpoints: r.endpoint_summaries(),
            slowest: r.slowest(),
            failed: r.failed(),
            setup_trace_ids,
            interrupted,
            tempo_url: args.tempo.clone(),
        }
    };
    print!("{}", summary.render());
    if let Some(path) = &args.json {
        let json = serde_json::to_vec_pretty(&summary)?;
        std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

fn round3(v: f64) -> f64 {
    (v * 1e3).round() / 1e3
}

#[derive(Clone, Copy)]
enum Model {
    Open { rate: f64, max_in_flight: u64 },
    Closed { workers: u64, think: Duration },
}

/// Reads `GET /products` for real skus (falls back to the seeded list); returns the skus and the
/// trace id of that read, so the run's own traces can be told apart from it.
async fn catalogue(
    client: &reqwest::Client,
    base: &str,
    quiet: bool,
) -> (Vec<String>, Vec<String>) {
    let fallback = || {
        payload::KNOWN_SKUS
            .iter()
            .map(|s| (*s).to_owned())
            .collect()
    };
    let answer = match client.get(format!("{base}/products")).send().await {
        Ok(a) => a,
        Err(e) => {
            if !quiet {
                eprintln!("fleet load: cannot read {base}/products ({e}); using the known skus");
            }
            return (fallback(), Vec::new());
        }
    };
    let trace_ids = trace_id_of(&answer).into_iter().collect();
    let ok = answer.status().is_success();
    let body: Value = answer.json().await.unwrap_or(Value::Null);
    let skus = payload::skus_from_products(&body);
    if ok && !skus.is_empty() {
        (skus, trace_ids)
    } else {
        if !quiet {
            eprintln!("fleet load: {base}/products gave no skus; using the known skus");
        }
        (fallback(), trace_ids)
    }
}

fn trace_id_of(answer: &reqwest::Response) -> Option<String> {
    answer
        .headers()
        .get("x-trace-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// Sends one planned request and measures it, body included.
async fn send(shared: &Shared, plan: Plan) -> Outcome {
    let endpoint = plan.endpoint();
    let expected_status = plan.expected_status();
    let base = &shared.base;
    let request = match &plan {
        Plan::Checkout { body, .. } => shared.client.post(format!("{base}/checkout")).json(body),
        Plan::Products => shared.client.get(format!("{base}/products")),
        Plan::Order { id, .. } => shared.client.get(format!("{base}/orders/{id}")),
    };
    let start = Instant::now();
    let failed = |e: reqwest::Error, trace_id: Option<String>, start: Instant| Outcome {
        endpoint,
        status: None,
        latency: start.elapsed(),
        trace_id,
        error: Some(transport_error(&e)),
        expected_status,
    };
    let answer = match request.send().await {
        Ok(a) => a,
        Err(e) => return failed(e, None, start),
    };
    let status = answer.status().as_u16();
    let trace_id = trace_id_of(&answer);
    let bytes = match answer.bytes().await {
        Ok(b) => b,
        Err(e) => return failed(e, trace_id, start),
    };
    let latency = start.elapsed();
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    // Orders this run created (paid, or payment_failed after a decline) feed the order look-ups.
    let order_id = match status {
        201 => body["order_id"].as_str(),
        402 => body["error"]["details"]["order_id"].as_str(),
        _ => None,
    };
    if let (Plan::Checkout { .. }, Some(id)) = (&plan, order_id) {
        shared.orders.add(id.to_owned());
    }
    let error = (!(200..300).contains(&status)).then(|| {
        body["error"]["code"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| format!("HTTP {status}"))
    });
    Outcome {
        endpoint,
        status: Some(status),
        latency,
        trace_id,
        error,
        expected_status,
    }
}

fn transport_error(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else if e.is_body() || e.is_decode() {
        "body"
    } else {
        "transport"
    };
    let mut detail = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        detail = s.to_string();
        source = s.source();
    }
    format!("{kind}: {detail}")
}

/// Constant arrival rate. Returns the send window (first arrival to the end of sending).
#[allow(clippy::too_many_arguments)]
async fn open_model(
    shared: &Arc<Shared>,
    rate: f64,
    max_in_flight: u64,
    duration: Option<Duration>,
    requests: Option<u64>,
    seed: u64,
    mut stop: watch::Receiver<bool>,
    timeout: Duration,
) -> Duration {
    let permits = usize::try_from(max_in_flight).unwrap_or(Semaphore::MAX_PERMITS);
    let in_flight = Arc::new(Semaphore::new(permits.min(Semaphore::MAX_PERMITS)));
    let mut rng = StdRng::seed_from_u64(seed);
    let mut tasks = JoinSet::new();
    let t0 = Instant::now();
    let end = duration.map(|d| t0 + d);
    let mut i: u64 = 0;
    loop {
        if requests.is_some_and(|n| i >= n) || *stop.borrow() {
            break;
        }
        let due = t0 + schedule::due_offset(i, rate);
        if let Some(end) = end
            && due >= end
        {
            // The window is the whole duration, even though the last arrival came earlier.
            tokio::select! {
                _ = tokio::time::sleep_until(end) => {}
                _ = stop.wait_for(|s| *s) => {}
            }
            break;
        }
        if due > Instant::now() {
            tokio::select! {
                _ = tokio::time::sleep_until(due) => {}
                _ = stop.wait_for(|s| *s) => break,
            }
        }
        let lag = Instant::now().saturating_duration_since(due);
        shared.max_lag_us.fetch_max(
            u64::try_from(lag.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        // Plan every arrival, sent or not, so a seed gives the same sequence.
        let plan = shared.planner.plan(&mut rng, &shared.orders);
        match in_flight.clone().try_acquire_owned() {
            Ok(permit) => {
                shared.sent.fetch_add(1, Ordering::Relaxed);
                let shared = shared.clone();
                tasks.spawn(async move {
                    let outcome = send(&shared, plan).await;
                    shared.record(outcome);
                    drop(permit);
                });
            }
            Err(_) => {
                shared.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        while tasks.try_join_next().is_some() {}
        i += 1;
    }
    // Sending stopped on a count: the window runs to when the next arrival would have been due,
    // so `requests / window` is the rate actually kept.
    let window = if *stop.borrow() {
        t0.elapsed()
    } else {
        t0.elapsed().max(schedule::due_offset(i, rate))
    };
    // Let the requests in flight finish (each is bounded by the timeout); a second Ctrl-C or
    // SIGTERM during the drain is not waited for: the first one already set `stop`.
    let drain = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(timeout + Duration::from_secs(1), drain)
        .await
        .is_err()
    {
        tasks.abort_all();
    }
    window
}

/// N workers looping. Returns the time until the last worker stopped.
async fn closed_model(
    shared: &Arc<Shared>,
    workers: u64,
    think: Duration,
    duration: Option<Duration>,
    requests: Option<u64>,
    seed: u64,
    stop: watch::Receiver<bool>,
) -> Duration {
    let t0 = Instant::now();
    let end = duration.map(|d| t0 + d);
    let tickets = Arc::new(AtomicU64::new(0));
    let mut tasks = JoinSet::new();
    for w in 0..workers {
        let shared = shared.clone();
        let tickets = tickets.clone();
        let mut stop = stop.clone();
        // Each worker its own stream, derived from the seed.
        let mut rng = StdRng::seed_from_u64(seed ^ w.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        tasks.spawn(async move {
            loop {
                if *stop.borrow() || end.is_some_and(|e| Instant::now() >= e) {
                    break;
                }
                if let Some(n) = requests
                    && tickets.fetch_add(1, Ordering::Relaxed) >= n
                {
                    break;
                }
                let plan = shared.planner.plan(&mut rng, &shared.orders);
                shared.sent.fetch_add(1, Ordering::Relaxed);
                let outcome = send(&shared, plan).await;
                shared.record(outcome);
                if !think.is_zero() {
                    let pause = match end {
                        Some(e) => think.min(e.saturating_duration_since(Instant::now())),
                        None => think,
                    };
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => {}
                        _ = stop.wait_for(|s| *s) => break,
                    }
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    t0.elapsed()
}

async fn wait_for_signal() {
    fleet_server_kit::shutdown_signal().await;
}

/// The live view: a bar on a terminal, a plain line every 5 s otherwise, nothing with --quiet.
struct Progress {
    task: Option<tokio::task::JoinHandle<()>>,
    done: watch::Sender<bool>,
}

impl Progress {
    fn start(
        shared: Arc<Shared>,
        duration: Option<Duration>,
        requests: Option<u64>,
        quiet: bool,
        stop: watch::Receiver<bool>,
    ) -> Progress {
        let (done, mut done_rx) = watch::channel(false);
        if quiet {
            return Progress { task: None, done };
        }
        let terminal = std::io::stdout().is_terminal() && std::io::stderr().is_terminal();
        let task = tokio::spawn(async move {
            let t0 = Instant::now();
            let bar = terminal.then(|| new_bar(duration, requests));
            let tick = if terminal {
                Duration::from_millis(200)
            } else {
                Duration::from_secs(5)
            };
            let mut interval = tokio::time::interval_at(t0 + tick, tick);
            loop {
                tokio::select! {
                    _ = interval.tick() => {}
                    _ = done_rx.wait_for(|d| *d) => break,
                }
                let line = status_line(&shared, t0.elapsed(), *stop.borrow());
                match &bar {
                    Some(bar) => {
                        match (requests, duration) {
                            (Some(_), _) => bar.set_position(
                                shared.sent.load(Ordering::Relaxed)
                                    + shared.dropped.load(Ordering::Relaxed),
                            ),
                            (None, Some(_)) => bar.set_position(
                                u64::try_from(t0.elapsed().as_millis()).unwrap_or(u64::MAX),
                            ),
                            (None, None) => bar.tick(),
                        }
                        bar.set_message(line);
                    }
                    None => eprintln!("fleet load: {line}"),
                }
            }
            if let Some(bar) = bar {
                bar.finish_and_clear();
            }
        });
        Progress {
            task: Some(task),
            done,
        }
    }

    async fn finish(self) {
        let _ = self.done.send(true);
        if let Some(task) = self.task {
            let _ = task.await;
        }
    }
}

fn new_bar(duration: Option<Duration>, requests: Option<u64>) -> ProgressBar {
    let (bar, template) = match (requests, duration) {
        (Some(n), _) => (
            ProgressBar::new(n),
            "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} {msg}",
        ),
        (None, Some(d)) => (
            ProgressBar::new(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            "{spinner} [{elapsed_precise}] {wide_bar} {msg}",
        ),
        (None, None) => (
            ProgressBar::new_spinner(),
            "{spinner} [{elapsed_precise}] {msg}  (Ctrl-C for the summary)",
        ),
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    bar.set_draw_target(ProgressDrawTarget::stderr());
    bar
}

fn status_line(shared: &Shared, elapsed: Duration, stopping: bool) -> String {
    let sent = shared.sent.load(Ordering::Relaxed);
    let dropped = shared.dropped.load(Ordering::Relaxed);
    let (done, errors, p99) = match shared.recorder.lock() {
        Ok(r) => (r.completed(), r.errors, r.latency().p99_ms),
        Err(_) => (0, 0, 0.0),
    };
    let rate = if elapsed.is_zero() {
        0.0
    } else {
        sent as f64 / elapsed.as_secs_f64()
    };
    format!(
        "{sent} sent · {} req/s · {} in flight · {errors} errors · {dropped} dropped · p99 {} ms{}",
        stats::num(rate),
        sent.saturating_sub(done),
        stats::num(p99),
        if stopping { " · stopping" } else { "" }
    )
}
