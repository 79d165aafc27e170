//! Per-trace summaries kept at intake, and the test a search runs on them before it evaluates
//! a trace.
//!
//! A [`TraceSummary`] holds the trace's time span, its shortest and longest span, which span
//! statuses and kinds occur, and a Bloom filter of the span names and attribute `(key, value)`
//! pairs of its spans, resources, scopes, events and links. A [`Need`] is a condition derived
//! from a TraceQL query that every trace the query matches satisfies (a necessary condition,
//! never a sufficient one): a trace whose summary fails it cannot match, so search skips it
//! without reading its spans. Only constructs where that is provably so are translated; any
//! other part of a query becomes [`Need::Any`], which rules nothing out.

use std::hash::{Hash as _, Hasher as _};

use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Av;
use opentelemetry_proto::tonic::trace::v1::Span;

use crate::traceql::ast::{
    CmpOp, Field, FieldExpr, Intrinsic, Literal, Pipeline, Query, SpansetExpr, SpansetOp, Stage,
};

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
enum Canon<'a> {
    Str(&'a str),
    Num(u64),
    Bool(bool),
}

fn num(f: f64) -> Canon<'static> {
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

    fn of_literal(l: &'a Literal) -> Option<Self> {
        Some(match l {
            Literal::Str(s) => Canon::Str(s),
            Literal::Int(n) => num(*n as f64),
            Literal::Float(f) => num(*f),
            Literal::Duration(d) => num(*d as f64),
            Literal::Bool(b) => Canon::Bool(*b),
            // Status and kind literals compare with strings as keywords; nil never equals.
            Literal::Nil | Literal::Status(_) | Literal::Kind(_) => return None,
        })
    }
}

fn hasher() -> std::hash::DefaultHasher {
    // Fixed keys: the same item hashes the same at intake and at search.
    std::hash::DefaultHasher::new()
}

fn attr_hash(key: &str, v: &Canon) -> u64 {
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

fn name_hash(name: &str) -> u64 {
    let mut h = hasher();
    1u8.hash(&mut h);
    name.hash(&mut h);
    h.finish()
}

/// The bit of a status code in [`TraceSummary::statuses`], as the evaluator reads it
/// (`2` error, `1` ok, anything else unset).
fn status_bit(code: Option<i32>) -> u8 {
    match code {
        Some(2) => 1 << 2,
        Some(1) => 1 << 1,
        _ => 1,
    }
}

/// The bit of a span kind in [`TraceSummary::kinds`] (unknown kinds read as unspecified).
fn kind_bit(kind: i32) -> u8 {
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

/// A necessary condition for a trace to match a query, tested on its [`TraceSummary`].
#[derive(Debug, Clone, PartialEq)]
pub enum Need {
    /// Rules nothing out.
    Any,
    /// No trace matches.
    Never,
    /// A span name or attribute pair (hashed) in the Bloom filter.
    Item(u64),
    /// Some span with one of these statuses ([`TraceSummary::statuses`] bits).
    Status(u8),
    /// Some span with one of these kinds ([`TraceSummary::kinds`] bits).
    Kind(u8),
    /// Some span whose duration compares with the number (nanoseconds) by the operator
    /// (`>`, `>=`, `<`, `<=` only).
    Duration(CmpOp, f64),
    /// Both.
    And(Box<Need>, Box<Need>),
    /// Either.
    Or(Box<Need>, Box<Need>),
}

impl Need {
    fn and(a: Need, b: Need) -> Need {
        match (a, b) {
            (Need::Never, _) | (_, Need::Never) => Need::Never,
            (Need::Any, x) | (x, Need::Any) => x,
            (a, b) => Need::And(Box::new(a), Box::new(b)),
        }
    }

    fn or(a: Need, b: Need) -> Need {
        match (a, b) {
            (Need::Any, _) | (_, Need::Any) => Need::Any,
            (Need::Never, x) | (x, Need::Never) => x,
            (a, b) => Need::Or(Box::new(a), Box::new(b)),
        }
    }

    /// The condition for a whole query. A query's answer is non-empty only when its first
    /// spanset expression selects spans, and each filter stage keeps only spans it selects
    /// too; aggregates, `by`, `select` and `coalesce` add no spans.
    pub fn of_query(q: &Query) -> Need {
        Self::of_pipeline(&q.pipeline)
    }

    fn of_pipeline(p: &Pipeline) -> Need {
        let mut need = Self::of_spanset(&p.head);
        for stage in &p.stages {
            if let Stage::Filter(e) = stage {
                need = Self::and(need, Self::of_spanset(e));
            }
        }
        need
    }

    fn of_spanset(e: &SpansetExpr) -> Need {
        match e {
            // A filter selects spans only if one span satisfies it.
            SpansetExpr::Filter(f) => Self::of_span(f),
            SpansetExpr::Pipeline(p) => Self::of_pipeline(p),
            SpansetExpr::Op(op, a, b) => {
                let (a, b) = (Self::of_spanset(a), Self::of_spanset(b));
                match op {
                    SpansetOp::Or => Self::or(a, b),
                    // `&&` and every structural form (negated ones too) need both sides.
                    SpansetOp::And | SpansetOp::Structural { .. } => Self::and(a, b),
                }
            }
        }
    }

    /// What the trace must hold for one of its spans to satisfy `f`.
    fn of_span(f: &FieldExpr) -> Need {
        match f {
            FieldExpr::Const(true) => Need::Any,
            FieldExpr::Const(false) => Need::Never,
            FieldExpr::And(a, b) => Self::and(Self::of_span(a), Self::of_span(b)),
            FieldExpr::Or(a, b) => Self::or(Self::of_span(a), Self::of_span(b)),
            FieldExpr::Cmp(c) if c.regex.is_none() => match (&c.field, c.op, &c.value) {
                (Field::Attr { name, .. }, CmpOp::Eq, lit) => match Canon::of_literal(lit) {
                    Some(v) => Need::Item(attr_hash(name, &v)),
                    None => Need::Any,
                },
                (Field::Intrinsic(Intrinsic::Name), CmpOp::Eq, Literal::Str(s)) => {
                    Need::Item(name_hash(s))
                }
                (Field::Intrinsic(Intrinsic::Status), op, Literal::Status(code)) => {
                    let bit = status_bit(Some(*code));
                    match op {
                        CmpOp::Eq => Need::Status(bit),
                        CmpOp::Ne => Need::Status(0b111 & !bit),
                        _ => Need::Any,
                    }
                }
                (Field::Intrinsic(Intrinsic::Kind), op, Literal::Kind(k)) => {
                    let bit = kind_bit(*k);
                    match op {
                        CmpOp::Eq => Need::Kind(bit),
                        CmpOp::Ne => Need::Kind(0b11_1111 & !bit),
                        _ => Need::Any,
                    }
                }
                (
                    Field::Intrinsic(Intrinsic::Duration),
                    op @ (CmpOp::Gt | CmpOp::Ge | CmpOp::Lt | CmpOp::Le),
                    lit,
                ) => match lit.as_f64() {
                    Some(x) => Need::Duration(op, x),
                    None => Need::Any,
                },
                _ => Need::Any,
            },
            // Negations, regexes and general comparisons: no cheap necessary condition.
            _ => Need::Any,
        }
    }

    /// False when no trace with this summary can match.
    pub fn holds(&self, s: &TraceSummary) -> bool {
        match self {
            Need::Any => true,
            Need::Never => false,
            Need::Item(h) => s.bloom.may_contain(*h),
            Need::Status(mask) => s.statuses & mask != 0,
            Need::Kind(mask) => s.kinds & mask != 0,
            // The evaluator compares `duration as f64` with the number; the conversion keeps
            // order, so the longest (shortest) span decides whether any span can pass.
            Need::Duration(op, x) => {
                let d = match op {
                    CmpOp::Gt | CmpOp::Ge => s.max_span_ns,
                    _ => s.min_span_ns,
                };
                (d as f64).partial_cmp(x).is_some_and(|o| op.holds(o))
            }
            Need::And(a, b) => a.holds(s) && b.holds(s),
            Need::Or(a, b) => a.holds(s) || b.holds(s),
        }
    }
}
