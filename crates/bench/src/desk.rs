//! Desk capacity: spans/s ingested over OTLP gRPC and HTTP (protobuf), and query latency with a
//! large number of spans held. The desk is the real release binary (`fleet run desk`), its own
//! process; the spans are generated here in the shape of the fleet's checkout trace (20 spans,
//! four services, one trace in 20 an error). Ingest is measured side by side on a memory-only
//! desk and on one persisting to a data dir (`DESK_DATA_DIR`: every export committed with an
//! fsync before it is answered), alternating, so the ratio is read from one run.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Av;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use prost::Message as _;
use serde::Serialize;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};

use crate::load::{median, percentile};
use crate::procfs;

/// Traces per export request: 25 × 20 = 500 spans, about the SDK's 512-span batch.
const TRACES_PER_BATCH: u64 = 25;
const SPANS_PER_TRACE: u64 = 20;
const SERVICES: [&str; 4] = ["api-gateway", "order-api", "payment-api", "notification"];

/// (service, name, kind, parent, start ms, duration ms)
type ShapeSpan = (usize, &'static str, i32, Option<usize>, u64, u64);
const SHAPE: [ShapeSpan; 20] = [
    (0, "POST /checkout", 2, None, 0, 91),
    (0, "POST /orders", 3, Some(0), 2, 45),
    (1, "POST /orders", 2, Some(1), 3, 43),
    (1, "createOrder", 1, Some(2), 3, 42),
    (1, "SELECT products", 3, Some(3), 4, 1),
    (1, "INSERT orders", 3, Some(3), 5, 1),
    (1, "INSERT order_items", 3, Some(3), 6, 1),
    (1, "payment.v1.PaymentService/Charge", 3, Some(3), 7, 37),
    (2, "payment.v1.PaymentService/Charge", 2, Some(7), 8, 34),
    (2, "charge", 1, Some(8), 8, 34),
    (2, "stripe-sdk.request", 1, Some(9), 9, 33),
    (2, "POST /v1/charges", 3, Some(10), 9, 33),
    (1, "UPDATE orders", 3, Some(3), 44, 1),
    (1, "SELECT orders", 3, Some(3), 45, 1),
    (1, "SELECT order_items", 3, Some(3), 45, 1),
    (1, "COMMIT", 3, Some(3), 46, 1),
    (0, "send confirmation", 1, Some(0), 47, 3),
    (
        0,
        "notification.v1.NotificationService/SendEmail",
        3,
        Some(16),
        47,
        3,
    ),
    (
        3,
        "notification.v1.NotificationService/SendEmail",
        2,
        Some(17),
        48,
        2,
    ),
    (3, "sendEmail", 1, Some(18), 48, 1),
];

fn kv(key: &str, value: Av) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn s(v: &str) -> Av {
    Av::StringValue(v.to_owned())
}

pub fn trace_id(salt: u64, n: u64) -> Vec<u8> {
    let mut id = salt.to_be_bytes().to_vec();
    id.extend_from_slice(&n.to_be_bytes());
    id
}

fn span_id(n: u64, i: usize) -> Vec<u8> {
    ((n << 5) | i as u64 | (1 << 63)).to_be_bytes().to_vec()
}

/// One export request holding traces `first..first + TRACES_PER_BATCH`.
pub fn batch(salt: u64, first: u64, now_ns: u64) -> ExportTraceServiceRequest {
    let mut per_service: Vec<Vec<Span>> = vec![Vec::new(); SERVICES.len()];
    for n in first..first + TRACES_PER_BATCH {
        let error = n % 20 == 7;
        let slow = (n % 10) * 10; // the provider call varies, 0–90 ms more
        let t0 = now_ns.saturating_sub(200_000_000);
        for (i, (svc, name, kind, parent, start, dur)) in SHAPE.iter().enumerate() {
            let grows = [0, 1, 2, 3, 7, 8, 9, 10, 11].contains(&i);
            let later = *start >= 44;
            let start_ms = start + if later { slow } else { 0 };
            let dur_ms = dur + if grows { slow } else { 0 };
            let failed = error && (i == 11 || i == 0);
            per_service[*svc].push(Span {
                trace_id: trace_id(salt, n),
                span_id: span_id(n, i),
                parent_span_id: parent.map(|p| span_id(n, p)).unwrap_or_default(),
                name: (*name).to_owned(),
                kind: *kind,
                start_time_unix_nano: t0 + start_ms * 1_000_000,
                end_time_unix_nano: t0 + (start_ms + dur_ms) * 1_000_000,
                attributes: vec![
                    kv("server.address", s("127.0.0.1")),
                    kv("server.port", Av::IntValue(8080 + *svc as i64)),
                    kv("http.request.method", s("POST")),
                    kv(
                        "http.response.status_code",
                        Av::IntValue(if failed { 500 } else { 200 }),
                    ),
                    kv("app.order.id", s(&format!("{n:016x}"))),
                ],
                status: Some(Status {
                    message: if failed { "boom".into() } else { String::new() },
                    code: if failed { 2 } else { 0 },
                }),
                ..Default::default()
            });
        }
    }
    ExportTraceServiceRequest {
        resource_spans: per_service
            .into_iter()
            .enumerate()
            .map(|(i, spans)| ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![
                        kv("service.name", s(SERVICES[i])),
                        kv("service.version", s("0.1.0")),
                        kv("deployment.environment.name", s("bench")),
                    ],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: "fleet-bench".into(),
                        version: "0.1.0".into(),
                        ..Default::default()
                    }),
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            })
            .collect(),
    }
}

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

pub struct Desk {
    child: Child,
    pub pid: u32,
    pub persisted: bool,
    pub api: String,
    pub grpc: String,
    pub http: String,
}

impl Desk {
    /// A memory-only desk, or with `data_dir` one persisting there.
    pub async fn start(
        fleet_bin: &Path,
        max_spans: u64,
        data_dir: Option<&Path>,
    ) -> anyhow::Result<Desk> {
        let mut command = Command::new(fleet_bin);
        match data_dir {
            Some(dir) => command.env("DESK_DATA_DIR", dir),
            None => command.env_remove("DESK_DATA_DIR"),
        };
        let mut child = command
            .args(["run", "desk"])
            .env("DESK_API_ADDR", "127.0.0.1:0")
            .env("DESK_OTLP_GRPC_ADDR", "127.0.0.1:0")
            .env("DESK_OTLP_HTTP_ADDR", "127.0.0.1:0")
            .env("DESK_MAX_SPANS", max_spans.to_string())
            // The span bound decides what is held: the default byte bound (256 MiB of the
            // desk's estimate) would stop this shape at ~280k spans.
            .env("DESK_MAX_BYTES", (max_spans * 4096).to_string())
            .env("FLEET_ANNOUNCE", "1")
            .env("LOG_FORMAT", "text")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("starting the desk")?;
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
        let mut lines = BufReader::new(stdout).lines();
        let (mut api, mut grpc, mut http) = (None, None, None);
        while api.is_none() || grpc.is_none() || http.is_none() {
            let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
                .await
                .context("desk did not announce within 30 s")??
                .ok_or_else(|| anyhow!("desk exited while starting"))?;
            let Some(rest) = line.strip_prefix("fleet:listening ") else {
                continue;
            };
            let (label, addr) = rest.split_once(' ').unwrap_or_default();
            let url = format!("http://{}", addr.trim());
            match label {
                "api" => api = Some(url),
                "otlp-grpc" => grpc = Some(url),
                "otlp-http" => http = Some(url),
                _ => {}
            }
        }
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Desk {
            pid: child.id().ok_or_else(|| anyhow!("desk has no pid"))?,
            persisted: data_dir.is_some(),
            child,
            api: api.unwrap_or_default(),
            grpc: grpc.unwrap_or_default(),
            http: http.unwrap_or_default(),
        })
    }

    pub async fn stop(mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        if tokio::time::timeout(Duration::from_secs(15), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    Grpc,
    Http,
}

#[derive(Debug, Clone, Serialize)]
pub struct Ingest {
    pub protocol: Protocol,
    /// Into a persisting desk (`DESK_DATA_DIR`).
    pub persisted: bool,
    pub senders: usize,
    pub spans: u64,
    pub seconds: f64,
    pub spans_per_s: f64,
    /// Desk CPU per span, µs (the senders run on the same two cores).
    pub desk_cpu_us_per_span: f64,
}

/// Sends batches from `senders` tasks until `duration` passes or `traces` traces are sent.
pub async fn ingest(
    desk: &Desk,
    protocol: Protocol,
    senders: usize,
    duration: Option<Duration>,
    traces: Option<u64>,
    salt: u64,
    next: Arc<AtomicU64>,
) -> anyhow::Result<Ingest> {
    let sent = Arc::new(AtomicU64::new(0));
    let cpu0 = procfs::cpu_ms(desk.pid).unwrap_or(0.0);
    let t0 = Instant::now();
    let deadline = duration.map(|d| t0 + d);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..senders {
        let (next, sent) = (next.clone(), sent.clone());
        let (grpc_url, http_url) = (desk.grpc.clone(), format!("{}/v1/traces", desk.http));
        tasks.spawn(async move {
            let mut grpc = match protocol {
                Protocol::Grpc => Some(TraceServiceClient::connect(grpc_url).await?),
                Protocol::Http => None,
            };
            let http = reqwest::Client::new();
            loop {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    break;
                }
                let first = next.fetch_add(TRACES_PER_BATCH, Ordering::Relaxed);
                if traces.is_some_and(|t| first >= t) {
                    break;
                }
                let request = batch(salt, first, now_ns());
                match &mut grpc {
                    Some(client) => {
                        client.export(request).await?;
                    }
                    None => {
                        let answer = http
                            .post(&http_url)
                            .header("content-type", "application/x-protobuf")
                            .body(request.encode_to_vec())
                            .send()
                            .await?;
                        if !answer.status().is_success() {
                            bail!("desk answered {}", answer.status());
                        }
                    }
                }
                sent.fetch_add(TRACES_PER_BATCH * SPANS_PER_TRACE, Ordering::Relaxed);
            }
            anyhow::Ok(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    let seconds = t0.elapsed().as_secs_f64();
    let cpu = procfs::cpu_ms(desk.pid).unwrap_or(0.0) - cpu0;
    let spans = sent.load(Ordering::Relaxed);
    Ok(Ingest {
        protocol,
        persisted: desk.persisted,
        senders,
        spans,
        seconds,
        spans_per_s: spans as f64 / seconds,
        desk_cpu_us_per_span: if spans > 0 {
            cpu * 1000.0 / spans as f64
        } else {
            0.0
        },
    })
}

#[derive(Debug, Clone, Serialize)]
pub struct Query {
    pub name: String,
    pub url_path: String,
    pub runs: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Traces (search) or spans (by id) in the last answer.
    pub answer_items: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Capacity {
    pub ingest: Vec<Ingest>,
    pub grpc_spans_per_s: f64,
    pub http_spans_per_s: f64,
    /// The same, into a desk persisting to `DESK_DATA_DIR`, measured alternately with the above.
    pub persisted_grpc_spans_per_s: f64,
    pub persisted_http_spans_per_s: f64,
    /// The persisting desk's WAL commits (fsyncs) and exports committed over all its runs.
    pub persist_commits: u64,
    pub persist_batches: u64,
    pub persist_commit_ms_mean: f64,
    /// Compactions during those runs and their mean time (intake waits for each one's commit).
    pub persist_compactions: u64,
    pub persist_compaction_ms_mean: f64,
    pub grpc_desk_cpu_us_per_span: f64,
    pub http_desk_cpu_us_per_span: f64,
    pub held_spans: u64,
    pub load_held: Ingest,
    pub desk_rss_mib_held: f64,
    pub bytes_per_held_span: f64,
    pub queries: Vec<Query>,
    pub search_load: SearchLoad,
}

/// Intake on the desk holding the spans, alone and while one client sends the TraceQL searches
/// back to back, in interleaved windows.
#[derive(Debug, Clone, Serialize)]
pub struct SearchLoad {
    pub alone_spans_per_s: Vec<f64>,
    pub loaded_spans_per_s: Vec<f64>,
    /// median(loaded) ÷ median(alone).
    pub ratio: f64,
    pub searches: usize,
    /// Search latency while intake ran.
    pub search_p50_ms: f64,
    pub search_p99_ms: f64,
}

/// Sends the searches one after another until `stop`; their latencies.
async fn search_loop(
    client: reqwest::Client,
    urls: Vec<String>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> anyhow::Result<Vec<f64>> {
    let mut times = Vec::new();
    'outer: loop {
        for url in &urls {
            if stop.load(Ordering::Relaxed) {
                break 'outer;
            }
            let (t, _) = time_get(&client, url, 1).await?;
            times.extend(t);
        }
    }
    Ok(times)
}

async fn time_get(
    client: &reqwest::Client,
    url: &str,
    runs: usize,
) -> anyhow::Result<(Vec<f64>, serde_json::Value)> {
    let mut times = Vec::new();
    let mut last = serde_json::Value::Null;
    for _ in 0..runs {
        let t = Instant::now();
        let answer = client.get(url).send().await?;
        let status = answer.status();
        let body = answer.bytes().await?;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        if !status.is_success() {
            bail!("{url}: {status} {}", String::from_utf8_lossy(&body));
        }
        last = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
    }
    Ok((times, last))
}

fn count_spans(v: &serde_json::Value) -> usize {
    match v {
        serde_json::Value::Object(m) => m
            .iter()
            .map(|(k, x)| match (k.as_str(), x) {
                ("spans", serde_json::Value::Array(a)) => a.len(),
                _ => count_spans(x),
            })
            .sum(),
        serde_json::Value::Array(a) => a.iter().map(count_spans).sum(),
        _ => 0,
    }
}

pub async fn capacity(
    fleet_bin: &Path,
    ingest_window: Duration,
    rounds: usize,
    hold: u64,
    query_runs: usize,
) -> anyhow::Result<Capacity> {
    let salt: u64 = rand::random::<u64>() | 1;
    let next = Arc::new(AtomicU64::new(0));

    // Ingest rate, on desks with the default bound (they evict, as in a long run): one in
    // memory only, one persisting, each window alternating between them.
    let data_dir = crate::system::scratch_dir("desk-data")?;
    let memory = Desk::start(fleet_bin, 200_000, None).await?;
    let persisted = Desk::start(fleet_bin, 200_000, Some(&data_dir)).await?;
    let mut ingest_runs = Vec::new();
    for round in 0..rounds {
        let order = if round % 2 == 0 {
            [Protocol::Grpc, Protocol::Http]
        } else {
            [Protocol::Http, Protocol::Grpc]
        };
        let desks = if round % 2 == 0 {
            [&memory, &persisted]
        } else {
            [&persisted, &memory]
        };
        for p in order {
            for desk in desks {
                ingest_runs
                    .push(ingest(desk, p, 4, Some(ingest_window), None, salt, next.clone()).await?);
            }
        }
    }
    let persist_metrics = reqwest::get(format!("{}/metrics", persisted.api))
        .await?
        .text()
        .await?;
    let persist_metric = |name: &str| metric(&persist_metrics, name).unwrap_or(0.0);
    let persist_commits = persist_metric("trace_desk_persist_commits_total") as u64;
    let persist_batches = persist_metric("trace_desk_persist_batches_written_total") as u64;
    let persist_commit_ms_mean = if persist_commits > 0 {
        persist_metric("trace_desk_persist_commit_seconds_total") * 1000.0 / persist_commits as f64
    } else {
        0.0
    };
    let persist_compactions = persist_metric("trace_desk_persist_compactions_total") as u64;
    let persist_compaction_ms_mean = if persist_compactions > 0 {
        persist_metric("trace_desk_persist_compaction_seconds_total") * 1000.0
            / persist_compactions as f64
    } else {
        0.0
    };
    memory.stop().await;
    persisted.stop().await;
    let _ = std::fs::remove_dir_all(&data_dir);
    let med_of = |p: Protocol, persisted: bool, f: fn(&Ingest) -> f64| {
        median(
            ingest_runs
                .iter()
                .filter(|r| r.protocol == p && r.persisted == persisted)
                .map(f)
                .collect(),
        )
    };
    let med = |p: Protocol, f: fn(&Ingest) -> f64| med_of(p, false, f);

    // Holding `hold` spans: load them, then time the reads.
    let desk = Desk::start(fleet_bin, hold + 10_000, None).await?;
    let salt2 = salt.wrapping_add(2);
    let traces = hold / SPANS_PER_TRACE;
    let load_held = ingest(
        &desk,
        Protocol::Grpc,
        4,
        None,
        Some(traces),
        salt2,
        Arc::new(AtomicU64::new(0)),
    )
    .await?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()?;
    let metrics = client
        .get(format!("{}/metrics", desk.api))
        .send()
        .await?
        .text()
        .await?;
    let held_spans = metric(&metrics, "trace_desk_spans_held").unwrap_or(0.0) as u64;
    let rss = procfs::rss_kib(desk.pid).unwrap_or(0) as f64 / 1024.0;

    let mut queries = Vec::new();
    // trace by id: ids spread over the whole store, oldest to newest.
    let mut by_id = Vec::new();
    let mut spans_seen = 0;
    for k in 0..query_runs {
        let n = (k as u64 * 7919) % traces.max(1);
        let url = format!(
            "{}/api/traces/{}",
            desk.api,
            hex::encode(trace_id(salt2, n))
        );
        let (t, v) = time_get(&client, &url, 1).await?;
        by_id.extend(t);
        spans_seen = count_spans(&v);
    }
    queries.push(Query {
        name: "trace by id".into(),
        url_path: "/api/traces/{id}".into(),
        runs: by_id.len(),
        p50_ms: percentile(&by_id, 50.0),
        p99_ms: percentile(&by_id, 99.0),
        max_ms: percentile(&by_id, 100.0),
        answer_items: spans_seen,
    });
    let mut search_urls = Vec::new();
    for (name, q, runs) in [
        (
            "TraceQL { status = error }",
            "{ status = error }",
            query_runs / 5,
        ),
        (
            "TraceQL service and duration",
            "{ resource.service.name = \"payment-api\" && duration > 100ms }",
            query_runs / 5,
        ),
        (
            "TraceQL matching nothing (full scan)",
            "{ span.http.response.status_code = 599 }",
            query_runs / 10,
        ),
    ] {
        let url = reqwest::Url::parse_with_params(
            &format!("{}/api/search", desk.api),
            &[("q", q), ("limit", "20")],
        )?;
        search_urls.push(url.to_string());
        let (t, v) = time_get(&client, url.as_str(), runs.max(3)).await?;
        queries.push(Query {
            name: name.into(),
            url_path: format!("/api/search?q={q}&limit=20"),
            runs: t.len(),
            p50_ms: percentile(&t, 50.0),
            p99_ms: percentile(&t, 99.0),
            max_ms: percentile(&t, 100.0),
            answer_items: v["traces"].as_array().map_or(0, Vec::len),
        });
    }

    // Intake alone vs intake while the searches run back to back, on this desk (it keeps
    // about `hold` spans, evicting the oldest), interleaved: A L, L A, A L, ...
    let salt3 = salt.wrapping_add(4);
    let next3 = Arc::new(AtomicU64::new(0));
    let (mut alone, mut loaded, mut search_times) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let order = if round % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        for with_searches in order {
            let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let searches = with_searches.then(|| {
                tokio::spawn(search_loop(
                    client.clone(),
                    search_urls.clone(),
                    stop.clone(),
                ))
            });
            let run = ingest(
                &desk,
                Protocol::Grpc,
                4,
                Some(ingest_window),
                None,
                salt3,
                next3.clone(),
            )
            .await?;
            stop.store(true, Ordering::Relaxed);
            match searches {
                Some(task) => {
                    search_times.extend(task.await??);
                    loaded.push(run.spans_per_s);
                }
                None => alone.push(run.spans_per_s),
            }
        }
    }
    desk.stop().await;
    let search_load = SearchLoad {
        ratio: median(loaded.clone()) / median(alone.clone()),
        alone_spans_per_s: alone,
        loaded_spans_per_s: loaded,
        searches: search_times.len(),
        search_p50_ms: percentile(&search_times, 50.0),
        search_p99_ms: percentile(&search_times, 99.0),
    };

    Ok(Capacity {
        grpc_spans_per_s: med(Protocol::Grpc, |r| r.spans_per_s),
        http_spans_per_s: med(Protocol::Http, |r| r.spans_per_s),
        grpc_desk_cpu_us_per_span: med(Protocol::Grpc, |r| r.desk_cpu_us_per_span),
        http_desk_cpu_us_per_span: med(Protocol::Http, |r| r.desk_cpu_us_per_span),
        persisted_grpc_spans_per_s: med_of(Protocol::Grpc, true, |r| r.spans_per_s),
        persisted_http_spans_per_s: med_of(Protocol::Http, true, |r| r.spans_per_s),
        persist_commits,
        persist_batches,
        persist_commit_ms_mean,
        persist_compactions,
        persist_compaction_ms_mean,
        ingest: ingest_runs,
        held_spans,
        load_held,
        desk_rss_mib_held: rss,
        bytes_per_held_span: if held_spans > 0 {
            rss * 1024.0 * 1024.0 / held_spans as f64
        } else {
            0.0
        },
        queries,
        search_load,
    })
}

/// A value from Prometheus text: `name value`.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (n, v) = l.split_once(' ')?;
        (n == name).then(|| v.trim().parse().ok()).flatten()
    })
}
