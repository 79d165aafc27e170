//! OpenTelemetry's attribute limits, applied at intake, and the memory estimate of what the
//! store keeps.
//!
//! The limits follow the SDK specification's defaults (128 attributes per span, resource,
//! scope, event and link; 128 events and 128 links per span) plus a value length limit the
//! spec leaves unset by default: string and bytes values (also inside arrays and key-value
//! lists) are cut to 4 KiB. What is dropped is added to the OTLP `dropped_*_count` fields of
//! the stored message and counted in `/metrics`.

use opentelemetry_proto::tonic::common::v1::any_value::Value as Av;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message as _;

/// Default attributes kept per span, resource, scope, event and link (`DESK_MAX_ATTRIBUTES`).
pub const DEFAULT_MAX_ATTRIBUTES: usize = 128;
/// Default events kept per span (`DESK_MAX_EVENTS`).
pub const DEFAULT_MAX_EVENTS: usize = 128;
/// Default links kept per span (`DESK_MAX_LINKS`).
pub const DEFAULT_MAX_LINKS: usize = 128;
/// Default length kept of one string or bytes value, in bytes (`DESK_MAX_VALUE_BYTES`, 4 KiB).
pub const DEFAULT_MAX_VALUE_BYTES: usize = 4096;

/// Estimated in-memory cost of one `KeyValue` beyond its encoded bytes: the struct in its
/// `Vec` and the heap blocks (with allocator headers) of its key and value.
pub const KEY_VALUE_OVERHEAD_BYTES: u64 = 96;
/// Estimated in-memory cost of one array or key-value-list element beyond its encoded bytes.
pub const VALUE_OVERHEAD_BYTES: u64 = 64;
/// Estimated in-memory cost of one event or link beyond its encoded bytes.
pub const EVENT_OVERHEAD_BYTES: u64 = 160;
/// Estimated in-memory cost of one resource or scope (its `Arc`, struct and schema URL).
pub const SHARED_OVERHEAD_BYTES: u64 = 160;

/// How much of each span the desk keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttributeLimits {
    /// Attributes per span, resource, scope, event and link.
    pub max_attributes: usize,
    /// Events per span.
    pub max_events: usize,
    /// Links per span.
    pub max_links: usize,
    /// Bytes kept of one string or bytes value.
    pub max_value_bytes: usize,
}

impl Default for AttributeLimits {
    fn default() -> Self {
        Self {
            max_attributes: DEFAULT_MAX_ATTRIBUTES,
            max_events: DEFAULT_MAX_EVENTS,
            max_links: DEFAULT_MAX_LINKS,
            max_value_bytes: DEFAULT_MAX_VALUE_BYTES,
        }
    }
}

/// What applying the limits dropped or cut.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Trimmed {
    /// Attributes dropped (all kinds of owner).
    pub attributes: u64,
    /// Events dropped.
    pub events: u64,
    /// Links dropped.
    pub links: u64,
    /// String or bytes values cut to the length limit.
    pub values: u64,
}

impl Trimmed {
    /// Adds another tally.
    pub fn add(&mut self, o: Trimmed) {
        self.attributes += o.attributes;
        self.events += o.events;
        self.links += o.links;
        self.values += o.values;
    }
}

fn add_u32(field: &mut u32, n: usize) {
    *field = field.saturating_add(u32::try_from(n).unwrap_or(u32::MAX));
}

/// Cuts `s` to at most `max` bytes on a character boundary.
fn cut_str(s: &mut String, max: usize) -> bool {
    if s.len() <= max {
        return false;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    s.shrink_to_fit();
    true
}

/// Applies the value length limit to a value, nested arrays and lists included (iteratively,
/// so a deeply nested value cannot exhaust the stack).
fn trim_value(v: &mut AnyValue, limits: &AttributeLimits, t: &mut Trimmed) {
    let mut stack: Vec<&mut AnyValue> = vec![v];
    while let Some(v) = stack.pop() {
        match &mut v.value {
            Some(Av::StringValue(s)) if s.len() > limits.max_value_bytes => {
                cut_str(s, limits.max_value_bytes);
                t.values += 1;
            }
            Some(Av::BytesValue(b)) if b.len() > limits.max_value_bytes => {
                b.truncate(limits.max_value_bytes);
                b.shrink_to_fit();
                t.values += 1;
            }
            Some(Av::ArrayValue(a)) => stack.extend(a.values.iter_mut()),
            Some(Av::KvlistValue(kv)) => {
                stack.extend(kv.values.iter_mut().filter_map(|kv| kv.value.as_mut()))
            }
            _ => {}
        }
    }
}

/// Keeps the first `max_attributes` attributes, cutting long values; returns how many went.
fn trim_attributes(attrs: &mut Vec<KeyValue>, limits: &AttributeLimits, t: &mut Trimmed) -> usize {
    let dropped = attrs.len().saturating_sub(limits.max_attributes);
    if dropped > 0 {
        attrs.truncate(limits.max_attributes);
        attrs.shrink_to_fit();
        t.attributes += dropped as u64;
    }
    for kv in attrs.iter_mut() {
        if let Some(v) = kv.value.as_mut() {
            trim_value(v, limits, t);
        }
    }
    dropped
}

/// Applies the limits to a resource.
pub fn trim_resource(r: &mut Resource, limits: &AttributeLimits) -> Trimmed {
    let mut t = Trimmed::default();
    let d = trim_attributes(&mut r.attributes, limits, &mut t);
    add_u32(&mut r.dropped_attributes_count, d);
    t
}

/// Applies the limits to an instrumentation scope.
pub fn trim_scope(s: &mut InstrumentationScope, limits: &AttributeLimits) -> Trimmed {
    let mut t = Trimmed::default();
    let d = trim_attributes(&mut s.attributes, limits, &mut t);
    add_u32(&mut s.dropped_attributes_count, d);
    t
}

/// Applies the limits to a span, its events and its links.
pub fn trim_span(span: &mut Span, limits: &AttributeLimits) -> Trimmed {
    let mut t = Trimmed::default();
    let d = trim_attributes(&mut span.attributes, limits, &mut t);
    add_u32(&mut span.dropped_attributes_count, d);
    let events = span.events.len().saturating_sub(limits.max_events);
    if events > 0 {
        span.events.truncate(limits.max_events);
        span.events.shrink_to_fit();
        add_u32(&mut span.dropped_events_count, events);
        t.events += events as u64;
    }
    let links = span.links.len().saturating_sub(limits.max_links);
    if links > 0 {
        span.links.truncate(limits.max_links);
        span.links.shrink_to_fit();
        add_u32(&mut span.dropped_links_count, links);
        t.links += links as u64;
    }
    for e in &mut span.events {
        let d = trim_attributes(&mut e.attributes, limits, &mut t);
        add_u32(&mut e.dropped_attributes_count, d);
    }
    for l in &mut span.links {
        let d = trim_attributes(&mut l.attributes, limits, &mut t);
        add_u32(&mut l.dropped_attributes_count, d);
    }
    t
}

/// Estimated heap cost of attributes beyond their encoded bytes (nested values counted).
fn attributes_overhead(attrs: &[KeyValue]) -> u64 {
    let mut total = attrs.len() as u64 * KEY_VALUE_OVERHEAD_BYTES;
    let mut stack: Vec<&AnyValue> = attrs.iter().filter_map(|kv| kv.value.as_ref()).collect();
    while let Some(v) = stack.pop() {
        match &v.value {
            Some(Av::ArrayValue(a)) => {
                total += a.values.len() as u64 * VALUE_OVERHEAD_BYTES;
                stack.extend(a.values.iter());
            }
            Some(Av::KvlistValue(kv)) => {
                total += kv.values.len() as u64 * KEY_VALUE_OVERHEAD_BYTES;
                stack.extend(kv.values.iter().filter_map(|kv| kv.value.as_ref()));
            }
            _ => {}
        }
    }
    total
}

/// Estimated memory of one span apart from the fixed per-span overhead: its encoded length
/// (attributes, events and links included) plus the heap cost of each attribute, event and link.
pub fn span_payload_bytes(span: &Span) -> u64 {
    let mut total = span.encoded_len() as u64 + attributes_overhead(&span.attributes);
    for e in &span.events {
        total += EVENT_OVERHEAD_BYTES + attributes_overhead(&e.attributes);
    }
    for l in &span.links {
        total += EVENT_OVERHEAD_BYTES + attributes_overhead(&l.attributes);
    }
    total
}

/// Estimated memory of one resource with its schema URL.
pub fn resource_bytes(r: &Resource, schema_url: &str) -> u64 {
    SHARED_OVERHEAD_BYTES
        + r.encoded_len() as u64
        + schema_url.len() as u64
        + attributes_overhead(&r.attributes)
}

/// Estimated memory of one instrumentation scope with its schema URL.
pub fn scope_bytes(s: &InstrumentationScope, schema_url: &str) -> u64 {
    SHARED_OVERHEAD_BYTES
        + s.encoded_len() as u64
        + schema_url.len() as u64
        + attributes_overhead(&s.attributes)
}
