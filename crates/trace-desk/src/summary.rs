//! Per-trace summaries kept at intake, and the test a search runs on them before it evaluates
//! a trace.
//!
//! A [`TraceSummary`] holds the trace's time span, its shortest and longest span, which span
//! statuses and kinds occur, and a Bloom filter of the span names and attribute `(key, value)`
//! pairs of its spans, resources, scopes, events and links. [`crate::prune`] tests a query's
//! necessary condition on it. This module knows nothing of TraceQL, so the store can keep
//! summaries without depending on the query language.

use std::hash::{Hash as _, Hasher as _};

use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Av;
use opentelemetry_proto::tonic::trace::v1::Span;

/// 64-bit words in a trace's Bloom filter: 2048 bits, 256 bytes per trace (≈ 13 bytes per span
/// of a 20-span trace). With the ~30 distinct names and pairs of a typical trace and 4 probes,
/// a value the trace lacks passes with a probability of about 1e-5.
pub const BLOOM_WORDS: usize = 32;
const BLOOM_BITS: u32 = (BLOOM_WORDS * 64) as u32;
const BLOOM_PROBES: u32 = 4;

/// A fixed-size Bloom filter of hashed items.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bloom([u64; BLOOM_WORDS]);

impl Default for Bloom {
    fn default() -> Self {
        Bloom([0; BLOOM_WORDS])
    }
}

impl Bloom {
    fn probes(h: u64) -> impl Iterator<Item = u32> {
        let (a, b) = (h as u32, ((h >> 32) as u32) | 1);
        (0..BLOOM_PROBES).map(move |i| a.wrapping_add(i.wrapping_mul(b)) % BLOOM_BITS)
    }

    fn insert(&mut self, h: u64) {
        for bit in Self::probes(h) {
            self.0[(bit / 64) as usize] |= 1 << (bit % 64);
        }
    }

    /// False when the item was certainly never inserted.
    pub fn may_contain(&self, h: u64) -> bool {
        Self::probes(h).all(|bit| self.0[(bit / 64) as usize] & (1 << (bit % 64)) != 0)
    }

    /// Adds every item of `other`.
    pub fn union(&mut self, other: &Bloom) {
        for (a, b) in self.0.iter_mut().zip(other.0.iter()) {
            *a |= *b;
        }
    }

    /// Adds each attribute whose value a TraceQL equality can match.
    pub fn insert_attributes(&mut self, attrs: &[KeyValue]) {
        for kv in attrs {
            if let Some(v) = kv.value.as_ref().and_then(|v| v.value.as_ref())
                && let Some(c) = Canon::of_value(v)
            {
                self.insert(attr_hash(&kv.key, &c));
            }
        }
    }
}

/// A value in the form equality compares it: TraceQL compares ints, floats and durations as
/// numbers (`5 = 5.0`), so all three hash as the same float.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Canon<'a> {
    Str(&'a str),
    Num(u64),
    Bool(bool),
}

pub(crate) fn num(f: f64) -> Canon<'static> {
    // -0.0 = 0.0.
    Canon::Num(if f == 0.0 { 0 } else { f.to_bits() })
}

impl<'a> Canon<'a> {
    fn of_value(v: &'a Av) -> Option<Self> {
        Some(match v {
            Av::StringValue(s) => Canon::Str(s),
            Av::IntValue(n) => num(*n as f64),
            Av::DoubleValue(f) => num(*f),
            Av::BoolValue(b) => Canon::Bool(*b),
            // Never read as a TraceQL value (see the evaluator's `any_to_val`).
            _ => return None,
        })
    }
}

fn hasher() -> std::hash::DefaultHasher {
    // Fixed keys: the same item hashes the same at intake and at search.
    std::hash::DefaultHasher::new()
}

pub(crate) fn attr_hash(key: &str, v: &Canon) -> u64 {
    let mut h = hasher();
    0u8.hash(&mut h);
    key.hash(&mut h);
    match v {
        Canon::Str(s) => (0u8, s).hash(&mut h),
        Canon::Num(n) => (1u8, n).hash(&mut h),
        Canon::Bool(b) => (2u8, b).hash(&mut h),
    }
    h.finish()
}

pub(crate) fn name_hash(name: &str) -> u64 {
    let mut h = hasher();
    1u8.hash(&mut h);
    name.hash(&mut h);
    h.finish()
}

/// The bit of a status code in [`TraceSummary::statuses`], as the evaluator reads it
/// (`2` error, `1` ok, anything else unset).
pub(crate) fn status_bit(code: Option<i32>) -> u8 {
    match code {
        Some(2) => 1 << 2,
        Some(1) => 1 << 1,
        _ => 1,
    }
}

/// The bit of a span kind in [`TraceSummary::kinds`] (unknown kinds read as unspecified).
pub(crate) fn kind_bit(kind: i32) -> u8 {
    match kind {
        1..=5 => 1 << kind,
        _ => 1,
    }
}

/// What search knows about a held trace without reading its spans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceSummary {
    /// Earliest span start.
    pub start_ns: u64,
    /// Latest span end (a span ending before it starts counts its start).
    pub end_ns: u64,
    /// Shortest span duration.
    pub min_span_ns: u64,
    /// Longest span duration.
    pub max_span_ns: u64,
    /// One bit per status that occurs: 1 unset, 2 ok, 4 error.
    pub statuses: u8,
    /// One bit per span kind that occurs (bit 0 unspecified, bit k for kind k in 1..=5).
    pub kinds: u8,
    /// Span names and attribute pairs of the spans and what they were exported with.
    pub bloom: Bloom,
}

impl Default for TraceSummary {
    fn default() -> Self {
        Self {
            start_ns: u64::MAX,
            end_ns: 0,
            min_span_ns: u64::MAX,
            max_span_ns: 0,
            statuses: 0,
            kinds: 0,
            bloom: Bloom::default(),
        }
    }
}

impl TraceSummary {
    /// Counts a span (its resource and scope are added with [`TraceSummary::add_shared`]).
    pub fn add_span(&mut self, s: &Span) {
        self.start_ns = self.start_ns.min(s.start_time_unix_nano);
        self.end_ns = self
            .end_ns
            .max(s.end_time_unix_nano.max(s.start_time_unix_nano));
        let d = s.end_time_unix_nano.saturating_sub(s.start_time_unix_nano);
        self.min_span_ns = self.min_span_ns.min(d);
        self.max_span_ns = self.max_span_ns.max(d);
        self.statuses |= status_bit(s.status.as_ref().map(|st| st.code));
        self.kinds |= kind_bit(s.kind);
        self.bloom.insert(name_hash(&s.name));
        self.bloom.insert_attributes(&s.attributes);
        for e in &s.events {
            self.bloom.insert_attributes(&e.attributes);
        }
        for l in &s.links {
            self.bloom.insert_attributes(&l.attributes);
        }
    }

    /// Adds the attributes of a resource or scope some of the trace's spans were exported with.
    pub fn add_shared(&mut self, attrs: &Bloom) {
        self.bloom.union(attrs);
    }

    /// Merges another summary of spans of the same trace.
    pub fn merge(&mut self, o: &TraceSummary) {
        self.start_ns = self.start_ns.min(o.start_ns);
        self.end_ns = self.end_ns.max(o.end_ns);
        self.min_span_ns = self.min_span_ns.min(o.min_span_ns);
        self.max_span_ns = self.max_span_ns.max(o.max_span_ns);
        self.statuses |= o.statuses;
        self.kinds |= o.kinds;
        self.bloom.union(&o.bloom);
    }
}
