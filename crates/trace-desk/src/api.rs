//! The Tempo-compatible HTTP API (port 3200 by default) and `/metrics`.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{FromRef, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use opentelemetry_proto::tonic::trace::v1::TracesData;
use prost::Message as _;
use serde_json::{Value, json};

use crate::jsonpb;
use crate::search::{self, SearchParams};
use crate::search_pool::SearchPool;
use crate::store::{self, Store, StoredSpan, TraceId};
use crate::trace_view;

mod metrics_http;

/// Tempo version reported by `/api/status/buildinfo` (the API subset mirrors it).
pub const TEMPO_COMPAT_VERSION: &str = "2.10.0";

/// Intrinsic tag names reported by the tag endpoints.
pub const INTRINSIC_TAGS: [&str; 25] = [
    // Tempo's autocomplete list (pkg/search/util.go `GetVirtualIntrinsicValues`): the short
    // and the scoped spellings, event, link and instrumentation intrinsics, and the ids.
    "duration",
    "kind",
    "name",
    "status",
    "statusMessage",
    "traceDuration",
    "rootServiceName",
    "rootName",
    "span:status",
    "span:statusMessage",
    "span:duration",
    "span:name",
    "span:kind",
    "trace:rootName",
    "trace:rootService",
    "trace:duration",
    "event:name",
    "event:timeSinceStart",
    "link:traceID",
    "link:spanID",
    "instrumentation:name",
    "instrumentation:version",
    "span:id",
    "span:parentID",
    "trace:id",
];

/// `reason` labels of `trace_desk_queries_rejected_total`.
pub const REJECTION_REASONS: [&str; 5] = [
    "syntax",
    "too_long",
    "too_deep",
    "regex_too_big",
    "bad_parameter",
];

/// Counters of the search path, shown in `/metrics`.
#[derive(Debug, Default)]
pub struct QueryCounters {
    rejected: [AtomicU64; REJECTION_REASONS.len()],
    searches: AtomicU64,
    partial: AtomicU64,
    /// Searches and metrics queries waiting for a search slot now.
    waiting: AtomicU64,
}

/// Counts one query as waiting for a slot until dropped (answered, given up or cancelled).
struct Waiting<'a>(&'a AtomicU64);

impl<'a> Waiting<'a> {
    fn new(gauge: &'a AtomicU64) -> Self {
        gauge.fetch_add(1, Ordering::Relaxed);
        Self(gauge)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl QueryCounters {
    fn reject(&self, reason: &str) {
        if let Some(i) = REJECTION_REASONS.iter().position(|r| *r == reason) {
            self.rejected[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Queries refused with a 400, per reason (in [`REJECTION_REASONS`] order).
    pub fn rejected(&self) -> Vec<(&'static str, u64)> {
        REJECTION_REASONS
            .iter()
            .zip(&self.rejected)
            .map(|(r, n)| (*r, n.load(Ordering::Relaxed)))
            .collect()
    }
}

/// What the API handlers share: the store, the search budget and the search slots.
#[derive(Debug, Clone)]
pub struct ApiState {
    store: Store,
    query_timeout: Duration,
    max_concurrent_searches: usize,
    slots: Arc<tokio::sync::Semaphore>,
    /// One lower-priority thread per slot.
    pool: Arc<SearchPool>,
    counters: Arc<QueryCounters>,
    metrics_counters: Arc<crate::metrics_query::Counters>,
    persist: Option<crate::persist::Persist>,
}

impl ApiState {
    /// State over `store`: each search gets `query_timeout` and at most
    /// `max_concurrent_searches` (at least 1) run at once, each on a thread of a
    /// [`SearchPool`] of that size (niceness 10, below intake's).
    pub fn new(store: Store, query_timeout: Duration, max_concurrent_searches: usize) -> Self {
        let max_concurrent_searches = max_concurrent_searches.max(1);
        Self {
            store,
            query_timeout,
            max_concurrent_searches,
            slots: Arc::new(tokio::sync::Semaphore::new(max_concurrent_searches)),
            pool: Arc::new(SearchPool::new(max_concurrent_searches)),
            counters: Arc::new(QueryCounters::default()),
            metrics_counters: Arc::default(),
            persist: None,
        }
    }

    /// The same state, showing `persist`'s metrics in `/metrics`.
    pub fn with_persist(mut self, persist: Option<crate::persist::Persist>) -> Self {
        self.persist = persist;
        self
    }

    /// Runs `work` (a search or a metrics query over the whole store) on a search thread in
    /// one of the search slots, handing it `deadline`; `out_of_time` answers when no slot frees
    /// up before the deadline. `what` names the work in the 500 a panicked task gets.
    pub(crate) async fn run_bounded<T: Send + 'static>(
        &self,
        deadline: Instant,
        what: &str,
        out_of_time: impl FnOnce() -> T,
        work: impl FnOnce(Instant) -> T + Send + 'static,
    ) -> Result<T, Response> {
        let waiting = Waiting::new(&self.counters.waiting);
        let slot =
            tokio::time::timeout_at(deadline.into(), Arc::clone(&self.slots).acquire_owned()).await;
        drop(waiting);
        // The semaphore is never closed; without a slot in time, answer "nothing yet".
        let Ok(Ok(slot)) = slot else {
            return Ok(out_of_time());
        };
        self.pool
            .run(move || {
                let _slot = slot;
                work(deadline)
            })
            .await
            .map_err(|e| failed(what, &e))
    }

    /// The search counters.
    pub fn counters(&self) -> Arc<QueryCounters> {
        Arc::clone(&self.counters)
    }
}

impl FromRef<ApiState> for Store {
    fn from_ref(state: &ApiState) -> Store {
        state.store.clone()
    }
}

/// The API router.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/ready", get(|| async { "ready" }))
        .route("/api/echo", get(|| async { "echo" }))
        .route("/api/status/buildinfo", get(buildinfo))
        .route("/metrics", get(metrics))
        .route("/api/traces/{trace_id}", get(trace_v1))
        .route("/api/v2/traces/{trace_id}", get(trace_v2))
        .route("/api/search", get(search_handler))
        .route("/api/search/tags", get(tags_v1))
        .route("/api/v2/search/tags", get(tags_v2))
        .route("/api/search/tag/{tag}/values", get(tag_values_v1))
        .route("/api/v2/search/tag/{tag}/values", get(tag_values_v2))
        .route("/api/metrics/query_range", get(metrics_http::query_range))
        .route("/api/metrics/query", get(metrics_http::query_instant))
        .fallback(|| async { (StatusCode::NOT_FOUND, "404 page not found\n") })
        .with_state(state)
        // The web UI: `/`, `/trace/{id}`, `/ui/*` (crates/desk-ui).
        .merge(desk_ui::router())
}

fn text(status: StatusCode, body: impl Into<String>) -> Response {
    (status, body.into()).into_response()
}

fn json_response(value: Value) -> Response {
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        value.to_string(),
    )
        .into_response()
}

async fn buildinfo() -> Response {
    json_response(json!({
        "version": TEMPO_COMPAT_VERSION,
        "revision": concat!("trace-desk-", env!("CARGO_PKG_VERSION")),
        "branch": "",
        "buildUser": "",
        "buildDate": "",
        "goVersion": "",
    }))
}

async fn metrics(State(state): State<ApiState>) -> Response {
    let s = state.store.stats();
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, value: u64| {
        crate::prom_text::write(&mut out, name, kind, help, value)
    };
    metric(
        "trace_desk_spans_received_total",
        "counter",
        "Spans accepted by the OTLP receivers.",
        s.spans_received,
    );
    metric(
        "trace_desk_spans_rejected_total",
        "counter",
        "Spans refused at intake because of invalid ids.",
        s.spans_rejected,
    );
    metric(
        "trace_desk_spans_held",
        "gauge",
        "Spans currently held in memory.",
        s.spans_held,
    );
    metric(
        "trace_desk_traces_held",
        "gauge",
        "Traces currently held in memory.",
        s.traces_held,
    );
    metric(
        "trace_desk_traces_evicted_total",
        "counter",
        "Whole traces evicted, oldest first, to stay within the span and byte bounds.",
        s.traces_evicted,
    );
    metric(
        "trace_desk_spans_evicted_total",
        "counter",
        "Spans evicted with their traces.",
        s.spans_evicted,
    );
    metric(
        "trace_desk_max_spans",
        "gauge",
        "Configured bound on held spans.",
        s.max_spans,
    );
    metric(
        "trace_desk_bytes_held",
        "gauge",
        "Estimated bytes held: spans, events, links and attributes (encoded length plus per-item overheads) and each trace's resources and scopes.",
        s.bytes_held,
    );
    metric(
        "trace_desk_max_bytes",
        "gauge",
        "Configured bound on the estimated bytes held.",
        s.max_bytes,
    );
    metric(
        "trace_desk_attributes_dropped_total",
        "counter",
        "Attributes dropped at intake beyond DESK_MAX_ATTRIBUTES per span, resource, scope, event or link.",
        s.attributes_dropped,
    );
    metric(
        "trace_desk_events_dropped_total",
        "counter",
        "Span events dropped at intake beyond DESK_MAX_EVENTS per span.",
        s.events_dropped,
    );
    metric(
        "trace_desk_links_dropped_total",
        "counter",
        "Span links dropped at intake beyond DESK_MAX_LINKS per span.",
        s.links_dropped,
    );
    metric(
        "trace_desk_values_truncated_total",
        "counter",
        "String or bytes attribute values cut to DESK_MAX_VALUE_BYTES at intake.",
        s.values_truncated,
    );
    metric(
        "trace_desk_requests_too_large_total",
        "counter",
        "OTLP/HTTP requests refused with 413: body or gzip-decompressed body over 16 MiB.",
        s.requests_too_large,
    );
    let c = &state.counters;
    metric(
        "trace_desk_searches_total",
        "counter",
        "Searches answered (complete or partial).",
        c.searches.load(Ordering::Relaxed),
    );
    metric(
        "trace_desk_searches_partial_total",
        "counter",
        "Searches whose time budget (DESK_QUERY_TIMEOUT) ran out; they answered with the matches found so far.",
        c.partial.load(Ordering::Relaxed),
    );
    metric(
        "trace_desk_query_timeout_seconds",
        "gauge",
        "Configured time budget of one search, whole seconds (rounded down).",
        state.query_timeout.as_secs(),
    );
    metric(
        "trace_desk_max_concurrent_searches",
        "gauge",
        "Configured number of searches evaluated at once.",
        state.max_concurrent_searches as u64,
    );
    metric(
        "trace_desk_searches_running",
        "gauge",
        "Searches and metrics queries being evaluated now (each holds one of the trace_desk_max_concurrent_searches slots).",
        state
            .max_concurrent_searches
            .saturating_sub(state.slots.available_permits()) as u64,
    );
    metric(
        "trace_desk_searches_waiting",
        "gauge",
        "Searches and metrics queries waiting for a free slot now (they answer partial, empty, when none frees up within DESK_QUERY_TIMEOUT).",
        c.waiting.load(Ordering::Relaxed),
    );
    metric(
        "trace_desk_persist_enabled",
        "gauge",
        "1 when DESK_DATA_DIR keeps what the desk holds on disk, 0 for memory only.",
        u64::from(state.persist.is_some()),
    );
    out.push_str(
        "# HELP trace_desk_queries_rejected_total Searches refused with 400, by reason (syntax, too_long: over 16 KiB, too_deep: over 128 nesting levels or 256 expression levels, regex_too_big: a regex over 1 MiB compiled, bad_parameter).\n# TYPE trace_desk_queries_rejected_total counter\n",
    );
    for (reason, n) in c.rejected() {
        out.push_str(&format!(
            "trace_desk_queries_rejected_total{{reason=\"{reason}\"}} {n}\n"
        ));
    }
    out.push_str(&state.metrics_counters.render());
    if let Some(p) = &state.persist {
        out.push_str(&p.render_metrics());
    }
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        out,
    )
        .into_response()
}

/// Parses a hex trace id as Tempo does: case-insensitive, at most 32 hex digits,
/// shorter ids left-padded with zeros.
pub fn parse_trace_id(input: &str) -> Result<TraceId, String> {
    let s = input.trim();
    if s.is_empty() {
        return Err("invalid trace id: empty".to_string());
    }
    if let Some((i, c)) = s.char_indices().find(|(_, c)| !c.is_ascii_hexdigit()) {
        return Err(format!(
            "invalid trace id: trace IDs can only contain hex characters: invalid character '{c}' at position {}",
            i + 1
        ));
    }
    if s.len() > 32 {
        return Err("invalid trace id: trace IDs can't be larger than 128 bits".to_string());
    }
    let padded = format!("{s:0>32}");
    let mut id = [0u8; 16];
    hex::decode_to_slice(padded, &mut id).map_err(|e| format!("invalid trace id: {e}"))?;
    Ok(id)
}

fn wants_protobuf(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',').any(|part| {
                let mt = part.split(';').next().unwrap_or_default().trim();
                mt.eq_ignore_ascii_case("application/protobuf")
                    || mt.eq_ignore_ascii_case("application/x-protobuf")
            })
        })
}

fn protobuf_response(bytes: Vec<u8>) -> Response {
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/protobuf"),
        )],
        bytes,
    )
        .into_response()
}

/// Why a trace-by-id lookup gave no trace.
#[derive(Debug)]
enum LookupError {
    BadRequest(String),
    NotFound,
}

impl IntoResponse for LookupError {
    fn into_response(self) -> Response {
        match self {
            LookupError::BadRequest(msg) => text(StatusCode::BAD_REQUEST, msg),
            LookupError::NotFound => text(StatusCode::NOT_FOUND, "trace not found"),
        }
    }
}

fn unix_seconds(params: &HashMap<String, String>, name: &str) -> Result<Option<u64>, LookupError> {
    match params.get(name).map(|v| v.trim()).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => v.parse::<u64>().map(Some).map_err(|_| {
            LookupError::BadRequest(format!("invalid {name}: expected unix seconds, got {v:?}"))
        }),
    }
}

/// Looks a trace up for the trace-by-id endpoints, applying `start`/`end`.
fn lookup(
    store: &Store,
    raw_id: &str,
    params: &HashMap<String, String>,
) -> Result<Vec<StoredSpan>, LookupError> {
    let id = parse_trace_id(raw_id).map_err(LookupError::BadRequest)?;
    let (start, end) = (unix_seconds(params, "start")?, unix_seconds(params, "end")?);
    let spans = store.trace(&id).ok_or(LookupError::NotFound)?;
    let first = spans.iter().map(|s| s.span.start_time_unix_nano).min();
    let last = spans.iter().map(|s| s.span.end_time_unix_nano).max();
    if let (Some(end), Some(first)) = (end, first)
        && first >= end.saturating_add(1).saturating_mul(1_000_000_000)
    {
        return Err(LookupError::NotFound);
    }
    if let (Some(start), Some(last)) = (start, last)
        && last < start.saturating_mul(1_000_000_000)
    {
        return Err(LookupError::NotFound);
    }
    Ok(spans)
}

/// `tempopb.TraceByIDResponse` for v2 protobuf answers.
#[derive(Clone, PartialEq, prost::Message)]
struct TraceByIdResponse {
    #[prost(message, optional, tag = "1")]
    trace: Option<TracesData>,
}

async fn trace_v1(
    State(store): State<Store>,
    Path(trace_id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let spans = match lookup(&store, &trace_id, &params) {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    let batches = store::group_spans(&spans);
    if wants_protobuf(&headers) {
        return protobuf_response(
            TracesData {
                resource_spans: batches,
            }
            .encode_to_vec(),
        );
    }
    let batches: Vec<Value> = batches.iter().map(jsonpb::resource_spans).collect();
    json_response(json!({ "batches": batches }))
}

async fn trace_v2(
    State(store): State<Store>,
    Path(trace_id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let spans = match lookup(&store, &trace_id, &params) {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    let batches = store::group_spans(&spans);
    if wants_protobuf(&headers) {
        return protobuf_response(
            TraceByIdResponse {
                trace: Some(TracesData {
                    resource_spans: batches,
                }),
            }
            .encode_to_vec(),
        );
    }
    let batches: Vec<Value> = batches.iter().map(jsonpb::resource_spans).collect();
    json_response(json!({ "trace": { "resourceSpans": batches } }))
}

/// Answers a search within the time budget. Parsing is cheap and bounded (length, depth), so
/// it stays here; evaluation runs on a blocking thread, at most `max_concurrent_searches` at a
/// time, so intake, `/ready` and the UI keep their async workers.
async fn search_handler(
    State(state): State<ApiState>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let deadline = Instant::now() + state.query_timeout;
    let p = match SearchParams::from_query(&params) {
        Ok(p) => p,
        Err(e) => {
            state.counters.reject(e.reason());
            // Plain text like Tempo's own 400s, which Grafana and the desk UI show as is.
            return text(StatusCode::BAD_REQUEST, e.to_string());
        }
    };
    let store = state.store.clone();
    let outcome = match state
        .run_bounded(
            deadline,
            "search",
            || search::out_of_time(&state.store, state.query_timeout),
            move |deadline| search::search_until(&store, &p, Some(deadline)),
        )
        .await
    {
        Ok(outcome) => outcome,
        Err(failed) => return failed,
    };
    state.counters.searches.fetch_add(1, Ordering::Relaxed);
    if outcome.partial {
        state.counters.partial.fetch_add(1, Ordering::Relaxed);
    }
    json_response(outcome.value)
}

/// Runs a whole-store scan (tag names and values) on a blocking thread, so intake and `/ready`
/// keep the async workers while it reads every held span.
async fn off_workers(scan: impl FnOnce() -> Response + Send + 'static) -> Response {
    tokio::task::spawn_blocking(scan)
        .await
        .unwrap_or_else(|e| task_failed("tag scan", &e))
}

/// The 500 for a blocking task that panicked: JSON naming what failed, the panic in the log.
pub(crate) fn task_failed(what: &str, error: &tokio::task::JoinError) -> Response {
    failed(what, error)
}

/// The 500 for work that failed inside the desk: JSON naming what failed, the error in the log.
fn failed(what: &str, error: &dyn std::fmt::Display) -> Response {
    tracing::error!(%error, "{what} task failed");
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        json!({"error": format!("the {what} failed inside the desk; see its log")}).to_string(),
    )
        .into_response()
}

/// Attribute key sets per scope.
#[derive(Debug, Default)]
struct TagSets {
    resource: BTreeSet<String>,
    span: BTreeSet<String>,
    event: BTreeSet<String>,
    link: BTreeSet<String>,
    instrumentation: BTreeSet<String>,
}

fn collect_tags(store: &Store) -> TagSets {
    let mut t = TagSets::default();
    store.for_each_trace(|_, spans| {
        for s in spans {
            t.resource
                .extend(s.resource.attributes.iter().map(|kv| kv.key.clone()));
            t.span
                .extend(s.span.attributes.iter().map(|kv| kv.key.clone()));
            t.instrumentation
                .extend(s.scope.attributes.iter().map(|kv| kv.key.clone()));
            for e in &s.span.events {
                t.event.extend(e.attributes.iter().map(|kv| kv.key.clone()));
            }
            for l in &s.span.links {
                t.link.extend(l.attributes.iter().map(|kv| kv.key.clone()));
            }
        }
    });
    t
}

fn intrinsics() -> BTreeSet<String> {
    INTRINSIC_TAGS.iter().map(|s| s.to_string()).collect()
}

async fn tags_v1(
    State(store): State<Store>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    off_workers(move || tags_v1_scan(&store, &params)).await
}

fn tags_v1_scan(store: &Store, params: &HashMap<String, String>) -> Response {
    let scope = params.get("scope").map(|s| s.trim()).unwrap_or_default();
    let t = collect_tags(store);
    let names: BTreeSet<String> = match scope {
        // Every attribute scope, as Tempo lists them: event and link attribute names too.
        "" | "all" | "none" => t
            .resource
            .into_iter()
            .chain(t.span)
            .chain(t.event)
            .chain(t.link)
            .chain(t.instrumentation)
            .collect(),
        "resource" => t.resource,
        "span" => t.span,
        "intrinsic" => intrinsics(),
        "event" => t.event,
        "link" => t.link,
        "instrumentation" => t.instrumentation,
        other => {
            return text(
                StatusCode::BAD_REQUEST,
                format!(
                    "invalid scope {other:?}: use resource, span, intrinsic, event, link or instrumentation"
                ),
            );
        }
    };
    json_response(json!({ "tagNames": names }))
}

async fn tags_v2(
    State(store): State<Store>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    off_workers(move || tags_v2_scan(&store, &params)).await
}

fn tags_v2_scan(store: &Store, params: &HashMap<String, String>) -> Response {
    let scope = params.get("scope").map(|s| s.trim()).unwrap_or_default();
    let t = collect_tags(store);
    let all = [
        ("resource", t.resource),
        ("span", t.span),
        ("intrinsic", intrinsics()),
        ("event", t.event),
        ("link", t.link),
        ("instrumentation", t.instrumentation),
    ];
    let scopes: Vec<Value> = match scope {
        "" | "all" | "none" => all
            .into_iter()
            .filter(|(name, tags)| {
                matches!(*name, "resource" | "span" | "intrinsic") || !tags.is_empty()
            })
            .map(|(name, tags)| json!({"name": name, "tags": tags}))
            .collect(),
        wanted => {
            let Some((name, tags)) = all.into_iter().find(|(name, _)| *name == wanted) else {
                return text(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "invalid scope {wanted:?}: use resource, span, intrinsic, event, link or instrumentation"
                    ),
                );
            };
            vec![json!({"name": name, "tags": tags})]
        }
    };
    json_response(json!({ "scopes": scopes }))
}

async fn tag_values_v1(State(store): State<Store>, Path(tag): Path<String>) -> Response {
    off_workers(move || tag_values_v1_scan(&store, &tag)).await
}

fn tag_values_v1_scan(store: &Store, tag: &str) -> Response {
    let mut values: BTreeSet<String> = BTreeSet::new();
    store.for_each_trace(|_, spans| {
        for s in spans {
            for kv in s.span.attributes.iter().chain(s.resource.attributes.iter()) {
                if kv.key == tag
                    && let Some(v) = kv.value.as_ref().and_then(jsonpb::value_as_string)
                {
                    values.insert(v);
                }
            }
        }
    });
    json_response(json!({ "tagValues": values }))
}

/// Where a v2 tag-values lookup searches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AttrScope {
    Resource,
    Span,
    Any,
    Event,
    Link,
    Instrumentation,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum TagRef {
    Attr(AttrScope, String),
    Intrinsic(&'static str),
}

fn parse_scoped_tag(tag: &str) -> Result<TagRef, String> {
    let scoped = [
        ("resource.", AttrScope::Resource),
        ("span.", AttrScope::Span),
        ("event.", AttrScope::Event),
        ("link.", AttrScope::Link),
        ("instrumentation.", AttrScope::Instrumentation),
        (".", AttrScope::Any),
    ];
    for (prefix, scope) in scoped {
        if let Some(rest) = tag.strip_prefix(prefix) {
            if rest.is_empty() {
                break;
            }
            return Ok(TagRef::Attr(scope, rest.to_string()));
        }
    }
    let intrinsic = match tag {
        "name" | "span:name" => "name",
        "status" | "span:status" => "status",
        "kind" | "span:kind" => "kind",
        "statusMessage" | "span:statusMessage" => "statusMessage",
        "rootName" | "trace:rootName" => "rootName",
        "rootServiceName" | "trace:rootService" => "rootServiceName",
        "duration" | "span:duration" => "duration",
        "traceDuration" | "trace:duration" => "traceDuration",
        "event:name" => "event:name",
        "instrumentation:name" => "instrumentation:name",
        "instrumentation:version" => "instrumentation:version",
        _ => {
            return Err(format!(
                "invalid tag {tag:?}: use a scoped attribute (resource.x, span.x, .x) or an intrinsic (name, status, kind, ...)"
            ));
        }
    };
    Ok(TagRef::Intrinsic(intrinsic))
}

fn kind_keyword(kind: i32) -> &'static str {
    match kind {
        1 => "internal",
        2 => "server",
        3 => "client",
        4 => "producer",
        5 => "consumer",
        _ => "unspecified",
    }
}

async fn tag_values_v2(State(store): State<Store>, Path(tag): Path<String>) -> Response {
    off_workers(move || tag_values_v2_scan(&store, &tag)).await
}

fn tag_values_v2_scan(store: &Store, tag: &str) -> Response {
    let tag_ref = match parse_scoped_tag(tag) {
        Ok(t) => t,
        Err(e) => return text(StatusCode::BAD_REQUEST, e),
    };
    // (type, value) pairs, sorted and unique.
    let mut values: BTreeSet<(String, &'static str)> = BTreeSet::new();
    let mut add_kv = |kvs: &[opentelemetry_proto::tonic::common::v1::KeyValue], key: &str| {
        for kv in kvs {
            if kv.key == key
                && let Some((ty, v)) = kv.value.as_ref().and_then(jsonpb::typed_value)
            {
                values.insert((v, ty));
            }
        }
    };
    let mut intrinsic_values: BTreeSet<(String, &'static str)> = BTreeSet::new();
    store.for_each_trace(|_, spans| match &tag_ref {
        TagRef::Attr(scope, key) => {
            for s in spans {
                match scope {
                    AttrScope::Resource => add_kv(&s.resource.attributes, key),
                    AttrScope::Span => add_kv(&s.span.attributes, key),
                    AttrScope::Any => {
                        add_kv(&s.resource.attributes, key);
                        add_kv(&s.span.attributes, key);
                    }
                    AttrScope::Instrumentation => add_kv(&s.scope.attributes, key),
                    AttrScope::Event => {
                        for e in &s.span.events {
                            add_kv(&e.attributes, key);
                        }
                    }
                    AttrScope::Link => {
                        for l in &s.span.links {
                            add_kv(&l.attributes, key);
                        }
                    }
                }
            }
        }
        TagRef::Intrinsic(which) => match *which {
            "name" => {
                for s in spans {
                    intrinsic_values.insert((s.span.name.clone(), "string"));
                }
            }
            "status" => {
                for s in spans {
                    intrinsic_values.insert((trace_view::status_text(s).to_string(), "keyword"));
                }
            }
            "kind" => {
                for s in spans {
                    intrinsic_values.insert((kind_keyword(s.span.kind).to_string(), "keyword"));
                }
            }
            "statusMessage" => {
                for s in spans {
                    if let Some(st) = &s.span.status
                        && !st.message.is_empty()
                    {
                        intrinsic_values.insert((st.message.clone(), "string"));
                    }
                }
            }
            "event:name" => {
                for s in spans {
                    for e in &s.span.events {
                        intrinsic_values.insert((e.name.clone(), "string"));
                    }
                }
            }
            "instrumentation:name" | "instrumentation:version" => {
                for s in spans {
                    let v = if *which == "instrumentation:name" {
                        &s.scope.name
                    } else {
                        &s.scope.version
                    };
                    intrinsic_values.insert((v.clone(), "string"));
                }
            }
            "rootName" | "rootServiceName" => {
                if let Some(root) = trace_view::root_span(spans) {
                    let v = if *which == "rootName" {
                        root.span.name.clone()
                    } else {
                        root.service_name().unwrap_or_default().to_string()
                    };
                    intrinsic_values.insert((v, "string"));
                }
            }
            _ => {}
        },
    });
    values.extend(intrinsic_values);
    let tag_values: Vec<Value> = values
        .into_iter()
        .filter(|(v, _)| !v.is_empty())
        .map(|(v, ty)| json!({"type": ty, "value": v}))
        .collect();
    json_response(json!({ "tagValues": tag_values }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_ids() {
        let mut expected = [0u8; 16];
        expected[15] = 0xab;
        assert_eq!(parse_trace_id("AB"), Ok(expected));
        assert_eq!(parse_trace_id("0ab"), Ok(expected));
        assert!(parse_trace_id("xyz").is_err());
        assert!(parse_trace_id(&"1".repeat(33)).is_err());
        assert!(parse_trace_id("").is_err());
    }

    #[test]
    fn scoped_tags() {
        assert_eq!(
            parse_scoped_tag("resource.service.name"),
            Ok(TagRef::Attr(AttrScope::Resource, "service.name".into()))
        );
        assert_eq!(
            parse_scoped_tag(".foo"),
            Ok(TagRef::Attr(AttrScope::Any, "foo".into()))
        );
        assert_eq!(parse_scoped_tag("status"), Ok(TagRef::Intrinsic("status")));
        assert!(parse_scoped_tag("foo").is_err());
    }
}
