//! Bounded in-memory span store, grouped per trace id.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

use crate::limits::{self, AttributeLimits, Trimmed};
use crate::summary::{Bloom, TraceSummary};

/// Default bound on the estimated bytes held in memory (256 MiB; `DESK_MAX_BYTES`).
pub const DEFAULT_MAX_BYTES: u64 = 256 * 1024 * 1024;

/// Fixed per-span overhead added to a span's estimate: the in-memory `Span` and `StoredSpan`
/// structs (a dozen `Vec`/`String` headers and the four `Arc`s to the shared resource and
/// scope), the trace's `Vec` slot and allocator slack.
pub const SPAN_OVERHEAD_BYTES: u64 = 320;

/// Estimated memory held by one span: its encoded protobuf length (attributes, events and
/// links included), the heap cost of each attribute, event and link
/// ([`limits::span_payload_bytes`]) and [`SPAN_OVERHEAD_BYTES`]. The resource and scope it was
/// exported with are charged separately, once per trace and export.
pub fn estimated_span_bytes(span: &Span) -> u64 {
    limits::span_payload_bytes(span) + SPAN_OVERHEAD_BYTES
}

/// The estimate the store charges for an export (before the attribute limits, assuming every
/// span is accepted): each span, plus each resource and scope once per trace it carries spans of.
pub fn estimated_request_bytes(resource_spans: &[ResourceSpans]) -> u64 {
    let mut total = 0;
    for rs in resource_spans {
        let r = rs.resource.clone().unwrap_or_default();
        let r_bytes = limits::resource_bytes(&r, &rs.schema_url);
        let mut r_traces: HashSet<&[u8]> = HashSet::new();
        for ss in &rs.scope_spans {
            let sc = ss.scope.clone().unwrap_or_default();
            let s_bytes = limits::scope_bytes(&sc, &ss.schema_url);
            let mut s_traces: HashSet<&[u8]> = HashSet::new();
            for span in &ss.spans {
                total += estimated_span_bytes(span);
                if r_traces.insert(&span.trace_id) {
                    total += r_bytes;
                }
                if s_traces.insert(&span.trace_id) {
                    total += s_bytes;
                }
            }
        }
    }
    total
}

/// A 16-byte trace id.
pub type TraceId = [u8; 16];

/// One span with the resource and instrumentation scope it was reported with.
#[derive(Debug, Clone)]
pub struct StoredSpan {
    /// Resource shared by all spans of one `ResourceSpans` message.
    pub resource: Arc<Resource>,
    /// `ResourceSpans.schema_url`.
    pub resource_schema_url: Arc<str>,
    /// Instrumentation scope shared by all spans of one `ScopeSpans` message.
    pub scope: Arc<InstrumentationScope>,
    /// `ScopeSpans.schema_url`.
    pub scope_schema_url: Arc<str>,
    /// The span itself. Its `trace_id` is empty in most held spans (the store keys spans by
    /// trace id, so it keeps one copy per trace and export): read the id from the
    /// [`Store`]'s key, or use [`Store::trace`] or [`group_spans`], which fill it in.
    pub span: Span,
}

impl StoredSpan {
    /// The `service.name` resource attribute, if it is a string.
    pub fn service_name(&self) -> Option<&str> {
        use opentelemetry_proto::tonic::common::v1::any_value::Value;
        self.resource
            .attributes
            .iter()
            .find(|kv| kv.key == "service.name")
            .and_then(|kv| kv.value.as_ref())
            .and_then(|v| match &v.value {
                Some(Value::StringValue(s)) => Some(s.as_str()),
                _ => None,
            })
    }
}

/// Counters describing the store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Spans accepted since start.
    pub spans_received: u64,
    /// Spans rejected at intake (bad trace or span id).
    pub spans_rejected: u64,
    /// Spans currently held.
    pub spans_held: u64,
    /// Traces currently held.
    pub traces_held: u64,
    /// Whole traces evicted to respect the bound.
    pub traces_evicted: u64,
    /// Spans evicted with those traces.
    pub spans_evicted: u64,
    /// The bound on held spans.
    pub max_spans: u64,
    /// Estimated bytes currently held ([`estimated_span_bytes`] summed over held spans).
    pub bytes_held: u64,
    /// The bound on [`StoreStats::bytes_held`].
    pub max_bytes: u64,
    /// Attributes dropped at intake by the attribute count limit.
    pub attributes_dropped: u64,
    /// Events dropped at intake by the per-span event limit.
    pub events_dropped: u64,
    /// Links dropped at intake by the per-span link limit.
    pub links_dropped: u64,
    /// String or bytes values cut to the value length limit at intake.
    pub values_truncated: u64,
    /// OTLP requests refused with 413 (body, or gzip-decompressed body, over the size limit).
    pub requests_too_large: u64,
}

/// Result of one intake call.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IngestOutcome {
    /// Spans stored.
    pub accepted: u64,
    /// Spans refused (invalid ids).
    pub rejected: u64,
    /// Why spans were refused, if any were.
    pub error: Option<String>,
}

#[derive(Debug)]
struct TraceEntry {
    /// Shared so a search can read a snapshot without holding the store's lock; a write to a
    /// trace a search is reading copies that trace's vector (`Arc::make_mut`).
    spans: Arc<Vec<StoredSpan>>,
    /// Estimated bytes of `spans`.
    bytes: u64,
    /// Position in first-received order (newer traces have larger numbers).
    seq: u64,
}

#[derive(Debug, Default)]
struct Inner {
    traces: HashMap<TraceId, TraceEntry>,
    /// Trace ids in first-received order; every held trace appears exactly once.
    order: VecDeque<TraceId>,
    /// What search tests before reading a trace's spans, in the order of `order`: one dense
    /// run of memory, walked without a hash lookup per trace.
    summaries: VecDeque<TraceSummary>,
    /// The next [`TraceEntry::seq`].
    next_seq: u64,
    stats: StoreStats,
}

impl Inner {
    /// The number ([`TraceEntry::seq`]) of the oldest held trace.
    fn front_seq(&self) -> u64 {
        self.next_seq - self.order.len() as u64
    }
}

/// Traces whose summaries [`Store::candidates`] tests per hold of the store's lock (a few
/// dozen microseconds of intake waiting at most: the summaries are one dense run of memory).
pub const SUMMARY_CHUNK: usize = 2048;

/// A held trace a search selected by its summary ([`Store::spans_of`] reads its spans).
#[derive(Debug, Clone, Copy)]
pub struct Candidate {
    /// The trace id.
    pub id: TraceId,
    /// Earliest span start ([`TraceSummary::start_ns`]).
    pub start_ns: u64,
    /// Position in first-received order: among equal starts, larger is newer.
    pub seq: u64,
}

/// The spans of one trace in one export, gathered before the store's lock is taken.
struct Pending {
    spans: Vec<StoredSpan>,
    bytes: u64,
    summary: TraceSummary,
}

/// Thread-safe handle to the span store; clones share the same data.
#[derive(Debug, Clone)]
pub struct Store {
    inner: Arc<Mutex<Inner>>,
    max_spans: usize,
    max_bytes: u64,
    limits: AttributeLimits,
}

impl Store {
    /// A store that holds at most `max_spans` spans (at least 1) and
    /// [`DEFAULT_MAX_BYTES`] estimated bytes.
    pub fn new(max_spans: usize) -> Self {
        Self::with_limits(max_spans, DEFAULT_MAX_BYTES)
    }

    /// A store that holds at most `max_spans` spans and `max_bytes` estimated bytes (each at
    /// least 1); past either bound it evicts whole traces, oldest first.
    pub fn with_limits(max_spans: usize, max_bytes: u64) -> Self {
        let max_spans = max_spans.max(1);
        let max_bytes = max_bytes.max(1);
        let inner = Inner {
            stats: StoreStats {
                max_spans: max_spans as u64,
                max_bytes,
                ..StoreStats::default()
            },
            ..Inner::default()
        };
        Self {
            inner: Arc::new(Mutex::new(inner)),
            max_spans,
            max_bytes,
            limits: AttributeLimits::default(),
        }
    }

    /// The same store with other attribute limits (applied to spans ingested from now on).
    pub fn with_attribute_limits(mut self, limits: AttributeLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The attribute limits applied at intake.
    pub fn attribute_limits(&self) -> AttributeLimits {
        self.limits
    }

    /// Counts an OTLP request refused for its size.
    pub fn count_too_large(&self) {
        self.lock().stats.requests_too_large += 1;
    }

    /// The bound on held spans.
    pub fn max_spans(&self) -> usize {
        self.max_spans
    }

    /// The bound on held bytes (estimated, see [`estimated_span_bytes`]).
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the maps half-updated in a way
        // that matters for reads, so keep serving.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stores the spans of an OTLP export; evicts whole traces, oldest first, while
    /// either bound (spans, estimated bytes) is exceeded.
    pub fn ingest(&self, resource_spans: Vec<ResourceSpans>) -> IngestOutcome {
        let mut outcome = IngestOutcome::default();
        let mut trimmed = Trimmed::default();
        // Grouped by trace (in first-seen order) before the lock is taken, so each trace's
        // vector grows once, to its exact size, and the lock covers only the merge.
        let mut pending: HashMap<TraceId, Pending> = HashMap::new();
        let mut first_seen: Vec<TraceId> = Vec::new();
        for rs in resource_spans {
            let mut resource = rs.resource.unwrap_or_default();
            trimmed.add(limits::trim_resource(&mut resource, &self.limits));
            let r_bytes = limits::resource_bytes(&resource, &rs.schema_url);
            let mut r_bloom = Bloom::default();
            r_bloom.insert_attributes(&resource.attributes);
            let resource = Arc::new(resource);
            let resource_schema_url: Arc<str> = Arc::from(rs.schema_url.as_str());
            // Each trace is charged once for the resource and scope it shares with this export's
            // other spans, so evicting it frees at least what it was charged.
            let mut r_traces: HashSet<TraceId> = HashSet::new();
            for ss in rs.scope_spans {
                let mut scope = ss.scope.unwrap_or_default();
                trimmed.add(limits::trim_scope(&mut scope, &self.limits));
                let s_bytes = limits::scope_bytes(&scope, &ss.schema_url);
                let mut s_bloom = Bloom::default();
                s_bloom.insert_attributes(&scope.attributes);
                let scope = Arc::new(scope);
                let scope_schema_url: Arc<str> = Arc::from(ss.schema_url.as_str());
                let mut s_traces: HashSet<TraceId> = HashSet::new();
                for mut span in ss.spans {
                    let trace_id = match <TraceId>::try_from(span.trace_id.as_slice()) {
                        Ok(id) if id != [0; 16] => id,
                        _ => {
                            outcome.rejected += 1;
                            outcome.error = Some(format!(
                                "span {:?}: trace id must be 16 non-zero bytes",
                                span.name
                            ));
                            continue;
                        }
                    };
                    if span.span_id.len() != 8 || span.span_id.iter().all(|b| *b == 0) {
                        outcome.rejected += 1;
                        outcome.error = Some(format!(
                            "span {:?}: span id must be 8 non-zero bytes",
                            span.name
                        ));
                        continue;
                    }
                    trimmed.add(limits::trim_span(&mut span, &self.limits));
                    compact(&mut span);
                    // Charged as received (the estimate counts the trace id once per span).
                    let span_bytes = estimated_span_bytes(&span);
                    if pending.contains_key(&trace_id) {
                        // The id is the map's key: one span per group keeps it (for
                        // `group_spans`), the others drop their copy (a heap block each).
                        span.trace_id = Vec::new();
                    }
                    let p = pending.entry(trace_id).or_insert_with(|| {
                        first_seen.push(trace_id);
                        Pending {
                            spans: Vec::new(),
                            bytes: 0,
                            summary: TraceSummary::default(),
                        }
                    });
                    p.bytes += span_bytes;
                    if r_traces.insert(trace_id) {
                        p.bytes += r_bytes;
                        p.summary.add_shared(&r_bloom);
                    }
                    if s_traces.insert(trace_id) {
                        p.bytes += s_bytes;
                        p.summary.add_shared(&s_bloom);
                    }
                    p.summary.add_span(&span);
                    p.spans.push(StoredSpan {
                        resource: Arc::clone(&resource),
                        resource_schema_url: Arc::clone(&resource_schema_url),
                        scope: Arc::clone(&scope),
                        scope_schema_url: Arc::clone(&scope_schema_url),
                        span,
                    });
                    outcome.accepted += 1;
                }
            }
        }
        for p in pending.values_mut() {
            p.spans.shrink_to_fit();
        }

        let mut inner = self.lock();
        let inner = &mut *inner;
        inner.stats.spans_received += outcome.accepted;
        inner.stats.spans_rejected += outcome.rejected;
        inner.stats.attributes_dropped += trimmed.attributes;
        inner.stats.events_dropped += trimmed.events;
        inner.stats.links_dropped += trimmed.links;
        inner.stats.values_truncated += trimmed.values;
        let front = inner.front_seq();
        for trace_id in first_seen {
            let Some(p) = pending.remove(&trace_id) else {
                continue;
            };
            let n = p.spans.len() as u64;
            match inner.traces.get_mut(&trace_id) {
                Some(entry) => {
                    let spans = Arc::make_mut(&mut entry.spans);
                    spans.reserve_exact(p.spans.len());
                    spans.extend(p.spans);
                    entry.bytes += p.bytes;
                    if let Some(summary) = inner.summaries.get_mut((entry.seq - front) as usize) {
                        summary.merge(&p.summary);
                    }
                }
                None => {
                    let seq = inner.next_seq;
                    inner.next_seq += 1;
                    inner.traces.insert(
                        trace_id,
                        TraceEntry {
                            spans: Arc::new(p.spans),
                            bytes: p.bytes,
                            seq,
                        },
                    );
                    inner.order.push_back(trace_id);
                    inner.summaries.push_back(p.summary);
                }
            }
            inner.stats.spans_held += n;
            inner.stats.bytes_held += p.bytes;
        }
        while inner.stats.spans_held > self.max_spans as u64
            || inner.stats.bytes_held > self.max_bytes
        {
            let Some(oldest) = inner.order.pop_front() else {
                break;
            };
            inner.summaries.pop_front();
            if let Some(entry) = inner.traces.remove(&oldest) {
                let n = entry.spans.len() as u64;
                inner.stats.spans_held -= n;
                inner.stats.bytes_held -= entry.bytes;
                inner.stats.spans_evicted += n;
                inner.stats.traces_evicted += 1;
            }
        }
        inner.stats.traces_held = inner.traces.len() as u64;
        outcome
    }

    /// A copy of the spans of one trace, sorted by start time.
    pub fn trace(&self, trace_id: &TraceId) -> Option<Vec<StoredSpan>> {
        let inner = self.lock();
        let mut spans = Vec::clone(&inner.traces.get(trace_id)?.spans);
        drop(inner);
        for s in &mut spans {
            if s.span.trace_id.is_empty() {
                s.span.trace_id = trace_id.to_vec();
            }
        }
        sort_by_start(&mut spans);
        Some(spans)
    }

    /// The held traces (in first-received order), shared: the lock is held only to take the
    /// snapshot, so a long search does not stall span intake.
    pub fn snapshot(&self) -> Vec<(TraceId, Arc<Vec<StoredSpan>>)> {
        let inner = self.lock();
        inner
            .order
            .iter()
            .filter_map(|id| inner.traces.get(id).map(|e| (*id, Arc::clone(&e.spans))))
            .collect()
    }

    /// The held traces whose summary passes `keep` (in first-received order), and how many
    /// traces were held when it began. The lock is taken once per [`SUMMARY_CHUNK`] traces, so
    /// intake waits for at most one chunk of `keep` calls (which must be cheap: a
    /// [`crate::prune::Need`] test); no span is touched under it. Traces evicted during the
    /// walk are left out; traces received during it are not visited.
    pub fn candidates(&self, keep: impl Fn(&TraceSummary) -> bool) -> (u64, Vec<Candidate>) {
        let (held, mut next, end) = {
            let inner = self.lock();
            (inner.traces.len() as u64, inner.front_seq(), inner.next_seq)
        };
        let mut out = Vec::new();
        while next < end {
            let inner = self.lock();
            let front = inner.front_seq();
            if front >= end {
                // Every trace left to visit was evicted.
                break;
            }
            // `order[i]` holds the trace numbered `front + i`: numbers are given in arrival
            // order and only the oldest trace is ever removed.
            let from = next.max(front) - front;
            let to = (end - front).min(from + SUMMARY_CHUNK as u64);
            let range = from as usize..to as usize;
            for (i, (id, summary)) in inner
                .order
                .range(range.clone())
                .zip(inner.summaries.range(range))
                .enumerate()
            {
                if keep(summary) {
                    out.push(Candidate {
                        id: *id,
                        start_ns: summary.start_ns,
                        seq: front + from + i as u64,
                    });
                }
            }
            next = front + to;
        }
        (held, out)
    }

    /// The spans of a held trace (received order), shared: read them without the lock.
    pub fn spans_of(&self, id: &TraceId) -> Option<Arc<Vec<StoredSpan>>> {
        self.lock().traces.get(id).map(|e| Arc::clone(&e.spans))
    }

    /// Calls `f` for every held trace (in first-received order), over a [`Store::snapshot`].
    pub fn for_each_trace(&self, mut f: impl FnMut(&TraceId, &[StoredSpan])) {
        let snapshot = self.snapshot();
        for (id, spans) in &snapshot {
            f(id, spans);
        }
    }

    /// Current counters.
    pub fn stats(&self) -> StoreStats {
        self.lock().stats
    }
}

/// Drops the spare capacity decoding left in a span's vectors (a vector grown by pushes holds
/// up to twice its length), which the store would otherwise keep for the span's lifetime.
fn compact(span: &mut Span) {
    span.attributes.shrink_to_fit();
    span.events.shrink_to_fit();
    span.links.shrink_to_fit();
    for e in &mut span.events {
        e.attributes.shrink_to_fit();
    }
    for l in &mut span.links {
        l.attributes.shrink_to_fit();
    }
}

/// Sorts spans by start time (then end time, then span id) for stable output.
pub fn sort_by_start(spans: &mut [StoredSpan]) {
    spans.sort_by(|a, b| {
        (
            a.span.start_time_unix_nano,
            a.span.end_time_unix_nano,
            &a.span.span_id,
        )
            .cmp(&(
                b.span.start_time_unix_nano,
                b.span.end_time_unix_nano,
                &b.span.span_id,
            ))
    });
}

/// Rebuilds OTLP `ResourceSpans` from the stored spans of one trace: grouped by resource (equal
/// content), then by scope, keeping the order of `spans` (sort them first). Spans held without
/// their trace id (see [`StoredSpan::span`]) get the one the others carry.
pub fn group_spans(spans: &[StoredSpan]) -> Vec<ResourceSpans> {
    let trace_id = spans
        .iter()
        .map(|s| &s.span.trace_id)
        .find(|id| !id.is_empty());
    let mut out: Vec<ResourceSpans> = Vec::new();
    for s in spans {
        let rs_idx = match out.iter().position(|rs| {
            rs.schema_url == *s.resource_schema_url
                && rs.resource.as_ref() == Some(s.resource.as_ref())
        }) {
            Some(i) => i,
            None => {
                out.push(ResourceSpans {
                    resource: Some((*s.resource).clone()),
                    scope_spans: Vec::new(),
                    schema_url: s.resource_schema_url.to_string(),
                });
                out.len() - 1
            }
        };
        let rs = &mut out[rs_idx];
        let ss_idx = match rs.scope_spans.iter().position(|ss| {
            ss.schema_url == *s.scope_schema_url && ss.scope.as_ref() == Some(s.scope.as_ref())
        }) {
            Some(i) => i,
            None => {
                rs.scope_spans.push(ScopeSpans {
                    scope: Some((*s.scope).clone()),
                    spans: Vec::new(),
                    schema_url: s.scope_schema_url.to_string(),
                });
                rs.scope_spans.len() - 1
            }
        };
        let mut span = s.span.clone();
        if span.trace_id.is_empty()
            && let Some(id) = trace_id
        {
            span.trace_id = id.clone();
        }
        rs.scope_spans[ss_idx].spans.push(span);
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use opentelemetry_proto::tonic::common::v1::any_value::Value as Av;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};

    use super::*;

    fn export(trace: u8, spans: std::ops::Range<u8>) -> Vec<ResourceSpans> {
        let kv = |k: &str| KeyValue {
            key: k.into(),
            value: Some(AnyValue {
                value: Some(Av::IntValue(1)),
            }),
            ..Default::default()
        };
        let span = |i: u8| {
            // Pushed one by one, as decoding does: capacity 8 for 5 attributes.
            let mut attributes = Vec::new();
            for k in ["a", "b", "c", "d", "e"] {
                attributes.push(kv(k));
            }
            Span {
                trace_id: vec![trace; 16],
                span_id: vec![i + 1; 8],
                name: format!("s{i}"),
                start_time_unix_nano: u64::from(i),
                attributes,
                ..Default::default()
            }
        };
        vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: spans.map(span).collect(),
                ..Default::default()
            }],
            ..Default::default()
        }]
    }

    /// Held spans keep no spare capacity and (but for one per export) no copy of the trace id;
    /// reads by id and `group_spans` give every span its id back.
    #[test]
    fn held_spans_are_compact_and_read_back_whole() {
        let store = Store::new(100);
        store.ingest(export(7, 0..5));
        store.ingest(export(7, 5..8));
        store.ingest(export(9, 0..3));
        let snapshot = store.snapshot();
        let (_, spans) = snapshot.iter().find(|(id, _)| *id == [7; 16]).unwrap();
        assert_eq!(spans.len(), 8);
        assert_eq!(spans.capacity(), 8);
        assert!(spans.iter().all(|s| s.span.attributes.capacity() == 5));
        let with_id = spans.iter().filter(|s| !s.span.trace_id.is_empty()).count();
        assert_eq!(with_id, 2, "one per export");
        let whole = store.trace(&[7; 16]).unwrap();
        assert!(whole.iter().all(|s| s.span.trace_id == vec![7; 16]));
        let grouped = group_spans(spans);
        let ids: Vec<&Vec<u8>> = grouped
            .iter()
            .flat_map(|rs| &rs.scope_spans)
            .flat_map(|ss| &ss.spans)
            .map(|s| &s.trace_id)
            .collect();
        assert_eq!(ids.len(), 8);
        assert!(ids.iter().all(|id| **id == vec![7; 16]));
        // The estimate still charges each span as received.
        assert_eq!(
            store.stats().bytes_held,
            estimated_request_bytes(&export(7, 0..5))
                + estimated_request_bytes(&export(7, 5..8))
                + estimated_request_bytes(&export(9, 0..3))
        );
    }

    /// The summary walk visits every held trace once, in arrival order, across chunks and
    /// evictions.
    #[test]
    fn candidates_walk_every_held_trace_once() {
        let store = Store::new(3 * (SUMMARY_CHUNK + 5));
        for t in 0..(SUMMARY_CHUNK as u32 + 5) {
            store.ingest(export_id(t, 0..3));
        }
        // Evict the first 10 traces.
        for t in 0..10 {
            store.ingest(export_id(1_000_000 + t, 0..3));
        }
        let (held, all) = store.candidates(|_| true);
        assert_eq!(held, SUMMARY_CHUNK as u64 + 5);
        assert_eq!(all.len(), SUMMARY_CHUNK + 5);
        assert!(all.windows(2).all(|w| w[0].seq + 1 == w[1].seq));
        let firsts: Vec<u32> = all[..2]
            .iter()
            .map(|c| u32::from_be_bytes(c.id[..4].try_into().unwrap()))
            .collect();
        assert_eq!(firsts, [10, 11]);
        let (_, some) = store.candidates(|s| s.start_ns == 0 && s.max_span_ns == 0);
        assert_eq!(some.len(), all.len());
        let (_, none) = store.candidates(|_| false);
        assert!(none.is_empty());
    }

    fn export_id(t: u32, spans: std::ops::Range<u8>) -> Vec<ResourceSpans> {
        let mut e = export(1, spans);
        for s in &mut e[0].scope_spans[0].spans {
            s.trace_id[..4].copy_from_slice(&t.to_be_bytes());
        }
        e
    }
}
