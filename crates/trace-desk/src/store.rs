//! Bounded in-memory span store, grouped per trace id.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message as _;

/// Fixed per-span overhead added to a span's encoded protobuf length when estimating the
/// memory it takes: the in-memory `Span` and `StoredSpan` structs (a dozen `Vec`/`String`
/// headers and the four `Arc`s to the shared resource and scope), the trace's `Vec` slot and
/// allocator slack. Resources and scopes are shared by the spans of one export and not counted.
pub const SPAN_OVERHEAD_BYTES: u64 = 320;

/// Estimated memory held by one span: its encoded protobuf length plus [`SPAN_OVERHEAD_BYTES`].
pub fn estimated_span_bytes(span: &Span) -> u64 {
    span.encoded_len() as u64 + SPAN_OVERHEAD_BYTES
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
    /// The span itself.
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
}

#[derive(Debug, Default)]
struct Inner {
    traces: HashMap<TraceId, TraceEntry>,
    /// Trace ids in first-received order; every held trace appears exactly once.
    order: VecDeque<TraceId>,
    stats: StoreStats,
}

/// Thread-safe handle to the span store; clones share the same data.
#[derive(Debug, Clone)]
pub struct Store {
    inner: Arc<Mutex<Inner>>,
    max_spans: usize,
    max_bytes: u64,
}

impl Store {
    /// A store that holds at most `max_spans` spans (at least 1) and
    /// [`crate::config::DEFAULT_MAX_BYTES`] estimated bytes.
    pub fn new(max_spans: usize) -> Self {
        Self::with_limits(max_spans, crate::config::DEFAULT_MAX_BYTES)
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
        }
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
        let mut batch: Vec<(TraceId, StoredSpan)> = Vec::new();
        for rs in resource_spans {
            let resource = Arc::new(rs.resource.unwrap_or_default());
            let resource_schema_url: Arc<str> = Arc::from(rs.schema_url.as_str());
            for ss in rs.scope_spans {
                let scope = Arc::new(ss.scope.unwrap_or_default());
                let scope_schema_url: Arc<str> = Arc::from(ss.schema_url.as_str());
                for span in ss.spans {
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
                    batch.push((
                        trace_id,
                        StoredSpan {
                            resource: Arc::clone(&resource),
                            resource_schema_url: Arc::clone(&resource_schema_url),
                            scope: Arc::clone(&scope),
                            scope_schema_url: Arc::clone(&scope_schema_url),
                            span,
                        },
                    ));
                }
            }
        }
        outcome.accepted = batch.len() as u64;

        let mut inner = self.lock();
        let inner = &mut *inner;
        inner.stats.spans_received += outcome.accepted;
        inner.stats.spans_rejected += outcome.rejected;
        for (trace_id, span) in batch {
            let bytes = estimated_span_bytes(&span.span);
            match inner.traces.get_mut(&trace_id) {
                Some(entry) => {
                    Arc::make_mut(&mut entry.spans).push(span);
                    entry.bytes += bytes;
                }
                None => {
                    inner.traces.insert(
                        trace_id,
                        TraceEntry {
                            spans: Arc::new(vec![span]),
                            bytes,
                        },
                    );
                    inner.order.push_back(trace_id);
                }
            }
            inner.stats.spans_held += 1;
            inner.stats.bytes_held += bytes;
        }
        while inner.stats.spans_held > self.max_spans as u64
            || inner.stats.bytes_held > self.max_bytes
        {
            let Some(oldest) = inner.order.pop_front() else {
                break;
            };
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

/// Rebuilds OTLP `ResourceSpans` from stored spans: grouped by resource (equal
/// content), then by scope, keeping the order of `spans` (sort them first).
pub fn group_spans(spans: &[StoredSpan]) -> Vec<ResourceSpans> {
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
        rs.scope_spans[ss_idx].spans.push(s.span.clone());
    }
    out
}
