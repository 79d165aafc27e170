//! Tempo search (`/api/search`) over the in-memory store: legacy `tags`
//! (logfmt), duration bounds, time window, limit, spans per spanset.

use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};
use std::sync::Arc;

use opentelemetry_proto::tonic::common::v1::KeyValue;
use serde_json::{Map, Value, json};

use crate::jsonpb;
use crate::prune::Need;
use crate::store::{Store, StoredSpan, TraceId};
pub use crate::trace_view::{root_span, status_text};
pub use crate::traceql::parse_go_duration;
use crate::traceql::{self, eval};

/// Service name Tempo reports for a trace whose root span has not arrived.
pub const ROOT_NOT_RECEIVED: &str = "<root span not yet received>";

const NANOS_PER_SEC: u64 = 1_000_000_000;

impl SearchError {
    /// The `reason` label of `trace_desk_queries_rejected_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            SearchError::BadRequest(_) => "bad_parameter",
            SearchError::TraceQl(e) => e.kind.label(),
        }
    }
}

/// A request that search cannot answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SearchError {
    /// A parameter is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// A TraceQL query the desk cannot parse or does not support.
    #[error("{0}")]
    TraceQl(#[from] traceql::ParseError),
}

/// Parsed search parameters.
#[derive(Debug, Clone)]
pub struct SearchParams {
    /// The TraceQL query (`q`), unless empty or match-all (`{}`).
    pub query: Option<traceql::Query>,
    /// `key=value` pairs that must all hold on one span.
    pub tags: Vec<(String, String)>,
    /// Minimum trace duration in nanoseconds.
    pub min_duration_ns: Option<u64>,
    /// Maximum trace duration in nanoseconds.
    pub max_duration_ns: Option<u64>,
    /// Most traces returned.
    pub limit: usize,
    /// Window start, unix seconds.
    pub start: Option<u64>,
    /// Window end, unix seconds.
    pub end: Option<u64>,
    /// Spans per spanset.
    pub spss: usize,
}

impl Default for SearchParams {
    fn default() -> Self {
        Self {
            query: None,
            tags: Vec::new(),
            min_duration_ns: None,
            max_duration_ns: None,
            limit: 20,
            start: None,
            end: None,
            spss: 3,
        }
    }
}

fn positive(params: &HashMap<String, String>, name: &str) -> Result<Option<u64>, SearchError> {
    match params.get(name).map(|v| v.trim()).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => match v.parse::<u64>() {
            Ok(n) if n > 0 => Ok(Some(n)),
            _ => Err(SearchError::BadRequest(format!(
                "invalid {name}: must be a positive number, got {v:?}"
            ))),
        },
    }
}

fn unix_seconds(params: &HashMap<String, String>, name: &str) -> Result<Option<u64>, SearchError> {
    match params.get(name).map(|v| v.trim()).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => v.parse::<u64>().map(Some).map_err(|_| {
            SearchError::BadRequest(format!("invalid {name}: expected unix seconds, got {v:?}"))
        }),
    }
}

fn duration_param(
    params: &HashMap<String, String>,
    name: &str,
) -> Result<Option<u64>, SearchError> {
    match params.get(name).map(|v| v.trim()).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => parse_go_duration(v)
            .map(Some)
            .map_err(|e| SearchError::BadRequest(format!("invalid {name}: {e}"))),
    }
}

/// True when a TraceQL query selects every trace (`{}` with optional spaces).
fn is_match_all(q: &str) -> bool {
    let q: String = q.chars().filter(|c| !c.is_whitespace()).collect();
    q.is_empty() || q == "{}"
}

impl SearchParams {
    /// Parses Tempo's query parameters.
    pub fn from_query(params: &HashMap<String, String>) -> Result<Self, SearchError> {
        let query = match params.get("q") {
            Some(q) if !is_match_all(q) => Some(traceql::parse(q)?),
            _ => None,
        };
        let tags = match params.get("tags") {
            Some(t) => parse_logfmt(t)
                .map_err(|e| SearchError::BadRequest(format!("invalid tags: {e}")))?,
            None => Vec::new(),
        };
        let min_duration_ns = duration_param(params, "minDuration")?;
        let max_duration_ns = duration_param(params, "maxDuration")?;
        if let (Some(min), Some(max)) = (min_duration_ns, max_duration_ns)
            && max < min
        {
            return Err(SearchError::BadRequest(
                "invalid maxDuration: must be greater than minDuration".to_string(),
            ));
        }
        let start = unix_seconds(params, "start")?;
        let end = unix_seconds(params, "end")?;
        if let (Some(s), Some(e)) = (start, end)
            && e < s
        {
            return Err(SearchError::BadRequest(
                "invalid start: must be less than or equal to end".to_string(),
            ));
        }
        let to_usize = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
        Ok(Self {
            query,
            tags,
            min_duration_ns,
            max_duration_ns,
            limit: positive(params, "limit")?.map_or(20, to_usize),
            start,
            end,
            spss: positive(params, "spss")?.map_or(3, to_usize),
        })
    }
}

/// Parses logfmt: `k=v k2="quoted value"`.
pub fn parse_logfmt(input: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let mut chars = input.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c.is_whitespace() {
                break;
            }
            key.push(c);
            chars.next();
        }
        if chars.next() != Some('=') {
            return Err(format!("expected key=value, found {key:?} without a value"));
        }
        if key.is_empty() {
            return Err("empty key".to_string());
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            let mut closed = false;
            while let Some(c) = chars.next() {
                match c {
                    '\\' => match chars.next() {
                        Some('n') => value.push('\n'),
                        Some('t') => value.push('\t'),
                        Some(other) => value.push(other),
                        None => break,
                    },
                    '"' => {
                        closed = true;
                        break;
                    }
                    other => value.push(other),
                }
            }
            if !closed {
                return Err(format!("unterminated quoted value for {key:?}"));
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        out.push((key, value));
    }
    Ok(out)
}

fn find_attr<'a>(span: &'a StoredSpan, key: &str) -> impl Iterator<Item = &'a KeyValue> {
    let key = key.to_string();
    span.span
        .attributes
        .iter()
        .chain(span.resource.attributes.iter())
        .filter(move |kv| kv.key == key)
}

fn tag_matches(span: &StoredSpan, key: &str, value: &str) -> bool {
    match key {
        "name" => span.span.name == value,
        "status.code" => status_text(span) == value,
        _ => find_attr(span, key).any(|kv| {
            kv.value
                .as_ref()
                .and_then(jsonpb::value_as_string)
                .is_some_and(|v| v == value)
        }),
    }
}

/// Tempo's hex form of a trace id in search results (leading zeros trimmed).
pub fn trace_id_hex(id: &TraceId) -> String {
    let h = hex::encode(id);
    h.trim_start_matches('0').to_string()
}

/// JSON (jsonpb `KeyValue`) for a TraceQL value.
fn val_json(key: &str, v: &eval::Val) -> Value {
    let value = match v {
        eval::Val::Str(s) => json!({ "stringValue": s }),
        eval::Val::Int(n) => json!({ "intValue": n.to_string() }),
        eval::Val::Float(f) => json!({ "doubleValue": jsonpb::double(*f) }),
        eval::Val::Bool(b) => json!({ "boolValue": b }),
        eval::Val::Duration(d) => json!({ "intValue": d.to_string() }),
        eval::Val::Nil => json!({ "stringValue": "nil" }),
    };
    json!({ "key": key, "value": value })
}

fn tag_attributes(span: &StoredSpan, tags: &[(String, String)]) -> (Vec<Value>, HashSet<String>) {
    let mut attrs: Vec<Value> = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    for (key, _) in tags {
        if key == "name" || key == "status.code" || !seen.insert(key.clone()) {
            continue;
        }
        if let Some(kv) = find_attr(span, key).next() {
            attrs.push(jsonpb::key_value(kv));
        }
    }
    (attrs, seen)
}

fn query_attributes(
    view: &eval::TraceView,
    idx: usize,
    query: &traceql::Query,
) -> (Vec<Value>, HashSet<String>) {
    let mut attrs: Vec<Value> = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    for field in &query.fields {
        if let Some((key, v)) = view.output_attribute(idx, field)
            && seen.insert(key.clone())
        {
            attrs.push(val_json(&key, &v));
        }
    }
    (attrs, seen)
}

fn spanset_span(span: &StoredSpan, (mut attrs, seen): (Vec<Value>, HashSet<String>)) -> Value {
    if !seen.contains("service.name")
        && let Some(kv) = span
            .resource
            .attributes
            .iter()
            .find(|kv| kv.key == "service.name")
    {
        attrs.push(jsonpb::key_value(kv));
    }
    let mut m = Map::new();
    m.insert("spanID".into(), json!(hex::encode(&span.span.span_id)));
    if !span.span.name.is_empty() {
        m.insert("name".into(), json!(span.span.name));
    }
    m.insert(
        "startTimeUnixNano".into(),
        json!(span.span.start_time_unix_nano.to_string()),
    );
    let dur = span
        .span
        .end_time_unix_nano
        .saturating_sub(span.span.start_time_unix_nano);
    if dur != 0 {
        m.insert("durationNanos".into(), json!(dur.to_string()));
    }
    if !attrs.is_empty() {
        m.insert("attributes".into(), Value::Array(attrs));
    }
    Value::Object(m)
}

/// A matching trace rendered as Tempo's search result, or `None` when it does not match.
fn trace_hit(id: &TraceId, spans: &[StoredSpan], params: &SearchParams) -> Option<Value> {
    let start_ns = spans.iter().map(|s| s.span.start_time_unix_nano).min()?;
    let end_ns = spans
        .iter()
        .map(|s| s.span.end_time_unix_nano.max(s.span.start_time_unix_nano))
        .max()?;
    let duration_ns = end_ns.saturating_sub(start_ns);
    if !in_window(start_ns, end_ns, params) {
        return None;
    }
    let mut matched: Vec<&StoredSpan> = spans
        .iter()
        .filter(|s| params.tags.iter().all(|(k, v)| tag_matches(s, k, v)))
        .collect();
    if matched.is_empty() {
        return None;
    }
    matched.sort_by_key(|s| s.span.start_time_unix_nano);
    let spansets: Vec<Value> = match &params.query {
        Some(query) => {
            let view = eval::TraceView::new(spans);
            let sets = eval::run(query, &view);
            if sets.is_empty() {
                return None;
            }
            sets.iter()
                .map(|set| {
                    let mut ss = Map::new();
                    ss.insert(
                        "spans".into(),
                        Value::Array(
                            set.spans
                                .iter()
                                .take(params.spss)
                                .map(|i| {
                                    spanset_span(&spans[*i], query_attributes(&view, *i, query))
                                })
                                .collect(),
                        ),
                    );
                    ss.insert("matched".into(), json!(set.spans.len()));
                    if !set.attributes.is_empty() {
                        ss.insert(
                            "attributes".into(),
                            Value::Array(
                                set.attributes.iter().map(|(k, v)| val_json(k, v)).collect(),
                            ),
                        );
                    }
                    Value::Object(ss)
                })
                .collect()
        }
        None => vec![json!({
            "spans": matched
                .iter()
                .take(params.spss)
                .map(|s| spanset_span(s, tag_attributes(s, &params.tags)))
                .collect::<Vec<_>>(),
            "matched": matched.len(),
        })],
    };

    let mut trace = Map::new();
    trace.insert("traceID".into(), json!(trace_id_hex(id)));
    match root_span(spans) {
        Some(root) => {
            let svc = root.service_name().unwrap_or_default();
            if !svc.is_empty() {
                trace.insert("rootServiceName".into(), json!(svc));
            }
            if !root.span.name.is_empty() {
                trace.insert("rootTraceName".into(), json!(root.span.name));
            }
        }
        None => {
            trace.insert("rootServiceName".into(), json!(ROOT_NOT_RECEIVED));
        }
    }
    trace.insert("startTimeUnixNano".into(), json!(start_ns.to_string()));
    let duration_ms = u32::try_from(duration_ns / 1_000_000).unwrap_or(u32::MAX);
    if duration_ms != 0 {
        trace.insert("durationMs".into(), json!(duration_ms));
    }
    if let Some(first) = spansets.first() {
        trace.insert("spanSet".into(), first.clone());
    }
    trace.insert("spanSets".into(), Value::Array(spansets));

    let mut stats: BTreeMap<String, (u32, u32)> = BTreeMap::new();
    for s in spans {
        let e = stats
            .entry(s.service_name().unwrap_or_default().to_string())
            .or_default();
        e.0 += 1;
        if status_text(s) == "error" {
            e.1 += 1;
        }
    }
    let stats: Map<String, Value> = stats
        .into_iter()
        .map(|(svc, (count, errors))| {
            let mut m = Map::new();
            if count != 0 {
                m.insert("spanCount".into(), json!(count));
            }
            if errors != 0 {
                m.insert("errorCount".into(), json!(errors));
            }
            (svc, Value::Object(m))
        })
        .collect();
    trace.insert("serviceStats".into(), Value::Object(stats));
    Some(Value::Object(trace))
}

/// Runs a search and renders Tempo's `SearchResponse` JSON.
pub fn search(store: &Store, params: &SearchParams) -> Value {
    search_until(store, params, None).value
}

/// A rendered search answer.
#[derive(Debug, Clone)]
pub struct SearchOutcome {
    /// Tempo's `SearchResponse` JSON.
    pub value: Value,
    /// True when the time budget ran out before every trace was inspected.
    pub partial: bool,
}

/// The answer given when a search never got its turn within its budget: no trace inspected,
/// marked partial like [`search_until`] does.
pub fn out_of_time(store: &Store, budget: std::time::Duration) -> SearchOutcome {
    let total = store.stats().traces_held;
    SearchOutcome {
        value: json!({
            "traces": [],
            "metrics": {
                "inspectedTraces": 0,
                "inspectedBytes": "0",
                "completedJobs": 0,
                "totalJobs": total.max(1),
            },
            "partial": true,
            "partialReason": format!(
                "the query time budget ({budget:?}, DESK_QUERY_TIMEOUT) ran out while waiting for a free search slot; no trace was inspected"
            ),
        }),
        partial: true,
    }
}

/// True when a trace from `start_ns` to `end_ns` is in the search's time window and duration
/// bounds.
fn in_window(start_ns: u64, end_ns: u64, params: &SearchParams) -> bool {
    let duration_ns = end_ns.saturating_sub(start_ns);
    !(params
        .end
        .is_some_and(|end| start_ns >= end.saturating_add(1).saturating_mul(NANOS_PER_SEC))
        || params
            .start
            .is_some_and(|start| end_ns < start.saturating_mul(NANOS_PER_SEC))
        || params.min_duration_ns.is_some_and(|min| duration_ns < min)
        || params.max_duration_ns.is_some_and(|max| duration_ns > max))
}

/// Whether a trace is a hit, without rendering it.
fn is_hit(spans: &[StoredSpan], params: &SearchParams) -> bool {
    let start_ns = spans.iter().map(|s| s.span.start_time_unix_nano).min();
    let end_ns = spans
        .iter()
        .map(|s| s.span.end_time_unix_nano.max(s.span.start_time_unix_nano))
        .max();
    let (Some(start_ns), Some(end_ns)) = (start_ns, end_ns) else {
        return false;
    };
    if !in_window(start_ns, end_ns, params) {
        return false;
    }
    if !params.tags.is_empty()
        && !spans
            .iter()
            .any(|s| params.tags.iter().all(|(k, v)| tag_matches(s, k, v)))
    {
        return false;
    }
    match &params.query {
        Some(query) => !eval::run(query, &eval::TraceView::new(spans)).is_empty(),
        None => true,
    }
}

/// Runs a search until `deadline`. The answer is the newest `limit` matching traces (by
/// earliest span start, later arrivals first among equal starts), found in three steps:
/// 1. under the store's lock, only each trace's [`TraceSummary`] is read: traces outside the
///    time window or duration bounds, and traces the query's [`Need`] rules out, are skipped
///    (`need = None` disables that pruning, for tests that compare answers);
/// 2. off the lock, the remaining traces are evaluated newest first until `limit` match;
/// 3. only those are rendered.
///
/// Past the deadline, the answer holds the matches found so far and says so the way Tempo's
/// streaming search does: `metrics.completedJobs < metrics.totalJobs` (one job per trace
/// here), plus `partial: true` and a `partialReason` for readers that look for a flag.
pub fn search_until(
    store: &Store,
    params: &SearchParams,
    deadline: Option<std::time::Instant>,
) -> SearchOutcome {
    let need = params.query.as_ref().map(Need::of_query);
    search_with(
        store,
        params,
        deadline,
        need.as_ref().or(Some(&Need::Any)),
        true,
    )
}

/// [`search_until`] with the pruning condition given (`None`: no summary test at all, not even
/// the time window) and, with `early` false, every candidate evaluated; for tests that check
/// pruning and early stopping change no answer.
pub(crate) fn search_with(
    store: &Store,
    params: &SearchParams,
    deadline: Option<std::time::Instant>,
    need: Option<&Need>,
    early: bool,
) -> SearchOutcome {
    let out_of_time = || deadline.is_some_and(|d| std::time::Instant::now() >= d);
    let late = out_of_time();
    let (total, candidates) = if late {
        (store.stats().traces_held, Vec::new())
    } else {
        store.candidates(|s| {
            need.is_none_or(|n| in_window(s.start_ns, s.end_ns, params) && n.holds(s))
        })
    };
    let mut partial = late && total > 0;
    // The traces decided by their summary alone.
    let mut inspected = total - candidates.len() as u64;
    if late {
        inspected = 0;
    }
    let mut queue: BinaryHeap<(u64, u64, usize)> = candidates
        .iter()
        .enumerate()
        .map(|(i, c)| (c.start_ns, c.seq, i))
        .collect();
    let mut kept: Vec<(TraceId, Arc<Vec<StoredSpan>>)> = Vec::new();
    while let Some((_, _, i)) = queue.pop() {
        if out_of_time() {
            partial = true;
            break;
        }
        inspected += 1;
        let id = candidates[i].id;
        // Evicted since the summaries were read: no longer held, not an answer.
        let Some(spans) = store.spans_of(&id) else {
            continue;
        };
        if kept.len() < params.limit && is_hit(&spans, params) {
            kept.push((id, spans));
            if early && kept.len() == params.limit {
                // Every trace left is older: none of them can be among the newest `limit`.
                inspected += queue.len() as u64;
                break;
            }
        }
    }
    let traces: Vec<Value> = kept
        .iter()
        .filter_map(|(id, spans)| trace_hit(id, spans, params))
        .collect();
    let mut value = json!({
        "traces": traces,
        "metrics": {
            "inspectedTraces": inspected,
            "inspectedBytes": "0",
            "completedJobs": if partial { inspected } else { total.max(1) },
            "totalJobs": total.max(1),
        }
    });
    if partial {
        value["partial"] = json!(true);
        value["partialReason"] = json!(format!(
            "the query time budget (DESK_QUERY_TIMEOUT) ran out after inspecting {inspected} of {total} traces (newest first); the traces listed are the matches among those"
        ));
    }
    SearchOutcome { value, partial }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logfmt() {
        assert_eq!(
            parse_logfmt(
                r#"service.name=order-api  http.response.status_code=500 name="POST /checkout""#
            ),
            Ok(vec![
                ("service.name".to_string(), "order-api".to_string()),
                ("http.response.status_code".to_string(), "500".to_string()),
                ("name".to_string(), "POST /checkout".to_string()),
            ])
        );
        assert_eq!(parse_logfmt("  "), Ok(vec![]));
        assert!(parse_logfmt("novalue").is_err());
        assert!(parse_logfmt(r#"a="open"#).is_err());
        assert_eq!(
            parse_logfmt(r#"a="say \"hi\"""#),
            Ok(vec![("a".to_string(), "say \"hi\"".to_string())])
        );
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("100ms"), Ok(100_000_000));
        assert_eq!(parse_go_duration("1.5s"), Ok(1_500_000_000));
        assert_eq!(parse_go_duration("2m"), Ok(120_000_000_000));
        assert_eq!(parse_go_duration("1h30m"), Ok(5_400_000_000_000));
        assert_eq!(parse_go_duration("250us"), Ok(250_000));
        assert_eq!(parse_go_duration("0"), Ok(0));
        assert!(parse_go_duration("10").is_err());
        assert!(parse_go_duration("ms").is_err());
        assert!(parse_go_duration("5x").is_err());
        assert!(parse_go_duration("-1s").is_err());
    }

    #[test]
    fn traceql() {
        let q = |v: &str| {
            let mut m = HashMap::new();
            m.insert("q".to_string(), v.to_string());
            SearchParams::from_query(&m)
        };
        assert!(q("{}").is_ok());
        assert!(q(" { } ").is_ok());
        assert!(q("").is_ok());
        assert!(q(r#"{ span.http.route = "/x" }"#).is_ok_and(|p| p.query.is_some()));
        assert!(q("{}").is_ok_and(|p| p.query.is_none()));
        match q("{ span.http.route = }") {
            Err(SearchError::TraceQl(e)) => assert_eq!(e.column, 21),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn trimmed_trace_id() {
        let mut id = [0u8; 16];
        id[15] = 0xab;
        assert_eq!(trace_id_hex(&id), "ab");
    }

    mod pruning {
        #![allow(clippy::unwrap_used, clippy::expect_used)]
        use opentelemetry_proto::tonic::common::v1::any_value::Value as Av;
        use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
        use opentelemetry_proto::tonic::resource::v1::Resource;
        use opentelemetry_proto::tonic::trace::v1::span::Event;
        use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
        use proptest::prelude::*;

        use super::super::*;

        const MS: u64 = 1_000_000;

        fn kv(key: &str, v: Av) -> KeyValue {
            KeyValue {
                key: key.into(),
                value: Some(AnyValue { value: Some(v) }),
                ..Default::default()
            }
        }

        /// One generated span: (name, status code, kind, start ms, duration ms, `k` value,
        /// event attribute, parent index, service).
        type GenSpan = (u8, i32, i32, u64, u64, u8, bool, usize, u8);

        fn value(v: u8) -> Option<Av> {
            match v {
                0 => Some(Av::StringValue("x".into())),
                1 => Some(Av::StringValue("y".into())),
                2 => Some(Av::IntValue(1)),
                3 => Some(Av::DoubleValue(1.0)),
                4 => Some(Av::BoolValue(true)),
                5 => Some(Av::IntValue(2_000_000)),
                _ => None,
            }
        }

        /// One export per trace, its spans split over two services.
        fn export(trace: u64, spans: &[GenSpan]) -> Vec<ResourceSpans> {
            let mut by_service: [Vec<Span>; 2] = [Vec::new(), Vec::new()];
            for (i, &(name, code, kind, start, dur, k, event, parent, svc)) in
                spans.iter().enumerate()
            {
                let id = |n: usize| ((trace << 8) | (n as u64 + 1)).to_be_bytes().to_vec();
                let mut trace_id = vec![0; 8];
                trace_id.extend_from_slice(&trace.to_be_bytes());
                by_service[usize::from(svc % 2)].push(Span {
                    trace_id,
                    span_id: id(i),
                    parent_span_id: if i == 0 { Vec::new() } else { id(parent % i) },
                    name: ["a", "b", "c"][usize::from(name % 3)].into(),
                    kind,
                    start_time_unix_nano: 1_700_000_000_000_000_000 + start * MS,
                    end_time_unix_nano: 1_700_000_000_000_000_000 + (start + dur) * MS,
                    attributes: value(k).map(|v| vec![kv("k", v)]).unwrap_or_default(),
                    events: if event {
                        vec![Event {
                            name: "ev".into(),
                            attributes: vec![kv("e", Av::StringValue("z".into()))],
                            ..Default::default()
                        }]
                    } else {
                        Vec::new()
                    },
                    status: Some(Status {
                        code,
                        message: String::new(),
                    }),
                    ..Default::default()
                });
            }
            by_service
                .into_iter()
                .enumerate()
                .map(|(i, spans)| ResourceSpans {
                    resource: Some(Resource {
                        attributes: vec![kv("service.name", Av::StringValue(format!("s{i}")))],
                        ..Default::default()
                    }),
                    scope_spans: vec![ScopeSpans {
                        spans,
                        ..Default::default()
                    }],
                    ..Default::default()
                })
                .collect()
        }

        const ATOMS: &[&str] = &[
            "true",
            "false",
            r#"name = "a""#,
            r#"name = "c""#,
            "status = error",
            "status = ok",
            "status != unset",
            "kind = server",
            "kind != client",
            "duration > 2ms",
            "duration >= 3ms",
            "duration < 1ms",
            "duration <= 2ms",
            r#"span.k = "x""#,
            r#".k = "y""#,
            "span.k = 1",
            "span.k = 1.0",
            "span.k = true",
            "span.k = 2ms",
            "span.k = nil",
            r#"span.k != "x""#,
            r#"resource.service.name = "s1""#,
            r#".service.name = "s0""#,
            r#"event.e = "z""#,
            r#"name =~ "a|b""#,
            r#"!(name = "a")"#,
            "span:childCount > 0",
            r#"trace:rootName = "a""#,
        ];

        const JOINS: &[&str] = &[
            "&&", "||", ">", ">>", "<", "<<", "~", "&>", "&>>", "!>", "!>>", "!<<", "!~",
        ];

        fn filter() -> BoxedStrategy<String> {
            let atom = prop::sample::select(ATOMS).prop_map(str::to_string);
            atom.prop_recursive(2, 4, 2, |inner| {
                (inner.clone(), prop::bool::ANY, inner)
                    .prop_map(|(a, and, b)| format!("({a} {} {b})", if and { "&&" } else { "||" }))
            })
            .boxed()
        }

        fn query() -> impl Strategy<Value = String> {
            let spanset = || filter().prop_map(|f| format!("{{ {f} }}"));
            let joined = (
                spanset(),
                prop::option::of((prop::sample::select(JOINS), spanset())),
            )
                .prop_map(|(a, rest)| match rest {
                    Some((op, b)) => format!("{a} {op} {b}"),
                    None => a,
                });
            (
                joined,
                prop::option::of(prop::sample::select(
                    &[
                        " | count() > 1",
                        r#" | { name = "b" }"#,
                        " | by(name)",
                        " | coalesce()",
                    ][..],
                )),
            )
                .prop_map(|(q, stage)| format!("{q}{}", stage.unwrap_or("")))
        }

        fn span() -> impl Strategy<Value = GenSpan> {
            (
                0u8..3,
                0i32..4,
                0i32..7,
                0u64..4,
                0u64..5,
                0u8..8,
                prop::bool::weighted(0.2),
                0usize..8,
                0u8..2,
            )
        }

        proptest! {
            #![proptest_config(ProptestConfig {
                cases: 300,
                rng_seed: proptest::test_runner::RngSeed::Fixed(11_03),
                ..ProptestConfig::default()
            })]

            /// Pruning by summary and stopping at `limit` change no answer: the same traces, in
            /// the same order, rendered the same, as evaluating every trace.
            #[test]
            fn pruned_answers_equal_unpruned(
                traces in prop::collection::vec(prop::collection::vec(span(), 1..6), 1..12),
                q in query(),
                limit in 1usize..5,
            ) {
                let store = Store::new(10_000);
                for (t, spans) in traces.iter().enumerate() {
                    store.ingest(export(t as u64 + 1, spans));
                }
                let mut m = HashMap::new();
                m.insert("q".to_string(), q.clone());
                m.insert("limit".to_string(), limit.to_string());
                let params = SearchParams::from_query(&m).unwrap();
                let pruned = search_until(&store, &params, None).value;
                let full = search_with(&store, &params, None, None, false).value;
                prop_assert_eq!(&pruned["traces"], &full["traces"], "{}", q);
                prop_assert_eq!(
                    &pruned["metrics"]["inspectedTraces"],
                    &json!(traces.len()),
                    "{}", q
                );
                // The condition itself never rules out a trace the query matches.
                let need = Need::of_query(params.query.as_ref().unwrap());
                for (t, spans) in traces.iter().enumerate() {
                    let mut summary = crate::summary::TraceSummary::default();
                    let held = store.trace(&{
                        let mut id = [0u8; 16];
                        id[8..].copy_from_slice(&(t as u64 + 1).to_be_bytes());
                        id
                    }).unwrap();
                    prop_assert_eq!(held.len(), spans.len());
                    for s in &held {
                        summary.add_span(&s.span);
                        let mut b = crate::summary::Bloom::default();
                        b.insert_attributes(&s.resource.attributes);
                        summary.add_shared(&b);
                    }
                    let matched = !eval::run(
                        params.query.as_ref().unwrap(),
                        &eval::TraceView::new(&held),
                    )
                    .is_empty();
                    prop_assert!(!matched || need.holds(&summary), "{} ruled out trace {}", q, t);
                }
            }
        }

        /// The newest `limit` traces by earliest start, later arrivals first among equal starts,
        /// as when every match was rendered and sorted.
        #[test]
        fn keeps_the_newest_limit() {
            let store = Store::new(10_000);
            // Traces 1..=6; starts 0, 3, 1, 3, 2, 0 ms.
            for (t, start) in [(1, 0), (2, 3), (3, 1), (4, 3), (5, 2), (6, 0)] {
                store.ingest(export(t, &[(0, 0, 2, start, 1, 0, false, 0, 0)]));
            }
            let ids = |limit: usize| -> Vec<String> {
                let mut m = HashMap::new();
                m.insert("q".to_string(), r#"{ name = "a" }"#.to_string());
                m.insert("limit".to_string(), limit.to_string());
                let p = SearchParams::from_query(&m).unwrap();
                let v = search_until(&store, &p, None).value;
                assert_eq!(
                    v["traces"],
                    search_with(&store, &p, None, None, false).value["traces"]
                );
                v["traces"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|t| t["traceID"].as_str().unwrap().to_string())
                    .collect()
            };
            assert_eq!(ids(3), ["4", "2", "5"]);
            assert_eq!(ids(10), ["4", "2", "5", "3", "6", "1"]);
            assert_eq!(ids(1), ["4"]);
        }
    }
}
