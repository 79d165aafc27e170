//! A query's necessary condition on a trace's [`TraceSummary`]: a [`Need`] is derived from a
//! TraceQL query so that every trace the query matches satisfies it (necessary, never
//! sufficient): a trace whose summary fails it cannot match, so search skips it without reading
//! its spans. Only constructs where that is provably so are translated; any other part of a
//! query becomes [`Need::Any`], which rules nothing out.

use crate::summary::{Canon, TraceSummary, attr_hash, kind_bit, name_hash, num, status_bit};
use crate::traceql::ast::{
    CmpOp, Field, FieldExpr, Intrinsic, Literal, Pipeline, Query, SpansetExpr, SpansetOp, Stage,
};

/// A literal as the summary hashes attribute values.
fn canon_of_literal(l: &Literal) -> Option<Canon<'_>> {
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
                (Field::Attr { name, .. }, CmpOp::Eq, lit) => match canon_of_literal(lit) {
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
