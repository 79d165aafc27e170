//! Evaluates a parsed query against the spans of one trace, the way Tempo's
//! engine does: a spanset filter selects the trace's matching spans (one
//! spanset per trace), spanset operators combine them, and pipeline stages
//! filter, aggregate and split spansets.

use std::cmp::Ordering;
use std::collections::HashMap;

use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Av;

use super::ast::*;
use crate::store::StoredSpan;
use crate::trace_view::{kind_text, root_span, status_text};

/// A value read from a span or computed by an aggregate.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    /// A string.
    Str(String),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A boolean.
    Bool(bool),
    /// Nanoseconds.
    Duration(u64),
    /// Absent (`by()` groups spans without the field under it).
    Nil,
}

/// One spanset of the result: span indexes into the trace, plus the values
/// `by()` and aggregates attached.
#[derive(Debug, Clone, Default)]
pub struct Spanset {
    /// Indexes into the trace's spans, in start-time order, without repeats.
    pub spans: Vec<usize>,
    /// `(key, value)` such as `("by(resource.service.name)", Str("order-api"))`.
    pub attributes: Vec<(String, Val)>,
}

/// The spans of one trace with the relations the evaluator needs.
pub struct TraceView<'a> {
    spans: &'a [StoredSpan],
    parent: Vec<Option<usize>>,
    child_count: Vec<i64>,
    trace_duration: u64,
    root_name: Option<&'a str>,
    root_service: Option<&'a str>,
    trace_id: String,
}

impl<'a> TraceView<'a> {
    /// Indexes the spans of a trace (any order).
    pub fn new(spans: &'a [StoredSpan]) -> Self {
        let index: HashMap<&[u8], usize> = spans
            .iter()
            .enumerate()
            .map(|(i, s)| (s.span.span_id.as_slice(), i))
            .collect();
        let parent: Vec<Option<usize>> = spans
            .iter()
            .enumerate()
            .map(|(i, s)| {
                if s.span.parent_span_id.is_empty() {
                    None
                } else {
                    index
                        .get(s.span.parent_span_id.as_slice())
                        .copied()
                        .filter(|p| *p != i)
                }
            })
            .collect();
        let mut child_count = vec![0i64; spans.len()];
        for p in parent.iter().flatten() {
            child_count[*p] += 1;
        }
        let start = spans.iter().map(|s| s.span.start_time_unix_nano).min();
        let end = spans
            .iter()
            .map(|s| s.span.end_time_unix_nano.max(s.span.start_time_unix_nano))
            .max();
        let trace_duration = match (start, end) {
            (Some(s), Some(e)) => e.saturating_sub(s),
            _ => 0,
        };
        let root = root_span(spans);
        Self {
            spans,
            parent,
            child_count,
            trace_duration,
            root_name: root.map(|r| r.span.name.as_str()),
            root_service: root.and_then(|r| r.service_name()),
            trace_id: spans
                .first()
                .map(|s| hex::encode(&s.span.trace_id))
                .unwrap_or_default(),
        }
    }

    /// The spans.
    pub fn spans(&self) -> &'a [StoredSpan] {
        self.spans
    }

    fn all(&self) -> Vec<usize> {
        let mut v: Vec<usize> = (0..self.spans.len()).collect();
        self.sort(&mut v);
        v
    }

    fn sort(&self, v: &mut Vec<usize>) {
        v.sort_by_key(|i| (self.spans[*i].span.start_time_unix_nano, *i));
        v.dedup();
    }

    /// True when `anc` is a proper ancestor of `span`.
    fn is_ancestor(&self, anc: usize, span: usize) -> bool {
        let mut cur = self.parent[span];
        let mut steps = 0;
        while let Some(p) = cur {
            if p == anc {
                return true;
            }
            steps += 1;
            if steps > self.spans.len() {
                return false;
            }
            cur = self.parent[p];
        }
        false
    }

    /// The value of a field on a span (`None` when absent).
    pub fn field(&self, idx: usize, field: &Field) -> Option<Val> {
        let s = &self.spans[idx];
        match field {
            Field::Intrinsic(intr) => Some(match intr {
                Intrinsic::Name => Val::Str(s.span.name.clone()),
                Intrinsic::Status => Val::Str(status_text(s).to_string()),
                Intrinsic::StatusMessage => Val::Str(
                    s.span
                        .status
                        .as_ref()
                        .map(|st| st.message.clone())
                        .unwrap_or_default(),
                ),
                Intrinsic::Kind => Val::Str(kind_text(s.span.kind).to_string()),
                Intrinsic::Duration => Val::Duration(
                    s.span
                        .end_time_unix_nano
                        .saturating_sub(s.span.start_time_unix_nano),
                ),
                Intrinsic::ChildCount => Val::Int(self.child_count[idx]),
                Intrinsic::SpanId => Val::Str(hex::encode(&s.span.span_id)),
                Intrinsic::ParentId => Val::Str(hex::encode(&s.span.parent_span_id)),
                Intrinsic::TraceDuration => Val::Duration(self.trace_duration),
                Intrinsic::RootName => Val::Str(self.root_name?.to_string()),
                Intrinsic::RootService => Val::Str(self.root_service?.to_string()),
                Intrinsic::TraceId => Val::Str(self.trace_id.clone()),
            }),
            Field::Attr { scope, name } => {
                let find = |attrs: &[KeyValue]| {
                    attrs
                        .iter()
                        .find(|kv| &kv.key == name)
                        .and_then(|kv| kv.value.as_ref())
                        .and_then(|v| v.value.as_ref())
                        .and_then(any_to_val)
                };
                match scope {
                    Scope::Span => find(&s.span.attributes),
                    Scope::Resource => find(&s.resource.attributes),
                    Scope::Any => find(&s.span.attributes).or_else(|| find(&s.resource.attributes)),
                }
            }
        }
    }

    /// The attribute to show for `field` on a span in search results, if any.
    pub fn output_attribute(&self, idx: usize, field: &Field) -> Option<(String, Val)> {
        match field {
            Field::Attr { name, .. } => self.field(idx, field).map(|v| (name.clone(), v)),
            Field::Intrinsic(Intrinsic::Status) => {
                self.field(idx, field).map(|v| ("status".to_string(), v))
            }
            Field::Intrinsic(Intrinsic::Kind) => {
                self.field(idx, field).map(|v| ("kind".to_string(), v))
            }
            Field::Intrinsic(Intrinsic::StatusMessage) => match self.field(idx, field) {
                Some(Val::Str(m)) if !m.is_empty() => {
                    Some(("statusMessage".to_string(), Val::Str(m)))
                }
                _ => None,
            },
            Field::Intrinsic(_) => None,
        }
    }
}

fn any_to_val(v: &Av) -> Option<Val> {
    match v {
        Av::StringValue(s) => Some(Val::Str(s.clone())),
        Av::IntValue(n) => Some(Val::Int(*n)),
        Av::DoubleValue(f) => Some(Val::Float(*f)),
        Av::BoolValue(b) => Some(Val::Bool(*b)),
        _ => None,
    }
}

fn num(v: &Val) -> Option<f64> {
    match v {
        Val::Int(n) => Some(*n as f64),
        Val::Float(f) => Some(*f),
        Val::Duration(d) => Some(*d as f64),
        _ => None,
    }
}

/// Compares a span's value with a literal; mismatched types never match.
fn compare(value: &Val, c: &Comparison) -> bool {
    if let Some(re) = &c.regex {
        return match value {
            Val::Str(s) => re.is_match(s) == (c.op == CmpOp::Re),
            _ => false,
        };
    }
    match (value, &c.value) {
        (_, Literal::Nil) => c.op == CmpOp::Ne,
        (Val::Str(s), Literal::Str(l)) => c.op.holds(s.as_str().cmp(l.as_str())),
        // Status and kind intrinsics are read as their keyword text.
        (Val::Str(s), Literal::Status(code)) => {
            let want = match code {
                1 => "ok",
                2 => "error",
                _ => "unset",
            };
            c.op.holds(s.as_str().cmp(want))
        }
        (Val::Str(s), Literal::Kind(k)) => c.op.holds(s.as_str().cmp(kind_text(*k))),
        (Val::Bool(b), Literal::Bool(l)) => match c.op {
            CmpOp::Eq => b == l,
            CmpOp::Ne => b != l,
            _ => false,
        },
        (Val::Int(n), Literal::Int(l)) => c.op.holds(n.cmp(l)),
        (v, l) => match (num(v), l.as_f64()) {
            (Some(a), Some(b)) => a.partial_cmp(&b).is_some_and(|o| c.op.holds(o)),
            _ => false,
        },
    }
}

fn matches(view: &TraceView, idx: usize, e: &FieldExpr) -> bool {
    match e {
        FieldExpr::Const(b) => *b,
        FieldExpr::Cmp(c) => match view.field(idx, &c.field) {
            Some(v) => compare(&v, c),
            None => false,
        },
        FieldExpr::And(a, b) => matches(view, idx, a) && matches(view, idx, b),
        FieldExpr::Or(a, b) => matches(view, idx, a) || matches(view, idx, b),
        FieldExpr::Not(a) => !matches(view, idx, a),
    }
}

fn union(view: &TraceView, a: &Spanset, b: &Spanset) -> Spanset {
    let mut spans = a.spans.clone();
    spans.extend_from_slice(&b.spans);
    view.sort(&mut spans);
    let mut attributes = a.attributes.clone();
    for kv in &b.attributes {
        if !attributes.iter().any(|(k, _)| k == &kv.0) {
            attributes.push(kv.clone());
        }
    }
    Spanset { spans, attributes }
}

fn related(view: &TraceView, rel: Relation, l: usize, r: usize) -> bool {
    match rel {
        Relation::Child => view.parent[r] == Some(l),
        Relation::Parent => view.parent[l] == Some(r),
        Relation::Descendant => view.is_ancestor(l, r),
        Relation::Ancestor => view.is_ancestor(r, l),
        Relation::Sibling => l != r && view.parent[l].is_some() && view.parent[l] == view.parent[r],
    }
}

/// Evaluates a spanset expression over `candidates`; `None` when it selects nothing.
fn eval_spanset(view: &TraceView, e: &SpansetExpr, candidates: &[usize]) -> Option<Spanset> {
    match e {
        SpansetExpr::Filter(f) => {
            let spans: Vec<usize> = candidates
                .iter()
                .copied()
                .filter(|i| matches(view, *i, f))
                .collect();
            (!spans.is_empty()).then(|| Spanset {
                spans,
                attributes: Vec::new(),
            })
        }
        SpansetExpr::Pipeline(p) => {
            let sets = eval_pipeline(view, p, candidates);
            let mut out: Option<Spanset> = None;
            for s in sets {
                out = Some(match out {
                    None => s,
                    Some(acc) => union(view, &acc, &s),
                });
            }
            out.filter(|s| !s.spans.is_empty())
        }
        SpansetExpr::Op(op, a, b) => {
            let lhs = eval_spanset(view, a, candidates);
            let rhs = eval_spanset(view, b, candidates);
            match op {
                SpansetOp::And => match (lhs, rhs) {
                    (Some(l), Some(r)) => Some(union(view, &l, &r)),
                    _ => None,
                },
                SpansetOp::Or => match (lhs, rhs) {
                    (Some(l), Some(r)) => Some(union(view, &l, &r)),
                    (Some(s), None) | (None, Some(s)) => Some(s),
                    (None, None) => None,
                },
                SpansetOp::Structural { rel, union: both } => {
                    let (l, r) = (lhs?, rhs?);
                    let mut spans = Vec::new();
                    for &ri in &r.spans {
                        let mut hit = false;
                        for &li in &l.spans {
                            if related(view, *rel, li, ri) {
                                hit = true;
                                if *both {
                                    spans.push(li);
                                }
                            }
                        }
                        if hit {
                            spans.push(ri);
                        }
                    }
                    view.sort(&mut spans);
                    (!spans.is_empty()).then(|| Spanset {
                        spans,
                        attributes: union(view, &l, &r).attributes,
                    })
                }
            }
        }
    }
}

fn aggregate(view: &TraceView, agg: &Aggregate, spans: &[usize]) -> Option<Val> {
    match agg {
        Aggregate::Count => Some(Val::Int(spans.len() as i64)),
        Aggregate::Over(func, field) => {
            let values: Vec<f64> = spans
                .iter()
                .filter_map(|i| view.field(*i, field))
                .filter_map(|v| num(&v))
                .collect();
            if values.is_empty() {
                return None;
            }
            let v = match func {
                AggFn::Sum => values.iter().sum(),
                AggFn::Avg => values.iter().sum::<f64>() / values.len() as f64,
                AggFn::Min => values.iter().copied().fold(f64::INFINITY, f64::min),
                AggFn::Max => values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            };
            Some(Val::Float(v))
        }
    }
}

fn eval_pipeline(view: &TraceView, p: &Pipeline, candidates: &[usize]) -> Vec<Spanset> {
    let mut sets: Vec<Spanset> = eval_spanset(view, &p.head, candidates)
        .into_iter()
        .collect();
    for stage in &p.stages {
        if sets.is_empty() {
            break;
        }
        sets = match stage {
            Stage::Filter(e) => sets
                .into_iter()
                .filter_map(|s| {
                    eval_spanset(view, e, &s.spans).map(|mut out| {
                        let mut attrs = s.attributes.clone();
                        attrs.append(&mut out.attributes);
                        out.attributes = attrs;
                        out
                    })
                })
                .collect(),
            Stage::Scalar {
                aggregate: agg,
                op,
                value,
            } => sets
                .into_iter()
                .filter_map(|mut s| {
                    let v = aggregate(view, agg, &s.spans)?;
                    let x = num(&v)?;
                    let ord = x.partial_cmp(value)?;
                    op.holds(ord).then(|| {
                        s.attributes.push((agg.label(), v));
                        s
                    })
                })
                .collect(),
            Stage::By(field) => {
                let key = format!("by({})", field.label());
                let mut out: Vec<(Val, Spanset)> = Vec::new();
                for s in sets {
                    let mut groups: Vec<(Val, Spanset)> = Vec::new();
                    for &i in &s.spans {
                        let v = view.field(i, field).unwrap_or(Val::Nil);
                        match groups.iter_mut().find(|(g, _)| *g == v) {
                            Some((_, g)) => g.spans.push(i),
                            None => {
                                let mut attributes = s.attributes.clone();
                                attributes.push((key.clone(), v.clone()));
                                groups.push((
                                    v,
                                    Spanset {
                                        spans: vec![i],
                                        attributes,
                                    },
                                ));
                            }
                        }
                    }
                    out.extend(groups);
                }
                out.into_iter().map(|(_, s)| s).collect()
            }
            Stage::Select(_) => sets,
            Stage::Coalesce => {
                let mut merged = Spanset::default();
                for s in &sets {
                    merged.spans.extend_from_slice(&s.spans);
                }
                view.sort(&mut merged.spans);
                vec![merged]
            }
        };
    }
    sets.retain(|s| !s.spans.is_empty());
    sets
}

/// Runs a query on one trace: the spansets it yields (empty: no match).
pub fn run(query: &Query, view: &TraceView) -> Vec<Spanset> {
    let all = view.all();
    eval_pipeline(view, &query.pipeline, &all)
}

impl PartialOrd for Val {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        match (self, other) {
            (Val::Str(a), Val::Str(b)) => a.partial_cmp(b),
            (a, b) => num(a)?.partial_cmp(&num(b)?),
        }
    }
}
