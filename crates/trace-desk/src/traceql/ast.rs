//! The checked syntax tree of a TraceQL query.

use regex::Regex;

/// A whole query: a spanset expression followed by pipeline stages.
#[derive(Debug, Clone)]
pub struct Query {
    /// The pipeline.
    pub pipeline: Pipeline,
    /// Every field the query names (filters, `by()`, `select()`, aggregates),
    /// in order of first appearance, without repeats.
    pub fields: Vec<Field>,
}

/// `spansetExpr ( '|' stage )*`.
#[derive(Debug, Clone)]
pub struct Pipeline {
    /// The first element.
    pub head: SpansetExpr,
    /// The stages after it.
    pub stages: Vec<Stage>,
}

/// An expression whose value is a spanset.
#[derive(Debug, Clone)]
pub enum SpansetExpr {
    /// `{ ... }`.
    Filter(FieldExpr),
    /// `lhs && rhs`, `lhs || rhs`, or a structural operator.
    Op(SpansetOp, Box<SpansetExpr>, Box<SpansetExpr>),
    /// A parenthesised pipeline (`( {..} | count() > 1 )`).
    Pipeline(Box<Pipeline>),
}

/// Operators between two spansets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpansetOp {
    /// `&&`: both sides non-empty; the union of their spans.
    And,
    /// `||`: either side non-empty; the union of their spans.
    Or,
    /// A structural relation; `union` (`&>` etc.) also returns the left side's matches;
    /// `negated` (`!>` etc.) returns the right side's spans *without* the relation.
    Structural {
        /// Which relation.
        rel: Relation,
        /// `&`-prefixed form.
        union: bool,
        /// `!`-prefixed form.
        negated: bool,
    },
}

/// Structural relations: the right side's span relative to the left side's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relation {
    /// `>`: right is a child of left.
    Child,
    /// `>>`: right is a descendant of left.
    Descendant,
    /// `<`: right is the parent of left.
    Parent,
    /// `<<`: right is an ancestor of left.
    Ancestor,
    /// `~`: right is a sibling of left (same parent, not the same span).
    Sibling,
}

/// A pipeline stage.
#[derive(Debug, Clone)]
pub enum Stage {
    /// `| { ... }` (or any spanset expression): keeps the matching spans of each spanset.
    Filter(SpansetExpr),
    /// `| count() > 3`.
    Scalar {
        /// The aggregate.
        aggregate: Aggregate,
        /// The comparison.
        op: CmpOp,
        /// The number compared with (durations in nanoseconds).
        value: f64,
    },
    /// `| by(field)` (or any value expression: `by(3 * .x - 2)`).
    By(Arg),
    /// `| select(field, ...)`.
    Select(Vec<Field>),
    /// `| coalesce()`.
    Coalesce,
}

/// Aggregate functions.
#[derive(Debug, Clone)]
pub enum Aggregate {
    /// `count()`.
    Count,
    /// `avg(f)`, `min(f)`, `max(f)`, `sum(f)` (f may be arithmetic: `max(1 + .a)`).
    Over(AggFn, Arg),
}

/// The argument of `by()` and of an aggregate: a field, or arithmetic over fields.
#[derive(Debug, Clone)]
pub struct Arg {
    /// What to compute per span.
    pub expr: ValueExpr,
    /// Its text as Tempo prints it (`duration`, `(1 + .a)`), used in result keys.
    pub label: String,
}

impl From<Field> for Arg {
    fn from(f: Field) -> Self {
        Arg {
            label: f.label(),
            expr: ValueExpr::Field(f),
        }
    }
}

impl ValueExpr {
    /// The expression as Tempo prints it: binary operations parenthesised.
    pub fn label(&self) -> String {
        match self {
            ValueExpr::Field(f) => f.label(),
            ValueExpr::Lit(l) => match l {
                Literal::Str(s) => format!("{s:?}"),
                Literal::Int(n) => n.to_string(),
                Literal::Float(f) => f.to_string(),
                Literal::Duration(d) => format!("{d}ns"),
                Literal::Bool(b) => b.to_string(),
                Literal::Nil => "nil".to_string(),
                Literal::Status(_) | Literal::Kind(_) => format!("{l:?}"),
            },
            ValueExpr::Arith(op, a, b) => {
                let o = match op {
                    ArithOp::Add => "+",
                    ArithOp::Sub => "-",
                    ArithOp::Mul => "*",
                    ArithOp::Div => "/",
                    ArithOp::Mod => "%",
                    ArithOp::Pow => "^",
                };
                format!("({} {o} {})", a.label(), b.label())
            }
            ValueExpr::Neg(a) => format!("-{}", a.label()),
        }
    }
}

/// The numeric aggregate functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggFn {
    /// `avg`.
    Avg,
    /// `min`.
    Min,
    /// `max`.
    Max,
    /// `sum`.
    Sum,
}

impl Aggregate {
    /// The text Tempo uses as the spanset attribute key, e.g. `avg(duration)`.
    pub fn label(&self) -> String {
        match self {
            Aggregate::Count => "count()".to_string(),
            Aggregate::Over(f, field) => {
                let name = match f {
                    AggFn::Avg => "avg",
                    AggFn::Min => "min",
                    AggFn::Max => "max",
                    AggFn::Sum => "sum",
                };
                format!("{name}({})", field.label)
            }
        }
    }
}

/// A boolean expression over one span.
#[derive(Debug, Clone)]
pub enum FieldExpr {
    /// `{}` / `true` / `false`.
    Const(bool),
    /// `field op value`.
    Cmp(Comparison),
    /// Any other comparison: arithmetic or a field on both sides (`span.a + span.b > 3`).
    Compare(Box<GeneralComparison>),
    /// `a && b`.
    And(Box<FieldExpr>, Box<FieldExpr>),
    /// `a || b`.
    Or(Box<FieldExpr>, Box<FieldExpr>),
    /// `!( a )`.
    Not(Box<FieldExpr>),
}

/// `field op value`, normalised so the field is on the left.
#[derive(Debug, Clone)]
pub struct Comparison {
    /// The span's field.
    pub field: Field,
    /// The operator.
    pub op: CmpOp,
    /// The literal.
    pub value: Literal,
    /// The compiled, anchored regex for `=~` / `!~`.
    pub regex: Option<Regex>,
}

/// `lhs op rhs` where either side may be arithmetic over fields and literals.
#[derive(Debug, Clone)]
pub struct GeneralComparison {
    /// Left side.
    pub lhs: ValueExpr,
    /// The operator.
    pub op: CmpOp,
    /// Right side.
    pub rhs: ValueExpr,
    /// The compiled, anchored regex for `=~` / `!~` (the right side is then a string literal).
    pub regex: Option<Regex>,
}

/// A value computed per span: a field, a literal, or arithmetic over them.
#[derive(Debug, Clone)]
pub enum ValueExpr {
    /// A span field.
    Field(Field),
    /// A literal.
    Lit(Literal),
    /// `a + b`, `a * b`, ...
    Arith(ArithOp, Box<ValueExpr>, Box<ValueExpr>),
    /// `-a`.
    Neg(Box<ValueExpr>),
}

/// Arithmetic operators, with Tempo's precedence: `+ -` below `* / %` below `^`
/// (right-associative).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArithOp {
    /// `+`.
    Add,
    /// `-`.
    Sub,
    /// `*`.
    Mul,
    /// `/`.
    Div,
    /// `%`.
    Mod,
    /// `^`.
    Pow,
}

impl ArithOp {
    /// Float arithmetic as Tempo does it (`%` is Go's math.Mod, which Rust's `%` matches).
    pub fn apply_f64(self, x: f64, y: f64) -> f64 {
        match self {
            ArithOp::Add => x + y,
            ArithOp::Sub => x - y,
            ArithOp::Mul => x * y,
            ArithOp::Div => x / y,
            ArithOp::Mod => x % y,
            ArithOp::Pow => x.powf(y),
        }
    }
}

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    /// `=`.
    Eq,
    /// `!=`.
    Ne,
    /// `>`.
    Gt,
    /// `>=`.
    Ge,
    /// `<`.
    Lt,
    /// `<=`.
    Le,
    /// `=~` (anchored: the whole value must match).
    Re,
    /// `!~`.
    NotRe,
}

impl CmpOp {
    /// The operator with its sides swapped (`a < b` is `b > a`).
    pub fn flipped(self) -> Self {
        match self {
            CmpOp::Gt => CmpOp::Lt,
            CmpOp::Ge => CmpOp::Le,
            CmpOp::Lt => CmpOp::Gt,
            CmpOp::Le => CmpOp::Ge,
            other => other,
        }
    }

    /// Applies an ordering operator to a comparison result.
    pub fn holds(self, ord: std::cmp::Ordering) -> bool {
        use std::cmp::Ordering::*;
        match self {
            CmpOp::Eq => ord == Equal,
            CmpOp::Ne => ord != Equal,
            CmpOp::Gt => ord == Greater,
            CmpOp::Ge => ord != Less,
            CmpOp::Lt => ord == Less,
            CmpOp::Le => ord != Greater,
            CmpOp::Re | CmpOp::NotRe => false,
        }
    }
}

/// A span field: an intrinsic or an attribute.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Field {
    /// An intrinsic such as `duration` or `trace:rootName`.
    Intrinsic(Intrinsic),
    /// An attribute.
    Attr {
        /// Where to look.
        scope: Scope,
        /// The attribute key (may contain dots).
        name: String,
    },
}

impl Field {
    /// The canonical text of the field, as Tempo prints it.
    pub fn label(&self) -> String {
        match self {
            Field::Intrinsic(i) => i.label().to_string(),
            Field::Attr { scope, name } => {
                let quoted = if name
                    .chars()
                    .all(|c| !c.is_whitespace() && !"{}()=~!<>&|^,\"`'+*%".contains(c))
                {
                    name.clone()
                } else {
                    format!("{name:?}")
                };
                match scope {
                    Scope::Span => format!("span.{quoted}"),
                    Scope::Resource => format!("resource.{quoted}"),
                    Scope::Event => format!("event.{quoted}"),
                    Scope::Link => format!("link.{quoted}"),
                    Scope::Instrumentation => format!("instrumentation.{quoted}"),
                    Scope::Any => format!(".{quoted}"),
                }
            }
        }
    }
}

/// Attribute scopes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// `span.`.
    Span,
    /// `resource.`.
    Resource,
    /// `.`: the span's attribute, else the resource's.
    Any,
    /// `event.`: an attribute of any of the span's events.
    Event,
    /// `link.`: an attribute of any of the span's links.
    Link,
    /// `instrumentation.`: an attribute of the span's instrumentation scope.
    Instrumentation,
}

impl Field {
    /// True when the field has one value per event or link of the span (a comparison holds
    /// when it holds for any of them, as in Tempo).
    pub fn is_multi(&self) -> bool {
        matches!(
            self,
            Field::Attr {
                scope: Scope::Event | Scope::Link,
                ..
            } | Field::Intrinsic(
                Intrinsic::EventName
                    | Intrinsic::EventTimeSinceStart
                    | Intrinsic::LinkTraceId
                    | Intrinsic::LinkSpanId
            )
        )
    }
}

/// Supported intrinsics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Intrinsic {
    /// `name`, `span:name`.
    Name,
    /// `status`, `span:status`.
    Status,
    /// `statusMessage`, `span:statusMessage`.
    StatusMessage,
    /// `kind`, `span:kind`.
    Kind,
    /// `duration`, `span:duration`.
    Duration,
    /// `span:childCount` (also `childCount`).
    ChildCount,
    /// `span:id`, hex.
    SpanId,
    /// `span:parentID`, hex (empty for a root).
    ParentId,
    /// `trace:duration` (also `traceDuration`).
    TraceDuration,
    /// `trace:rootName` (also `rootName`).
    RootName,
    /// `trace:rootService` (also `rootServiceName`).
    RootService,
    /// `trace:id`, hex.
    TraceId,
    /// `event:name`: the name of any of the span's events.
    EventName,
    /// `event:timeSinceStart`: an event's time minus the span's start.
    EventTimeSinceStart,
    /// `link:traceID`, hex.
    LinkTraceId,
    /// `link:spanID`, hex.
    LinkSpanId,
    /// `instrumentation:name`: the instrumentation scope's name.
    InstrumentationName,
    /// `instrumentation:version`.
    InstrumentationVersion,
    /// `nestedSetLeft`: the span's left bound in the trace's nested-set numbering.
    NestedSetLeft,
    /// `nestedSetRight`.
    NestedSetRight,
    /// `nestedSetParent`: the parent's left bound (-1 for a root).
    NestedSetParent,
}

/// The value type an intrinsic compares with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntrinsicType {
    /// Strings (regex allowed).
    Str,
    /// Numbers and durations.
    Number,
    /// `ok`, `error`, `unset`.
    Status,
    /// `server`, `client`, ...
    Kind,
}

impl Intrinsic {
    /// Looks up an intrinsic by its written name (scoped or not).
    pub fn from_word(word: &str) -> Option<Self> {
        Some(match word {
            "name" | "span:name" => Intrinsic::Name,
            "status" | "span:status" => Intrinsic::Status,
            "statusMessage" | "span:statusMessage" => Intrinsic::StatusMessage,
            "kind" | "span:kind" => Intrinsic::Kind,
            "duration" | "span:duration" => Intrinsic::Duration,
            "childCount" | "span:childCount" => Intrinsic::ChildCount,
            "span:id" => Intrinsic::SpanId,
            "span:parentID" => Intrinsic::ParentId,
            "traceDuration" | "trace:duration" => Intrinsic::TraceDuration,
            "rootName" | "trace:rootName" => Intrinsic::RootName,
            "rootServiceName" | "trace:rootService" => Intrinsic::RootService,
            "trace:id" => Intrinsic::TraceId,
            "event:name" => Intrinsic::EventName,
            "event:timeSinceStart" => Intrinsic::EventTimeSinceStart,
            "link:traceID" => Intrinsic::LinkTraceId,
            "link:spanID" => Intrinsic::LinkSpanId,
            "instrumentation:name" => Intrinsic::InstrumentationName,
            "instrumentation:version" => Intrinsic::InstrumentationVersion,
            "nestedSetLeft" => Intrinsic::NestedSetLeft,
            "nestedSetRight" => Intrinsic::NestedSetRight,
            "nestedSetParent" => Intrinsic::NestedSetParent,
            _ => return None,
        })
    }

    /// The canonical name.
    pub fn label(self) -> &'static str {
        match self {
            Intrinsic::Name => "name",
            Intrinsic::Status => "status",
            Intrinsic::StatusMessage => "statusMessage",
            Intrinsic::Kind => "kind",
            Intrinsic::Duration => "duration",
            Intrinsic::ChildCount => "span:childCount",
            Intrinsic::SpanId => "span:id",
            Intrinsic::ParentId => "span:parentID",
            Intrinsic::TraceDuration => "trace:duration",
            Intrinsic::RootName => "trace:rootName",
            Intrinsic::RootService => "trace:rootService",
            Intrinsic::TraceId => "trace:id",
            Intrinsic::EventName => "event:name",
            Intrinsic::EventTimeSinceStart => "event:timeSinceStart",
            Intrinsic::LinkTraceId => "link:traceID",
            Intrinsic::LinkSpanId => "link:spanID",
            Intrinsic::InstrumentationName => "instrumentation:name",
            Intrinsic::InstrumentationVersion => "instrumentation:version",
            Intrinsic::NestedSetLeft => "nestedSetLeft",
            Intrinsic::NestedSetRight => "nestedSetRight",
            Intrinsic::NestedSetParent => "nestedSetParent",
        }
    }

    /// What the intrinsic compares with.
    pub fn value_type(self) -> IntrinsicType {
        match self {
            Intrinsic::Name
            | Intrinsic::StatusMessage
            | Intrinsic::SpanId
            | Intrinsic::ParentId
            | Intrinsic::RootName
            | Intrinsic::RootService
            | Intrinsic::TraceId
            | Intrinsic::EventName
            | Intrinsic::LinkTraceId
            | Intrinsic::LinkSpanId
            | Intrinsic::InstrumentationName
            | Intrinsic::InstrumentationVersion => IntrinsicType::Str,
            Intrinsic::Duration
            | Intrinsic::ChildCount
            | Intrinsic::TraceDuration
            | Intrinsic::EventTimeSinceStart
            | Intrinsic::NestedSetLeft
            | Intrinsic::NestedSetRight
            | Intrinsic::NestedSetParent => IntrinsicType::Number,
            Intrinsic::Status => IntrinsicType::Status,
            Intrinsic::Kind => IntrinsicType::Kind,
        }
    }
}

/// A literal value.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    /// `"text"` or `` `raw` ``.
    Str(String),
    /// `42`, `-1`.
    Int(i64),
    /// `0.5`.
    Float(f64),
    /// `500ms`, in nanoseconds.
    Duration(i64),
    /// `true`, `false`.
    Bool(bool),
    /// `nil`.
    Nil,
    /// `ok`, `error`, `unset` as the OTLP status code (1, 2, 0).
    Status(i32),
    /// `server`, `client`, ... as the OTLP span kind (2, 3, 1, 4, 5, 0).
    Kind(i32),
}

impl Literal {
    /// The literal as a number, if it is one (durations in nanoseconds).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Literal::Int(n) => Some(*n as f64),
            Literal::Float(f) => Some(*f),
            Literal::Duration(d) => Some(*d as f64),
            _ => None,
        }
    }
}
