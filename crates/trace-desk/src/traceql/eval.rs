//! Evaluates a parsed query against the spans of one trace, the way Tempo's
//! engine does: a spanset filter selects the trace's matching spans (one
//! spanset per trace), spanset operators combine them, and pipeline stages
//! filter, aggregate and split spansets.

use std::cell::{Cell, OnceCell};
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

/// The spans of one trace with the relations the evaluator needs, each computed on first use
/// (a plain spanset filter reads none of them).
pub struct TraceView<'a> {
    spans: &'a [StoredSpan],
    relations: OnceCell<Relations>,
    /// `(duration, root span)`.
    trace_facts: OnceCell<(u64, Option<&'a StoredSpan>)>,
    trace_id: OnceCell<String>,
    /// `(nestedSetLeft, nestedSetRight, nestedSetParent)` per span, computed on first use.
    nested: OnceCell<Vec<[i64; 3]>>,
    /// Elementary steps taken by the structural operators (tree building included), so tests
    /// can assert the work is linear in the spans of the trace without timing it.
    work: Cell<u64>,
}

/// Parent links between the spans of a trace.
struct Relations {
    parent: Vec<Option<usize>>,
    child_count: Vec<i64>,
    /// The span tree the structural operators walk: `parent`, with each parent cycle cut at
    /// one span so every span has a single root.
    tree_parent: Vec<Option<usize>>,
    /// Every span once, each after its (tree) parent: a DFS pre-order of the tree.
    preorder: Vec<usize>,
}

/// Parents before children: DFS pre-order from each root, then from one span of each parent
/// cycle (whose parent link is cut in the returned tree). Iterative, O(spans).
fn span_tree(parent: &[Option<usize>]) -> (Vec<Option<usize>>, Vec<usize>) {
    let n = parent.len();
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, p) in parent.iter().enumerate() {
        if let Some(p) = p {
            children[*p].push(i);
        }
    }
    let mut tree_parent = parent.to_vec();
    let mut visited = vec![false; n];
    let mut preorder = Vec::with_capacity(n);
    let mut stack: Vec<usize> = Vec::new();
    let mut dfs = |root: usize,
                   visited: &mut Vec<bool>,
                   preorder: &mut Vec<usize>,
                   tree_parent: &[Option<usize>]| {
        stack.push(root);
        while let Some(v) = stack.pop() {
            if visited[v] {
                continue;
            }
            visited[v] = true;
            preorder.push(v);
            for &c in children[v].iter().rev() {
                if !visited[c] && tree_parent[c] == Some(v) {
                    stack.push(c);
                }
            }
        }
    };
    for (i, p) in parent.iter().enumerate() {
        if p.is_none() {
            dfs(i, &mut visited, &mut preorder, &tree_parent);
        }
    }
    // What is left hangs below a parent cycle: walk up to the cycle and cut it there.
    let mut walked = vec![false; n];
    for i in 0..n {
        if visited[i] {
            continue;
        }
        let mut x = i;
        while let Some(p) = tree_parent[x] {
            if walked[p] || visited[p] {
                break;
            }
            walked[x] = true;
            x = p;
        }
        walked[x] = true;
        tree_parent[x] = None;
        dfs(x, &mut visited, &mut preorder, &tree_parent);
    }
    (tree_parent, preorder)
}

impl<'a> TraceView<'a> {
    /// A view of the spans of a trace (any order).
    pub fn new(spans: &'a [StoredSpan]) -> Self {
        Self {
            spans,
            relations: OnceCell::new(),
            trace_facts: OnceCell::new(),
            trace_id: OnceCell::new(),
            nested: OnceCell::new(),
            work: Cell::new(0),
        }
    }

    fn relations(&self) -> &Relations {
        self.relations.get_or_init(|| {
            let spans = self.spans;
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
            let (tree_parent, preorder) = span_tree(&parent);
            self.count(spans.len());
            Relations {
                parent,
                child_count,
                tree_parent,
                preorder,
            }
        })
    }

    fn trace_facts(&self) -> (u64, Option<&'a StoredSpan>) {
        *self.trace_facts.get_or_init(|| {
            let spans = self.spans;
            let start = spans.iter().map(|s| s.span.start_time_unix_nano).min();
            let end = spans
                .iter()
                .map(|s| s.span.end_time_unix_nano.max(s.span.start_time_unix_nano))
                .max();
            let duration = match (start, end) {
                (Some(s), Some(e)) => e.saturating_sub(s),
                _ => 0,
            };
            (duration, root_span(spans))
        })
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

    /// Steps taken by the structural operators so far (see [`TraceView::new`]); for tests and
    /// benchmarks that check the work grows linearly with the trace.
    pub fn work(&self) -> u64 {
        self.work.get()
    }

    fn count(&self, steps: usize) {
        self.work.set(self.work.get() + steps as u64);
    }

    /// `mark` as a per-span flag vector.
    fn flags(&self, spans: &[usize]) -> Vec<bool> {
        let mut f = vec![false; self.spans.len()];
        for &i in spans {
            f[i] = true;
        }
        self.count(spans.len());
        f
    }

    /// For every span: does a proper ancestor carry a flag? One pre-order sweep.
    fn below_flagged(&self, flag: &[bool]) -> Vec<bool> {
        let rel = self.relations();
        let mut out = vec![false; self.spans.len()];
        for &v in &rel.preorder {
            if let Some(p) = rel.tree_parent[v] {
                out[v] = out[p] || flag[p];
            }
        }
        self.count(rel.preorder.len());
        out
    }

    /// For every span: does a proper descendant carry a flag? One reverse pre-order sweep.
    fn above_flagged(&self, flag: &[bool]) -> Vec<bool> {
        let rel = self.relations();
        let mut out = vec![false; self.spans.len()];
        for &v in rel.preorder.iter().rev() {
            if let Some(p) = rel.tree_parent[v]
                && (flag[v] || out[v])
            {
                out[p] = true;
            }
        }
        self.count(rel.preorder.len());
        out
    }

    /// For every span: how many flagged spans have it as their parent.
    fn flagged_children(&self, spans: &[usize]) -> Vec<u32> {
        let parent = &self.relations().parent;
        let mut out = vec![0u32; self.spans.len()];
        for &i in spans {
            if let Some(p) = parent[i] {
                out[p] += 1;
            }
        }
        self.count(spans.len());
        out
    }

    /// The spans of `r` related to some span of `l` by `rel` and, for the `&` forms, the spans
    /// of `l` related to some span of `r`: each side a few linear sweeps over the trace
    /// instead of comparing every pair.
    /// `negated` (`!>` etc., never with `both`) keeps the spans of `r` *not* so related, as
    /// Tempo's `falseForAll` does.
    fn structural(
        &self,
        rel: Relation,
        both: bool,
        negated: bool,
        l: &[usize],
        r: &[usize],
    ) -> Vec<usize> {
        let parent = &self.relations().parent;
        // (does r match, does l match) as per-span predicates.
        let (r_hit, l_hit): (Vec<bool>, Vec<bool>) = match rel {
            Relation::Child => {
                let in_l = self.flags(l);
                let r_hit = (0..self.spans.len())
                    .map(|i| parent[i].is_some_and(|p| in_l[p]))
                    .collect();
                let l_hit = if both {
                    self.flagged_children(r).iter().map(|c| *c > 0).collect()
                } else {
                    Vec::new()
                };
                (r_hit, l_hit)
            }
            Relation::Parent => {
                let r_hit = self.flagged_children(l).iter().map(|c| *c > 0).collect();
                let l_hit = if both {
                    let in_r = self.flags(r);
                    (0..self.spans.len())
                        .map(|i| parent[i].is_some_and(|p| in_r[p]))
                        .collect()
                } else {
                    Vec::new()
                };
                (r_hit, l_hit)
            }
            Relation::Descendant => {
                let r_hit = self.below_flagged(&self.flags(l));
                let l_hit = if both {
                    self.above_flagged(&self.flags(r))
                } else {
                    Vec::new()
                };
                (r_hit, l_hit)
            }
            Relation::Ancestor => {
                let r_hit = self.above_flagged(&self.flags(l));
                let l_hit = if both {
                    self.below_flagged(&self.flags(r))
                } else {
                    Vec::new()
                };
                (r_hit, l_hit)
            }
            Relation::Sibling => {
                // A sibling is another span with the same (known) parent.
                let siblings = |of: &[usize], from: &[usize]| -> Vec<bool> {
                    let per_parent = self.flagged_children(from);
                    let in_from = self.flags(from);
                    let mut hit = vec![false; self.spans.len()];
                    for &i in of {
                        if let Some(p) = parent[i] {
                            hit[i] = per_parent[p] > u32::from(in_from[i]);
                        }
                    }
                    self.count(of.len());
                    hit
                };
                let r_hit = siblings(r, l);
                let l_hit = if both { siblings(l, r) } else { Vec::new() };
                (r_hit, l_hit)
            }
        };
        let mut out: Vec<usize> = r.iter().copied().filter(|i| r_hit[*i] != negated).collect();
        if both {
            out.extend(l.iter().copied().filter(|i| l_hit[*i]));
        }
        self.count(r.len() + if both { l.len() } else { 0 });
        out
    }

    /// Tempo's nested-set numbering (its vparquet `assignNestedSetModelBounds`): from each true
    /// root (no parent id) in stored order, depth first with children in stored order, a
    /// counter from 1 gives each span its left bound on the way down and its right bound on
    /// the way up; `nestedSetParent` is the parent's left bound, -1 for a root. Spans no root
    /// reaches (orphans, cycles) keep 0, 0, 0, as Tempo leaves them. O(spans), once per trace.
    fn nested_set(&self) -> &[[i64; 3]] {
        self.nested.get_or_init(|| {
            let n = self.spans.len();
            let mut children: Vec<Vec<usize>> = vec![Vec::new(); n];
            for (i, p) in self.relations().tree_parent.iter().enumerate() {
                if let Some(p) = p {
                    children[*p].push(i);
                }
            }
            let mut out = vec![[0i64; 3]; n];
            let mut bound = 1i64;
            // (span, next child to visit)
            let mut stack: Vec<(usize, usize)> = Vec::new();
            for root in (0..n).filter(|i| self.spans[*i].span.parent_span_id.is_empty()) {
                out[root][0] = bound;
                out[root][2] = -1;
                bound += 1;
                stack.push((root, 0));
                while let Some((v, next)) = stack.last_mut() {
                    let v = *v;
                    if let Some(&c) = children[v].get(*next) {
                        *next += 1;
                        out[c][0] = bound;
                        out[c][2] = out[v][0];
                        bound += 1;
                        stack.push((c, 0));
                    } else {
                        out[v][1] = bound;
                        bound += 1;
                        stack.pop();
                    }
                }
            }
            self.count(n);
            out
        })
    }

    /// The value of a field on a span (`None` when absent); for event and link fields, the
    /// first event's or link's.
    pub fn field(&self, idx: usize, field: &Field) -> Option<Val> {
        let mut first = None;
        self.any_value(idx, field, &mut |v| {
            first = Some(v);
            true
        });
        first
    }

    /// Calls `f` with each value of the field on the span (one for most fields, one per event
    /// or link for those scopes) until it returns true; true when it did.
    pub fn any_value(&self, idx: usize, field: &Field, f: &mut dyn FnMut(Val) -> bool) -> bool {
        let s = &self.spans[idx];
        let hex_val = |b: &[u8]| Val::Str(hex::encode(b));
        let one = |v: Option<Val>, f: &mut dyn FnMut(Val) -> bool| v.is_some_and(f);
        match field {
            Field::Intrinsic(intr) => match intr {
                Intrinsic::EventName => s.span.events.iter().any(|e| f(Val::Str(e.name.clone()))),
                Intrinsic::EventTimeSinceStart => s.span.events.iter().any(|e| {
                    f(Val::Duration(
                        e.time_unix_nano.saturating_sub(s.span.start_time_unix_nano),
                    ))
                }),
                Intrinsic::LinkTraceId => s.span.links.iter().any(|l| f(hex_val(&l.trace_id))),
                Intrinsic::LinkSpanId => s.span.links.iter().any(|l| f(hex_val(&l.span_id))),
                Intrinsic::InstrumentationName => one(Some(Val::Str(s.scope.name.clone())), f),
                Intrinsic::InstrumentationVersion => {
                    one(Some(Val::Str(s.scope.version.clone())), f)
                }
                Intrinsic::NestedSetLeft => one(Some(Val::Int(self.nested_set()[idx][0])), f),
                Intrinsic::NestedSetRight => one(Some(Val::Int(self.nested_set()[idx][1])), f),
                Intrinsic::NestedSetParent => one(Some(Val::Int(self.nested_set()[idx][2])), f),
                other => one(self.span_intrinsic(idx, *other), f),
            },
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
                    Scope::Span => one(find(&s.span.attributes), f),
                    Scope::Resource => one(find(&s.resource.attributes), f),
                    Scope::Instrumentation => one(find(&s.scope.attributes), f),
                    Scope::Any => one(
                        find(&s.span.attributes).or_else(|| find(&s.resource.attributes)),
                        f,
                    ),
                    Scope::Event => s.span.events.iter().any(|e| one(find(&e.attributes), f)),
                    Scope::Link => s.span.links.iter().any(|l| one(find(&l.attributes), f)),
                }
            }
        }
    }

    /// The single-valued intrinsics of the span and its trace.
    fn span_intrinsic(&self, idx: usize, intr: Intrinsic) -> Option<Val> {
        let s = &self.spans[idx];
        Some(match intr {
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
            Intrinsic::ChildCount => Val::Int(self.relations().child_count[idx]),
            Intrinsic::SpanId => Val::Str(hex::encode(&s.span.span_id)),
            Intrinsic::ParentId => Val::Str(hex::encode(&s.span.parent_span_id)),
            Intrinsic::TraceDuration => Val::Duration(self.trace_facts().0),
            Intrinsic::RootName => Val::Str(self.trace_facts().1?.span.name.clone()),
            Intrinsic::RootService => Val::Str(self.trace_facts().1?.service_name()?.to_string()),
            Intrinsic::TraceId => Val::Str(
                self.trace_id
                    .get_or_init(|| {
                        // Held spans may lack their copy of the id (see `StoredSpan::span`).
                        self.spans
                            .iter()
                            .find(|s| !s.span.trace_id.is_empty())
                            .map(|s| hex::encode(&s.span.trace_id))
                            .unwrap_or_default()
                    })
                    .clone(),
            ),
            // Multi-valued and nested-set intrinsics are read by `any_value`.
            _ => return None,
        })
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
        // Present: `!= nil` holds, `= nil` does not.
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

/// A literal as a span value (status and kind as their keywords, as the intrinsics read).
pub(crate) fn lit_val(l: &Literal) -> Option<Val> {
    Some(match l {
        Literal::Str(s) => Val::Str(s.clone()),
        Literal::Int(n) => Val::Int(*n),
        Literal::Float(f) => Val::Float(*f),
        Literal::Duration(d) => match u64::try_from(*d) {
            Ok(d) => Val::Duration(d),
            Err(_) => Val::Float(*d as f64),
        },
        Literal::Bool(b) => Val::Bool(*b),
        Literal::Nil => return None,
        Literal::Status(code) => Val::Str(
            match code {
                1 => "ok",
                2 => "error",
                _ => "unset",
            }
            .to_string(),
        ),
        Literal::Kind(k) => Val::Str(kind_text(*k).to_string()),
    })
}

/// Evaluates arithmetic the way Tempo's engine does: int op int stays an int, anything else
/// numeric is a float (durations in nanoseconds); a missing operand, a non-number, a division
/// by zero or an overflow yields nothing, so the comparison does not hold.
fn value(view: &TraceView, idx: usize, v: &ValueExpr) -> Option<Val> {
    match v {
        ValueExpr::Field(f) => view.field(idx, f),
        ValueExpr::Lit(l) => lit_val(l),
        ValueExpr::Neg(a) => match value(view, idx, a)? {
            Val::Int(n) => n.checked_neg().map(Val::Int),
            other => num(&other).map(|f| Val::Float(-f)),
        },
        ValueExpr::Arith(op, a, b) => {
            let (a, b) = (value(view, idx, a)?, value(view, idx, b)?);
            if let (Val::Int(x), Val::Int(y)) = (&a, &b) {
                return match op {
                    ArithOp::Add => x.checked_add(*y),
                    ArithOp::Sub => x.checked_sub(*y),
                    ArithOp::Mul => x.checked_mul(*y),
                    ArithOp::Div => x.checked_div(*y),
                    ArithOp::Mod => x.checked_rem(*y),
                    ArithOp::Pow => match u32::try_from(*y) {
                        Ok(e) => x.checked_pow(e),
                        Err(_) => return Some(Val::Float((*x as f64).powf(*y as f64))),
                    },
                }
                .map(Val::Int);
            }
            Some(Val::Float(op.apply_f64(num(&a)?, num(&b)?)))
        }
    }
}

/// Compares two computed values; mismatched types never match.
pub(crate) fn compare_vals(a: &Val, op: CmpOp, b: &Val, regex: Option<&regex::Regex>) -> bool {
    if let Some(re) = regex {
        return match a {
            Val::Str(s) => re.is_match(s) == (op == CmpOp::Re),
            _ => false,
        };
    }
    match (a, b) {
        (Val::Str(x), Val::Str(y)) => op.holds(x.as_str().cmp(y.as_str())),
        (Val::Bool(x), Val::Bool(y)) => match op {
            CmpOp::Eq => x == y,
            CmpOp::Ne => x != y,
            _ => false,
        },
        (Val::Int(x), Val::Int(y)) => op.holds(x.cmp(y)),
        (x, y) => match (num(x), num(y)) {
            (Some(x), Some(y)) => x.partial_cmp(&y).is_some_and(|o| op.holds(o)),
            _ => false,
        },
    }
}

fn matches(view: &TraceView, idx: usize, e: &FieldExpr) -> bool {
    match e {
        FieldExpr::Const(b) => *b,
        // `= nil`: no value at all (no event or link has it, for those scopes).
        FieldExpr::Cmp(c) if c.value == Literal::Nil => {
            view.any_value(idx, &c.field, &mut |_| true) == (c.op == CmpOp::Ne)
        }
        // Any value (any event's, any link's) satisfying the comparison.
        FieldExpr::Cmp(c) => view.any_value(idx, &c.field, &mut |v| compare(&v, c)),
        FieldExpr::Compare(c) => match (value(view, idx, &c.lhs), value(view, idx, &c.rhs)) {
            (Some(a), Some(b)) => compare_vals(&a, c.op, &b, c.regex.as_ref()),
            _ => false,
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
                SpansetOp::Structural {
                    rel,
                    union: both,
                    negated,
                } => {
                    // Both sides must yield a spanset, the negated forms too (Tempo's
                    // joinSpansets returns nothing when either side is empty).
                    let (l, r) = (lhs?, rhs?);
                    let mut spans = view.structural(*rel, *both, *negated, &l.spans, &r.spans);
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
                .filter_map(|i| value(view, *i, &field.expr))
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
                let key = format!("by({})", field.label);
                let mut out: Vec<(Val, Spanset)> = Vec::new();
                for s in sets {
                    let mut groups: Vec<(Val, Spanset)> = Vec::new();
                    // Group index by value, so many distinct values stay linear.
                    let mut index: HashMap<GroupKey, usize> = HashMap::new();
                    for &i in &s.spans {
                        let v = value(view, i, &field.expr).unwrap_or(Val::Nil);
                        match index.get(&GroupKey::of(&v)).copied() {
                            Some(g) => groups[g].1.spans.push(i),
                            None => {
                                index.insert(GroupKey::of(&v), groups.len());
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

/// A hashable form of a [`Val`] for `by()`: equal values (by `==`) give equal keys.
#[derive(Debug, PartialEq, Eq, Hash)]
enum GroupKey {
    Str(String),
    Int(i64),
    Float(u64),
    Bool(bool),
    Duration(u64),
    Nil,
}

impl GroupKey {
    fn of(v: &Val) -> Self {
        match v {
            Val::Str(s) => GroupKey::Str(s.clone()),
            Val::Int(n) => GroupKey::Int(*n),
            // -0.0 == 0.0; NaNs (never equal to anything) share one group.
            Val::Float(f) if *f == 0.0 => GroupKey::Float(0),
            Val::Float(f) => GroupKey::Float(f.to_bits()),
            Val::Bool(b) => GroupKey::Bool(*b),
            Val::Duration(d) => GroupKey::Duration(*d),
            Val::Nil => GroupKey::Nil,
        }
    }
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use std::sync::Arc;

    use opentelemetry_proto::tonic::common::v1::AnyValue;
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::Span;

    use super::*;
    use crate::traceql::parse;

    /// Spans `1..=n`; `parent_of(i)` names each span's parent (0: none).
    fn trace(n: u64, parent_of: impl Fn(u64) -> u64) -> Vec<StoredSpan> {
        let resource = Arc::new(Resource {
            attributes: vec![KeyValue {
                key: "service.name".into(),
                value: Some(AnyValue {
                    value: Some(Av::StringValue("x".into())),
                }),
                ..Default::default()
            }],
            ..Default::default()
        });
        (1..=n)
            .map(|i| StoredSpan {
                resource: Arc::clone(&resource),
                resource_schema_url: Arc::from(""),
                scope: Arc::default(),
                scope_schema_url: Arc::from(""),
                span: Span {
                    trace_id: vec![1; 16],
                    span_id: i.to_be_bytes().to_vec(),
                    parent_span_id: match parent_of(i) {
                        0 => Vec::new(),
                        p => p.to_be_bytes().to_vec(),
                    },
                    name: format!("s{i}"),
                    start_time_unix_nano: i,
                    end_time_unix_nano: 10_000_000 - i,
                    ..Default::default()
                },
            })
            .collect()
    }

    /// (spans matched, work) for one query on one trace.
    fn run_counted(q: &str, spans: &[StoredSpan]) -> (usize, u64) {
        let view = TraceView::new(spans);
        let sets = run(&parse(q).unwrap(), &view);
        (sets.iter().map(|s| s.spans.len()).sum(), view.work())
    }

    #[test]
    fn structural_work_is_linear_on_a_chain() {
        let n = 3_000u64;
        let chain = trace(n, |i| i - 1);
        let q = r#"{ resource.service.name = "x" } >> { }"#;
        let (matched, work) = run_counted(q, &chain);
        assert_eq!(matched, n as usize - 1);
        // Pairwise ancestor walks took ~n³/6 (4.5e9) steps here; the sweeps take a few per span.
        eprintln!("{q}: work {work} for {n} spans");
        assert!(work < 20 * n, "work {work} for {n} spans");
        let (_, work2) = run_counted(q, &trace(2 * n, |i| i - 1));
        assert!(work2 <= 2 * work + 10, "{work} -> {work2}: not linear");
        for q in [
            "{ } > { }",
            "{ } < { }",
            "{ } << { }",
            "{ } ~ { }",
            "{ } &>> { }",
            "{ } &<< { }",
            "{ } &> { }",
            "{ } &< { }",
            "{ } &~ { }",
            "{ } !> { }",
            "{ } !>> { }",
            "{ } !< { }",
            "{ } !<< { }",
            "{ } !~ { }",
        ] {
            let (_, work) = run_counted(q, &chain);
            assert!(work < 20 * n, "{q}: work {work} for {n} spans");
        }
    }

    #[test]
    fn links_events_and_instrumentation() {
        use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
        use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};
        let kv = |k: &str, v: i64| KeyValue {
            key: k.into(),
            value: Some(AnyValue {
                value: Some(Av::IntValue(v)),
            }),
            ..Default::default()
        };
        let mut t = trace(3, |i| i - 1);
        t[1].span.links = vec![
            Link {
                trace_id: vec![0xab; 16],
                span_id: vec![0xcd; 8],
                attributes: vec![kv("n", 1)],
                ..Default::default()
            },
            Link {
                trace_id: vec![0xef; 16],
                span_id: vec![0x01; 8],
                attributes: vec![kv("n", 2)],
                ..Default::default()
            },
        ];
        t[2].span.events = vec![Event {
            name: "boom".into(),
            time_unix_nano: t[2].span.start_time_unix_nano + 5_000,
            attributes: vec![kv("fault.point", 7)],
            ..Default::default()
        }];
        t[0].scope = Arc::new(InstrumentationScope {
            name: "lib".into(),
            version: "1.2".into(),
            attributes: vec![kv("tier", 3)],
            ..Default::default()
        });
        let names = |q: &str| -> Vec<String> {
            let view = TraceView::new(&t);
            run(&parse(q).unwrap(), &view)
                .iter()
                .flat_map(|s| s.spans.iter().map(|i| t[*i].span.name.clone()))
                .collect()
        };
        let ef = "ef".repeat(16);
        assert_eq!(names(&format!(r#"{{ link:traceID = "{ef}" }}"#)), ["s2"]);
        assert_eq!(names(r#"{ link:spanID = "cdcdcdcdcdcdcdcd" }"#), ["s2"]);
        // Any link may satisfy it: the second link has n = 2.
        assert_eq!(names("{ link.n = 2 }"), ["s2"]);
        assert_eq!(names("{ link.n = 3 }"), Vec::<String>::new());
        assert_eq!(names("{ link.n = nil }"), ["s1", "s3"]);
        assert_eq!(
            names(r#"{ event:name = "boom" && event:timeSinceStart = 5us }"#),
            ["s3"]
        );
        assert_eq!(names("{ event.fault.point >= 7 }"), ["s3"]);
        assert_eq!(
            names(r#"{ instrumentation:name = "lib" && instrumentation:version = "1.2" }"#),
            ["s1"]
        );
        assert_eq!(names("{ instrumentation.tier = 3 }"), ["s1"]);
    }

    #[test]
    fn structural_results_on_chains_siblings_and_cycles() {
        // 1 ← 2 ← 3 (a chain) and 1 ← 4, 1 ← 5 (siblings of 2).
        let t = trace(5, |i| match i {
            2 | 4 | 5 => 1,
            3 => 2,
            _ => 0,
        });
        let names = |q: &str| -> Vec<String> {
            let view = TraceView::new(&t);
            let mut out: Vec<String> = run(&parse(q).unwrap(), &view)
                .iter()
                .flat_map(|s| s.spans.iter().map(|i| t[*i].span.name.clone()))
                .collect();
            out.sort();
            out
        };
        assert_eq!(names(r#"{ name = "s1" } >> { }"#), ["s2", "s3", "s4", "s5"]);
        assert_eq!(names(r#"{ name = "s1" } > { }"#), ["s2", "s4", "s5"]);
        assert_eq!(names(r#"{ name = "s2" } > { }"#), ["s3"]);
        assert_eq!(names(r#"{ name = "s3" } << { }"#), ["s1", "s2"]);
        assert_eq!(names(r#"{ name = "s3" } < { }"#), ["s2"]);
        assert_eq!(names(r#"{ name = "s2" } ~ { }"#), ["s4", "s5"]);
        assert_eq!(names(r#"{ name = "s3" } ~ { }"#), Vec::<String>::new());
        assert_eq!(names(r#"{ name = "s2" } &~ { }"#), ["s2", "s4", "s5"]);
        assert_eq!(
            names(r#"{ name = "s3" } &<< { name = "s1" }"#),
            ["s1", "s3"]
        );
        assert_eq!(
            names(r#"{ name = "s1" } &>> { name = "s3" }"#),
            ["s1", "s3"]
        );
        assert_eq!(names(r#"{ name = "s2" } &> { }"#), ["s2", "s3"]);
        assert_eq!(names(r#"{ name = "s3" } &< { }"#), ["s2", "s3"]);
        assert_eq!(names(r#"{ } ~ { }"#), ["s2", "s4", "s5"]);
        // Negated: the right side's spans without the relation to any left-side span.
        assert_eq!(names(r#"{ name = "s2" } !> { }"#), ["s1", "s2", "s4", "s5"]);
        assert_eq!(names(r#"{ name = "s1" } !>> { }"#), ["s1"]);
        assert_eq!(names(r#"{ name = "s3" } !< { }"#), ["s1", "s3", "s4", "s5"]);
        assert_eq!(names(r#"{ name = "s3" } !<< { }"#), ["s3", "s4", "s5"]);
        assert_eq!(names(r#"{ name = "s2" } !~ { }"#), ["s1", "s2", "s3"]);
        // Nested sets: 1 [2 [3] 4] [5] [6] in stored order, as Tempo numbers them.
        let view = TraceView::new(&t);
        let ns = |i: usize, f: Intrinsic| view.field(i, &Field::Intrinsic(f));
        let got: Vec<_> = (0..5)
            .map(|i| {
                (
                    ns(i, Intrinsic::NestedSetLeft),
                    ns(i, Intrinsic::NestedSetRight),
                    ns(i, Intrinsic::NestedSetParent),
                )
            })
            .collect();
        let int = |n| Some(Val::Int(n));
        assert_eq!(
            got,
            [
                (int(1), int(10), int(-1)),
                (int(2), int(5), int(1)),
                (int(3), int(4), int(2)),
                (int(6), int(7), int(1)),
                (int(8), int(9), int(1)),
            ]
        );
        // An empty left side yields nothing, as in Tempo.
        assert_eq!(names(r#"{ name = "nope" } !>> { }"#), Vec::<String>::new());
        // A parent cycle (6 ← 7 ← 6) below nothing: evaluated without looping.
        let cyc = trace(7, |i| match i {
            6 => 7,
            7 => 6,
            2..=5 => 1,
            _ => 0,
        });
        let view = TraceView::new(&cyc);
        let sets = run(&parse("{ } >> { }").unwrap(), &view);
        assert!(!sets.is_empty());
    }
}
