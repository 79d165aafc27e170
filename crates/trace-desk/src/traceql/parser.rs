//! The TraceQL parser: recursive descent built from `winnow` combinators over
//! the query text. Precedence follows Tempo's grammar (`pkg/traceql/expr.y`):
//! `|` binds loosest, then `&&` and `||` (equal precedence, left-associative),
//! then the structural operators (`>`, `>>`, `<`, `<<`, `~` and their `&`/`!` forms,
//! left-associative). Inside a filter, field expressions are parsed by precedence climbing:
//! `&& ||`, comparisons, `+ -`, unary `!`, `* / %`, `^` (right-associative).
//! Errors carry the byte offset and the 1-based column of the problem.

use std::fmt;

use std::cell::Cell;

use regex::RegexBuilder;
use winnow::ascii::multispace0;
use winnow::combinator::alt;
use winnow::error::{ContextError, ErrMode, FromExternalError};
use winnow::prelude::*;
use winnow::token::{literal, take_while};

use super::ast::*;
use super::duration::parse_go_duration;

type PResult<T> = ModalResult<T>;

/// What the desk supports, appended to every error.
pub const SUPPORTED: &str = "The desk supports spanset filters `{ ... }` with `&&`, `||`, `!`, `= != > >= < <= =~ !~` and arithmetic `+ - * / % ^` over intrinsics (name, status, statusMessage, kind, duration, span:childCount, trace:duration, trace:rootName, trace:rootService, ...) and `span.`/`resource.`/`event.`/`link.`/`instrumentation.`/`.` attributes; `&&`, `||`, `>`, `>>`, `<`, `<<`, `~` (and `&>`, `&>>`, `&<`, `&<<`, `&~`, `!>`, `!>>`, `!<`, `!<<`, `!~`) between spansets; pipeline stages `count()`/`avg()`/`min()`/`max()`/`sum()` comparisons, `by()`, `select()`, `coalesce()` and `{ ... }`; see docs/traceql.md";

/// Longest accepted query, in bytes (16 KiB); longer ones are refused before parsing.
pub const MAX_QUERY_BYTES: usize = 16 * 1024;
/// Deepest accepted nesting: every `(`, `{` and `!(` opens one level. The parser recurses once
/// per level, so this bounds its stack use.
pub const MAX_NESTING: usize = 128;
/// Deepest accepted expression tree (spanset and field expressions). Chained operators nest
/// too (`{} > {} > {}` is a left-deep tree), and the evaluator recurses once per level.
pub const MAX_EXPR_DEPTH: usize = 256;
/// Bound on the compiled program of one `=~`/`!~` regex (`RegexBuilder::size_limit`), 1 MiB.
pub const REGEX_SIZE_LIMIT: usize = 1 << 20;
/// Bound on the lazy DFA cache of one regex (`RegexBuilder::dfa_size_limit`), 1 MiB.
pub const REGEX_DFA_SIZE_LIMIT: usize = 1 << 20;

/// Why a query was refused: a plain mistake, or one of the desk's bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// Not valid (or not supported) TraceQL.
    Syntax,
    /// Longer than [`MAX_QUERY_BYTES`].
    TooLong,
    /// Nested deeper than [`MAX_NESTING`] or [`MAX_EXPR_DEPTH`].
    TooDeep,
    /// A regex whose compiled form exceeds [`REGEX_SIZE_LIMIT`].
    RegexTooBig,
}

impl Rejection {
    /// The label used in `/metrics`.
    pub fn label(self) -> &'static str {
        match self {
            Rejection::Syntax => "syntax",
            Rejection::TooLong => "too_long",
            Rejection::TooDeep => "too_deep",
            Rejection::RegexTooBig => "regex_too_big",
        }
    }
}

/// A query the desk cannot answer, with the position of the problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// Which kind of problem.
    pub kind: Rejection,
    /// Byte offset into the query.
    pub offset: usize,
    /// 1-based column (in characters).
    pub column: usize,
    /// What is wrong.
    pub message: String,
    /// The query text from the problem on (shortened).
    pub near: String,
}

impl ParseError {
    /// The error `message` at byte `offset` of the query `q` (clamped to it), with its column
    /// and the text from there on: one shape for every parser of query text.
    pub fn at(q: &str, offset: usize, kind: Rejection, message: impl Into<String>) -> Self {
        let offset = offset.min(q.len());
        let before = q.get(..offset).unwrap_or(q);
        let rest = q.get(offset..).unwrap_or("");
        Self {
            kind,
            offset,
            column: before.chars().count() + 1,
            message: message.into(),
            near: snippet(rest),
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid TraceQL query at column {} (near {}): {}. {}",
            self.column, self.near, self.message, SUPPORTED
        )
    }
}

impl std::error::Error for ParseError {}

#[derive(Debug)]
struct Msg(String, Rejection);

impl fmt::Display for Msg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

thread_local! {
    /// Current nesting level of the parser on this thread (see [`MAX_NESTING`]).
    static NESTING: Cell<usize> = const { Cell::new(0) };
}

/// One open nesting level; closing it (drop) gives the level back, on errors too.
struct Level;

impl Drop for Level {
    fn drop(&mut self) {
        NESTING.with(|n| n.set(n.get().saturating_sub(1)));
    }
}

/// Opens a nesting level at `at` (the bracket), refusing level [`MAX_NESTING`] + 1.
fn enter<'a>(i: &mut &'a str, at: &'a str) -> PResult<Level> {
    let depth = NESTING.with(|n| {
        n.set(n.get() + 1);
        n.get()
    });
    let level = Level;
    if depth > MAX_NESTING {
        return fail_as(
            i,
            at,
            Rejection::TooDeep,
            format!("the query nests deeper than {MAX_NESTING} levels of `(`, `{{` and `!(`"),
        );
    }
    Ok(level)
}

/// Depth of the expression tree, computed without recursion, stopping once past `max`.
fn expr_depth_exceeds(p: &Pipeline, max: usize) -> bool {
    enum Node<'a> {
        S(&'a SpansetExpr),
        F(&'a FieldExpr),
        V(&'a ValueExpr),
    }
    let mut stack: Vec<(Node<'_>, usize)> = Vec::new();
    fn pipeline_nodes<'a>(p: &'a Pipeline, d: usize, stack: &mut Vec<(Node<'a>, usize)>) {
        stack.push((Node::S(&p.head), d));
        for st in &p.stages {
            if let Stage::Filter(e) = st {
                stack.push((Node::S(e), d));
            }
        }
    }
    pipeline_nodes(p, 1, &mut stack);
    while let Some((node, d)) = stack.pop() {
        if d > max {
            return true;
        }
        match node {
            Node::S(SpansetExpr::Filter(f)) => stack.push((Node::F(f), d + 1)),
            Node::S(SpansetExpr::Op(_, a, b)) => {
                stack.push((Node::S(a), d + 1));
                stack.push((Node::S(b), d + 1));
            }
            Node::S(SpansetExpr::Pipeline(p)) => pipeline_nodes(p, d + 1, &mut stack),
            Node::F(FieldExpr::And(a, b) | FieldExpr::Or(a, b)) => {
                stack.push((Node::F(a), d + 1));
                stack.push((Node::F(b), d + 1));
            }
            Node::F(FieldExpr::Not(a)) => stack.push((Node::F(a), d + 1)),
            Node::F(FieldExpr::Compare(c)) => {
                stack.push((Node::V(&c.lhs), d + 1));
                stack.push((Node::V(&c.rhs), d + 1));
            }
            Node::V(ValueExpr::Arith(_, a, b)) => {
                stack.push((Node::V(a), d + 1));
                stack.push((Node::V(b), d + 1));
            }
            Node::V(ValueExpr::Neg(a)) => stack.push((Node::V(a), d + 1)),
            Node::V(ValueExpr::Field(_) | ValueExpr::Lit(_)) => {}
            Node::F(FieldExpr::Const(_) | FieldExpr::Cmp(_)) => {}
        }
    }
    false
}

impl std::error::Error for Msg {}

/// Parses a TraceQL query.
pub fn parse(q: &str) -> Result<Query, ParseError> {
    if q.len() > MAX_QUERY_BYTES {
        return Err(ParseError {
            kind: Rejection::TooLong,
            offset: MAX_QUERY_BYTES,
            column: q
                .get(..MAX_QUERY_BYTES)
                .map_or(MAX_QUERY_BYTES, |s| s.chars().count())
                + 1,
            message: format!(
                "the query is {} bytes long; the desk accepts at most {MAX_QUERY_BYTES} bytes",
                q.len()
            ),
            near: "the end of the accepted length".to_string(),
        });
    }
    NESTING.with(|n| n.set(0));
    match query.parse(q) {
        Ok(pipeline) if expr_depth_exceeds(&pipeline, MAX_EXPR_DEPTH) => Err(ParseError {
            kind: Rejection::TooDeep,
            offset: 0,
            column: 1,
            message: format!(
                "the query's expression tree is deeper than {MAX_EXPR_DEPTH} levels (each chained operator adds one); split it into several queries"
            ),
            near: snippet(q),
        }),
        Ok(pipeline) => {
            let mut fields = Vec::new();
            collect_pipeline(&pipeline, &mut fields);
            Ok(Query { pipeline, fields })
        }
        Err(e) => {
            let offset = e.offset().min(q.len());
            let inner = e.inner();
            let kind = inner
                .cause()
                .and_then(|c| c.downcast_ref::<Msg>())
                .map_or(Rejection::Syntax, |m| m.1);
            let message = match inner.cause() {
                Some(cause) => cause.to_string(),
                None => {
                    let text = inner.to_string();
                    if text.is_empty() {
                        "unexpected input".to_string()
                    } else {
                        text
                    }
                }
            };
            Err(ParseError::at(q, offset, kind, message))
        }
    }
}

/// `rest` as an error message quotes it: its first 16 characters, or "the end of the query".
pub(crate) fn snippet(rest: &str) -> String {
    if rest.is_empty() {
        "the end of the query".to_string()
    } else {
        let s: String = rest.chars().take(16).collect();
        if s.len() < rest.len() {
            format!("`{s}…`")
        } else {
            format!("`{s}`")
        }
    }
}

/// Fails (without backtracking) with `msg`, reporting the position `at`.
fn fail<'a, T>(i: &mut &'a str, at: &'a str, msg: impl Into<String>) -> PResult<T> {
    fail_as(i, at, Rejection::Syntax, msg)
}

/// Like [`fail`], for a given kind of rejection.
fn fail_as<'a, T>(
    i: &mut &'a str,
    at: &'a str,
    kind: Rejection,
    msg: impl Into<String>,
) -> PResult<T> {
    *i = at;
    Err(ErrMode::Cut(ContextError::from_external_error(
        i,
        Msg(msg.into(), kind),
    )))
}

fn ws(i: &mut &str) -> PResult<()> {
    multispace0.void().parse_next(i)
}

/// Consumes `tok` (after optional whitespace) or fails with "expected `what`".
fn expect(i: &mut &str, tok: &'static str, what: &str) -> PResult<()> {
    ws(i)?;
    let at = *i;
    match literal::<_, _, ContextError>(tok).parse_next(i) {
        Ok(_) => Ok(()),
        Err(_) => fail(i, at, format!("expected {what}, found {}", found(at))),
    }
}

fn found(rest: &str) -> String {
    match rest.chars().next() {
        None => "the end of the query".to_string(),
        Some(_) => snippet(rest),
    }
}

fn eat(i: &mut &str, tok: &str) -> bool {
    if let Some(rest) = i.strip_prefix(tok) {
        *i = rest;
        true
    } else {
        false
    }
}

fn query(i: &mut &str) -> PResult<Pipeline> {
    let (p, _) = pipeline(i)?;
    ws(i)?;
    if !i.is_empty() {
        let at = *i;
        return fail(
            i,
            at,
            format!(
                "unexpected {}; expected `|`, `&&`, `||`, a structural operator (`>`, `>>`, `<`, `<<`, `~`) or the end of the query",
                found(at)
            ),
        );
    }
    Ok(p)
}

/// What Tempo's grammar (expr.y) makes of a spanset expression: its `spansetExpression`
/// (filters and operators between them), its `spansetPipelineExpression` (operators between
/// parenthesised pipelines), or a parenthesised expression that is both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `{ ... }` and operators over them.
    Filters,
    /// `( ... )` around filters: a wrapped pipeline as well.
    Wrapped,
    /// A parenthesised pipeline with stages, or operators over such.
    Pipelines,
}

/// True when `i` starts with a stage that Tempo's grammar also accepts first in a pipeline
/// (a scalar filter, `by()` or `select()`); it then applies to all the trace's spans.
fn starts_with_stage(i: &str) -> bool {
    let word_len = i
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(i.len());
    matches!(
        &i[..word_len],
        "count" | "avg" | "min" | "max" | "sum" | "by" | "select"
    ) && i[word_len..].trim_start().starts_with('(')
}

fn pipeline(i: &mut &str) -> PResult<(Pipeline, Kind)> {
    ws(i)?;
    let mut stages = Vec::new();
    let (head, kind) = if starts_with_stage(i) {
        stages.push(stage(i)?);
        (SpansetExpr::Filter(FieldExpr::Const(true)), Kind::Filters)
    } else {
        spanset_expr(i)?
    };
    loop {
        let save = *i;
        ws(i)?;
        if i.starts_with('|') && !i.starts_with("||") {
            if kind == Kind::Pipelines {
                let at = *i;
                return fail(
                    i,
                    at,
                    "a parenthesised pipeline, or operators over such, cannot be followed by `|` (as in Tempo's grammar); move the stage inside the parentheses",
                );
            }
            *i = &i[1..];
            stages.push(stage(i)?);
        } else {
            *i = save;
            break;
        }
    }
    Ok((Pipeline { head, stages }, kind))
}

/// True when `e` may produce several spansets per trace (a `by()` not merged by `coalesce()`).
fn several_spansets(e: &SpansetExpr) -> bool {
    match e {
        SpansetExpr::Pipeline(p) => {
            let mut several = several_spansets(&p.head);
            for s in &p.stages {
                match s {
                    Stage::By(_) => several = true,
                    Stage::Coalesce => several = false,
                    _ => {}
                }
            }
            several
        }
        _ => false,
    }
}

fn combine<'a>(
    i: &mut &'a str,
    at: &'a str,
    op: SpansetOp,
    (lhs, kl): (SpansetExpr, Kind),
    (rhs, kr): (SpansetExpr, Kind),
) -> PResult<(SpansetExpr, Kind)> {
    let kind = match (kl, kr) {
        (Kind::Pipelines, Kind::Filters) | (Kind::Filters, Kind::Pipelines) => {
            return fail(
                i,
                at,
                "Tempo's grammar combines a parenthesised pipeline only with another parenthesised expression; write the filter side as `({ ... })`",
            );
        }
        (Kind::Pipelines, _) | (_, Kind::Pipelines) => Kind::Pipelines,
        (Kind::Wrapped, Kind::Wrapped) => Kind::Wrapped,
        _ => Kind::Filters,
    };
    if several_spansets(&lhs) || several_spansets(&rhs) {
        return fail(
            i,
            at,
            "spanset operators need one spanset per side, but a `by()` inside parentheses makes several; add `| coalesce()` after it",
        );
    }
    Ok((SpansetExpr::Op(op, Box::new(lhs), Box::new(rhs)), kind))
}

fn spanset_expr(i: &mut &str) -> PResult<(SpansetExpr, Kind)> {
    let mut lhs = spanset_term(i)?;
    loop {
        let save = *i;
        ws(i)?;
        let at = *i;
        let op = if eat(i, "&&") {
            SpansetOp::And
        } else if eat(i, "||") {
            SpansetOp::Or
        } else {
            *i = save;
            break;
        };
        let rhs = spanset_term(i)?;
        lhs = combine(i, at, op, lhs, rhs)?;
    }
    Ok(lhs)
}

fn structural_op(i: &mut &str) -> PResult<SpansetOp> {
    use Relation::*;
    let s = |rel, union, negated| SpansetOp::Structural {
        rel,
        union,
        negated,
    };
    alt((
        alt((
            literal("&>>").map(move |_| s(Descendant, true, false)),
            literal("&<<").map(move |_| s(Ancestor, true, false)),
            literal("&>").map(move |_| s(Child, true, false)),
            literal("&<").map(move |_| s(Parent, true, false)),
            literal("&~").map(move |_| s(Sibling, true, false)),
        )),
        alt((
            literal("!>>").map(move |_| s(Descendant, false, true)),
            literal("!<<").map(move |_| s(Ancestor, false, true)),
            literal("!>").map(move |_| s(Child, false, true)),
            literal("!<").map(move |_| s(Parent, false, true)),
            literal("!~").map(move |_| s(Sibling, false, true)),
        )),
        alt((
            literal(">>").map(move |_| s(Descendant, false, false)),
            literal("<<").map(move |_| s(Ancestor, false, false)),
            literal(">").map(move |_| s(Child, false, false)),
            literal("<").map(move |_| s(Parent, false, false)),
            literal("~").map(move |_| s(Sibling, false, false)),
        )),
    ))
    .parse_next(i)
}

fn spanset_term(i: &mut &str) -> PResult<(SpansetExpr, Kind)> {
    let mut lhs = spanset_primary(i)?;
    loop {
        let save = *i;
        ws(i)?;
        let at = *i;
        match structural_op(i) {
            Ok(op) => {
                let rhs = spanset_primary(i)?;
                lhs = combine(i, at, op, lhs, rhs)?;
            }
            Err(ErrMode::Backtrack(_)) => {
                *i = save;
                break;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(lhs)
}

fn spanset_primary(i: &mut &str) -> PResult<(SpansetExpr, Kind)> {
    ws(i)?;
    let at = *i;
    if eat(i, "{") {
        let _level = enter(i, at)?;
        ws(i)?;
        if eat(i, "}") {
            return Ok((SpansetExpr::Filter(FieldExpr::Const(true)), Kind::Filters));
        }
        let e = field_expr(i)?;
        ws(i)?;
        let end = *i;
        if eat(i, "}") {
            return Ok((SpansetExpr::Filter(e), Kind::Filters));
        }
        return fail(
            i,
            end,
            format!("expected `}}`, `&&` or `||`, found {}", found(end)),
        );
    }
    if eat(i, "(") {
        let _level = enter(i, at)?;
        let (p, kind) = pipeline(i)?;
        expect(i, ")", "`)`")?;
        if p.stages.is_empty() {
            let kind = if kind == Kind::Pipelines {
                Kind::Pipelines
            } else {
                Kind::Wrapped
            };
            return Ok((p.head, kind));
        }
        return Ok((SpansetExpr::Pipeline(Box::new(p)), Kind::Pipelines));
    }
    fail(
        i,
        at,
        format!(
            "expected a spanset filter `{{ ... }}` or `(`, found {}",
            found(at)
        ),
    )
}

#[derive(Debug)]
enum Operand {
    Field(Field),
    Lit(Literal),
}

fn cmp_op(i: &mut &str) -> PResult<CmpOp> {
    alt((
        literal("!=").value(CmpOp::Ne),
        literal("!~").value(CmpOp::NotRe),
        literal("=~").value(CmpOp::Re),
        literal(">=").value(CmpOp::Ge),
        literal("<=").value(CmpOp::Le),
        literal("=").value(CmpOp::Eq),
        literal(">").value(CmpOp::Gt),
        literal("<").value(CmpOp::Lt),
    ))
    .parse_next(i)
}

/// A field expression as parsed, before it is checked and typed: Tempo's `fieldExpression`,
/// one grammar for booleans, comparisons and arithmetic.
enum Node<'a> {
    /// `&&` / `||`.
    Bool(bool, Box<Node<'a>>, Box<Node<'a>>),
    /// `!x`.
    Not(Box<Node<'a>>),
    /// `a op b`; `at` is where `a` starts.
    Cmp(CmpOp, Box<Node<'a>>, Box<Node<'a>>, &'a str),
    /// `a op b`; `at` is the operator.
    Arith(ArithOp, Box<Node<'a>>, Box<Node<'a>>, &'a str),
    /// `-x`; `at` is the `-`.
    Neg(Box<Node<'a>>, &'a str),
    /// A field or literal, from `at` to `end`.
    Leaf(Operand, &'a str, &'a str),
}

#[derive(Clone, Copy)]
enum BinTok {
    And,
    Or,
    Cmp(CmpOp),
    Arith(ArithOp),
}

/// The binary operator at the start of `i`, with its length and binding powers
/// (left, right). Loosest first, as in Tempo's expr.y: `&& ||`, comparisons, `+ -`, (unary `!`),
/// `* / %`, then `^` (right-associative).
fn bin_tok(i: &str) -> Option<(BinTok, usize, u8, u8)> {
    let table: &[(&str, BinTok, u8, u8)] = &[
        ("&&", BinTok::And, 1, 2),
        ("||", BinTok::Or, 1, 2),
        ("!=", BinTok::Cmp(CmpOp::Ne), 3, 4),
        ("!~", BinTok::Cmp(CmpOp::NotRe), 3, 4),
        ("=~", BinTok::Cmp(CmpOp::Re), 3, 4),
        (">=", BinTok::Cmp(CmpOp::Ge), 3, 4),
        ("<=", BinTok::Cmp(CmpOp::Le), 3, 4),
        ("=", BinTok::Cmp(CmpOp::Eq), 3, 4),
        (">", BinTok::Cmp(CmpOp::Gt), 3, 4),
        ("<", BinTok::Cmp(CmpOp::Lt), 3, 4),
        ("+", BinTok::Arith(ArithOp::Add), 5, 6),
        ("-", BinTok::Arith(ArithOp::Sub), 5, 6),
        ("*", BinTok::Arith(ArithOp::Mul), 9, 10),
        ("/", BinTok::Arith(ArithOp::Div), 9, 10),
        ("%", BinTok::Arith(ArithOp::Mod), 9, 10),
        ("^", BinTok::Arith(ArithOp::Pow), 12, 11),
    ];
    table
        .iter()
        .find(|(t, ..)| i.starts_with(t))
        .map(|(t, tok, l, r)| (*tok, t.len(), *l, *r))
}

/// Binding power of unary `!` (between `+ -` and `* / %`) and unary `-` (that of `-`).
const NOT_BP: u8 = 7;
const NEG_BP: u8 = 6;

fn too_deep<'a, T>(i: &mut &'a str, at: &'a str) -> PResult<T> {
    fail_as(
        i,
        at,
        Rejection::TooDeep,
        format!(
            "the query's expression tree is deeper than {MAX_EXPR_DEPTH} levels (each chained operator adds one); split it into several queries"
        ),
    )
}

/// Precedence climbing over a field expression. `depth` counts the recursion (prefix operators,
/// right-associative `^`, parentheses), `height` of the returned tree is checked too, so both
/// stay within [`MAX_EXPR_DEPTH`].
fn field_node<'a>(i: &mut &'a str, min_bp: u8, depth: usize) -> PResult<(Node<'a>, usize)> {
    ws(i)?;
    let at = *i;
    if depth > MAX_EXPR_DEPTH {
        return too_deep(i, at);
    }
    let (mut lhs, mut height) = if eat(i, "(") {
        let _level = enter(i, at)?;
        let (e, h) = field_node(i, 0, depth + 1)?;
        expect(i, ")", "`)`, an operator")?;
        (e, h)
    } else if i.starts_with('!') && !i.starts_with("!=") && !i.starts_with("!~") {
        *i = &i[1..];
        let (e, h) = field_node(i, NOT_BP, depth + 1)?;
        (Node::Not(Box::new(e)), h + 1)
    } else if i.starts_with('-') && !i[1..].starts_with(|c: char| c.is_ascii_digit()) {
        *i = &i[1..];
        let (e, h) = field_node(i, NEG_BP, depth + 1)?;
        (Node::Neg(Box::new(e), at), h + 1)
    } else {
        let o = operand(i)?;
        let end: &'a str = i;
        (Node::Leaf(o, at, end), 1)
    };
    loop {
        let save = *i;
        ws(i)?;
        let op_at = *i;
        let Some((tok, len, l_bp, r_bp)) = bin_tok(op_at) else {
            *i = save;
            break;
        };
        if l_bp < min_bp {
            *i = save;
            break;
        }
        *i = &op_at[len..];
        let (rhs, h) = field_node(i, r_bp, depth + 1)?;
        height = height.max(h) + 1;
        if height > MAX_EXPR_DEPTH {
            return too_deep(i, op_at);
        }
        let (a, b) = (Box::new(lhs), Box::new(rhs));
        lhs = match tok {
            BinTok::And => Node::Bool(true, a, b),
            BinTok::Or => Node::Bool(false, a, b),
            BinTok::Cmp(op) => {
                let start = node_start(&a).unwrap_or(at);
                Node::Cmp(op, a, b, start)
            }
            BinTok::Arith(op) => Node::Arith(op, a, b, op_at),
        };
    }
    Ok((lhs, height))
}

/// Where a node's text starts, if known.
fn node_start<'a>(n: &Node<'a>) -> Option<&'a str> {
    match n {
        Node::Leaf(_, at, _) | Node::Neg(_, at) | Node::Cmp(.., at) => Some(at),
        Node::Arith(_, a, ..) => node_start(a),
        Node::Bool(..) | Node::Not(_) => None,
    }
}

fn field_expr(i: &mut &str) -> PResult<FieldExpr> {
    let (n, _) = field_node(i, 0, 1)?;
    to_bool(i, n)
}

/// A node in boolean position: `&&`, `||`, `!`, a comparison or `true`/`false`.
fn to_bool<'a>(i: &mut &'a str, n: Node<'a>) -> PResult<FieldExpr> {
    Ok(match n {
        Node::Bool(and, a, b) => {
            let (a, b) = (Box::new(to_bool(i, *a)?), Box::new(to_bool(i, *b)?));
            if and {
                FieldExpr::And(a, b)
            } else {
                FieldExpr::Or(a, b)
            }
        }
        Node::Not(a) => FieldExpr::Not(Box::new(to_bool(i, *a)?)),
        Node::Cmp(op, a, b, at) => comparison(i, op, *a, *b, at)?,
        Node::Leaf(Operand::Lit(Literal::Bool(b)), ..) => FieldExpr::Const(b),
        // A bare attribute is a boolean test, as in Tempo: `{ .cached }` is `{ .cached = true }`.
        Node::Leaf(Operand::Field(field @ Field::Attr { .. }), ..) => FieldExpr::Cmp(Comparison {
            field,
            op: CmpOp::Eq,
            value: Literal::Bool(true),
            regex: None,
        }),
        other => {
            let end = match &other {
                Node::Leaf(_, _, end) => end.trim_start(),
                _ => node_start(&other).unwrap_or(*i),
            };
            return fail(
                i,
                end,
                format!(
                    "expected a comparison operator (`=`, `!=`, `>`, `>=`, `<`, `<=`, `=~`, `!~`), found {}",
                    found(end)
                ),
            );
        }
    })
}

fn is_numeric_lit(l: &Literal) -> bool {
    matches!(
        l,
        Literal::Int(_) | Literal::Float(_) | Literal::Duration(_)
    )
}

/// Folds arithmetic over two literals at parse time (`10ms * 2`), with Tempo's typing:
/// int op int stays an int, anything else numeric becomes a float (durations in nanoseconds).
fn fold(op: ArithOp, a: &Literal, b: &Literal) -> Result<Literal, &'static str> {
    if let (Literal::Int(x), Literal::Int(y)) = (a, b) {
        let r = match op {
            ArithOp::Add => x.checked_add(*y),
            ArithOp::Sub => x.checked_sub(*y),
            ArithOp::Mul => x.checked_mul(*y),
            ArithOp::Div | ArithOp::Mod if *y == 0 => return Err("division by zero"),
            ArithOp::Div => x.checked_div(*y),
            ArithOp::Mod => x.checked_rem(*y),
            ArithOp::Pow => match u32::try_from(*y) {
                Ok(e) => x.checked_pow(e),
                Err(_) => return Ok(Literal::Float((*x as f64).powf(*y as f64))),
            },
        };
        return r.map(Literal::Int).ok_or("integer overflow");
    }
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => Ok(Literal::Float(op.apply_f64(x, y))),
        _ => Err("arithmetic needs numbers or durations"),
    }
}

/// A node in value position, literal subtrees folded.
fn to_value<'a>(i: &mut &'a str, n: Node<'a>) -> PResult<ValueExpr> {
    Ok(match n {
        Node::Leaf(Operand::Field(f), ..) => ValueExpr::Field(f),
        Node::Leaf(Operand::Lit(l), ..) => ValueExpr::Lit(l),
        Node::Neg(a, at) => match to_value(i, *a)? {
            ValueExpr::Lit(Literal::Int(n)) => ValueExpr::Lit(Literal::Int(n.wrapping_neg())),
            ValueExpr::Lit(Literal::Float(f)) => ValueExpr::Lit(Literal::Float(-f)),
            ValueExpr::Lit(Literal::Duration(d)) => ValueExpr::Lit(Literal::Duration(-d)),
            v => {
                check_numeric(i, at, &v)?;
                ValueExpr::Neg(Box::new(v))
            }
        },
        Node::Arith(op, a, b, at) => {
            let (a, b) = (to_value(i, *a)?, to_value(i, *b)?);
            check_numeric(i, at, &a)?;
            check_numeric(i, at, &b)?;
            match (&a, &b) {
                (ValueExpr::Lit(x), ValueExpr::Lit(y)) => match fold(op, x, y) {
                    Ok(l) => ValueExpr::Lit(l),
                    Err(why) => return fail(i, at, why),
                },
                _ => ValueExpr::Arith(op, Box::new(a), Box::new(b)),
            }
        }
        Node::Bool(..) | Node::Not(_) | Node::Cmp(..) => {
            let at = node_start(&n).unwrap_or(*i);
            return fail(
                i,
                at,
                "a boolean expression cannot be compared or used in arithmetic; compare fields with values",
            );
        }
    })
}

/// Arithmetic operands must be numeric: numbers, durations, numeric intrinsics or attributes.
fn check_numeric<'a>(i: &mut &'a str, at: &'a str, v: &ValueExpr) -> PResult<()> {
    let ok = match v {
        ValueExpr::Lit(l) => is_numeric_lit(l),
        ValueExpr::Field(Field::Intrinsic(intr)) => intr.value_type() == IntrinsicType::Number,
        ValueExpr::Field(Field::Attr { .. }) | ValueExpr::Arith(..) | ValueExpr::Neg(_) => true,
    };
    if ok {
        Ok(())
    } else {
        fail(
            i,
            at,
            "arithmetic (`+ - * / % ^`) needs numbers, durations or numeric fields",
        )
    }
}

fn comparison<'a>(
    i: &mut &'a str,
    op: CmpOp,
    a: Node<'a>,
    b: Node<'a>,
    at: &'a str,
) -> PResult<FieldExpr> {
    let (lhs, rhs) = (to_value(i, a)?, to_value(i, b)?);
    match (lhs, rhs) {
        (ValueExpr::Field(f), ValueExpr::Lit(l)) => check_comparison(i, at, f, op, l),
        (ValueExpr::Lit(l), ValueExpr::Field(f)) => {
            if matches!(op, CmpOp::Re | CmpOp::NotRe) {
                return fail(
                    i,
                    at,
                    "put the field left of `=~` / `!~` and the regex right",
                );
            }
            check_comparison(i, at, f, op.flipped(), l)
        }
        // Literals only (`{ 1 = 2 }`, `{ "a" =~ "a.*" }`): decided once, here.
        (ValueExpr::Lit(a), ValueExpr::Lit(b)) => {
            let (ka, kb) = (
                kind_of(&ValueExpr::Lit(a.clone())),
                kind_of(&ValueExpr::Lit(b.clone())),
            );
            if ka != kb || a == Literal::Nil || b == Literal::Nil {
                return fail(
                    i,
                    at,
                    "the two sides of this comparison have different types (a number never equals a string)",
                );
            }
            let regex = match (&op, &b) {
                (CmpOp::Re | CmpOp::NotRe, Literal::Str(re)) => Some(compile_regex(i, at, re)?),
                (CmpOp::Re | CmpOp::NotRe, _) => {
                    return fail(i, at, "`=~` and `!~` compare strings, not numbers");
                }
                _ => None,
            };
            let holds = match (super::eval::lit_val(&a), super::eval::lit_val(&b)) {
                (Some(x), Some(y)) => super::eval::compare_vals(&x, op, &y, regex.as_ref()),
                _ => false,
            };
            Ok(FieldExpr::Const(holds))
        }
        (lhs, rhs) => general_comparison(i, at, lhs, op, rhs),
    }
}

/// The kind of value a side yields, where the parser can tell.
#[derive(PartialEq, Clone, Copy)]
enum Kindof {
    Number,
    Str,
    Other,
    Unknown,
}

fn kind_of(v: &ValueExpr) -> Kindof {
    match v {
        ValueExpr::Arith(..) | ValueExpr::Neg(_) => Kindof::Number,
        ValueExpr::Lit(l) if is_numeric_lit(l) => Kindof::Number,
        ValueExpr::Lit(Literal::Str(_)) => Kindof::Str,
        ValueExpr::Lit(_) => Kindof::Other,
        ValueExpr::Field(Field::Attr { .. }) => Kindof::Unknown,
        ValueExpr::Field(Field::Intrinsic(intr)) => match intr.value_type() {
            IntrinsicType::Number => Kindof::Number,
            IntrinsicType::Str => Kindof::Str,
            IntrinsicType::Status | IntrinsicType::Kind => Kindof::Other,
        },
    }
}

fn general_comparison<'a>(
    i: &mut &'a str,
    at: &'a str,
    lhs: ValueExpr,
    op: CmpOp,
    rhs: ValueExpr,
) -> PResult<FieldExpr> {
    let (kl, kr) = (kind_of(&lhs), kind_of(&rhs));
    if matches!(lhs, ValueExpr::Lit(Literal::Nil)) || matches!(rhs, ValueExpr::Lit(Literal::Nil)) {
        return fail(
            i,
            at,
            "`nil` is supported only as `attribute = nil` (not set) and `attribute != nil` (set)",
        );
    }
    if kl != kr && kl != Kindof::Unknown && kr != Kindof::Unknown {
        return fail(
            i,
            at,
            "the two sides of this comparison have different types (a number never equals a string)",
        );
    }
    let is_regex = matches!(op, CmpOp::Re | CmpOp::NotRe);
    if (kl == Kindof::Number || kr == Kindof::Number) && is_regex {
        return fail(i, at, "`=~` and `!~` compare strings, not numbers");
    }
    let regex = if is_regex {
        let ValueExpr::Lit(Literal::Str(re)) = &rhs else {
            return fail(
                i,
                at,
                "`=~` and `!~` need a quoted regular expression on the right",
            );
        };
        Some(compile_regex(i, at, re)?)
    } else {
        None
    };
    Ok(FieldExpr::Compare(Box::new(GeneralComparison {
        lhs,
        op,
        rhs,
        regex,
    })))
}

fn check_comparison<'a>(
    i: &mut &'a str,
    at: &'a str,
    field: Field,
    op: CmpOp,
    value: Literal,
) -> PResult<FieldExpr> {
    let label = field.label();
    if value == Literal::Nil {
        if !matches!(op, CmpOp::Eq | CmpOp::Ne) || matches!(field, Field::Intrinsic(_)) {
            return fail(
                i,
                at,
                "`nil` is supported only as `attribute = nil` (not set) and `attribute != nil` (set)",
            );
        }
        return Ok(FieldExpr::Cmp(Comparison {
            field,
            op,
            value,
            regex: None,
        }));
    }
    let is_regex = matches!(op, CmpOp::Re | CmpOp::NotRe);
    if let Field::Intrinsic(intr) = &field {
        let ok = match intr.value_type() {
            IntrinsicType::Str => matches!(value, Literal::Str(_)),
            IntrinsicType::Number => {
                !is_regex
                    && matches!(
                        value,
                        Literal::Int(_) | Literal::Float(_) | Literal::Duration(_)
                    )
            }
            IntrinsicType::Status => {
                matches!(value, Literal::Status(_)) && matches!(op, CmpOp::Eq | CmpOp::Ne)
            }
            IntrinsicType::Kind => {
                matches!(value, Literal::Kind(_)) && matches!(op, CmpOp::Eq | CmpOp::Ne)
            }
        };
        if !ok {
            let want = match intr.value_type() {
                IntrinsicType::Str => "a quoted string",
                IntrinsicType::Number => {
                    "a number or a duration (`500ms`, `2s`) with = != > >= < <="
                }
                IntrinsicType::Status => "`ok`, `error` or `unset` with `=` or `!=`",
                IntrinsicType::Kind => {
                    "`server`, `client`, `internal`, `producer`, `consumer` or `unspecified` with `=` or `!=`"
                }
            };
            return fail(i, at, format!("`{label}` can only be compared with {want}"));
        }
    }
    let regex = if is_regex {
        let Literal::Str(re) = &value else {
            return fail(i, at, "`=~` and `!~` need a quoted regular expression");
        };
        Some(compile_regex(i, at, re)?)
    } else {
        None
    };
    Ok(FieldExpr::Cmp(Comparison {
        field,
        op,
        value,
        regex,
    }))
}

/// Compiles an anchored regex within the size bounds.
fn compile_regex<'a>(i: &mut &'a str, at: &'a str, re: &str) -> PResult<regex::Regex> {
    match RegexBuilder::new(&format!("^(?:{re})$"))
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_DFA_SIZE_LIMIT)
        .build()
    {
        Ok(r) => Ok(r),
        Err(regex::Error::CompiledTooBig(limit)) => fail_as(
            i,
            at,
            Rejection::RegexTooBig,
            format!(
                "the regular expression {} compiles to more than {limit} bytes; simplify it (fewer or smaller repetitions)",
                snippet(re)
            ),
        ),
        Err(e) => {
            let first = e.to_string();
            let first = first.lines().last().unwrap_or("").trim().to_string();
            fail(i, at, format!("invalid regular expression {re:?}: {first}"))
        }
    }
}

fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

fn is_attr_char(c: char) -> bool {
    !c.is_whitespace() && !"{}()=~!<>&|^,\"`'+*%".contains(c)
}

const INTRINSICS: &str = "name, status, statusMessage, kind, duration (also span:name, span:status, span:statusMessage, span:kind, span:duration), span:childCount, span:id, span:parentID, trace:duration, trace:rootName, trace:rootService, trace:id, event:name, event:timeSinceStart, link:traceID, link:spanID, instrumentation:name, instrumentation:version, nestedSetLeft, nestedSetRight, nestedSetParent";

fn operand(i: &mut &str) -> PResult<Operand> {
    ws(i)?;
    let at = *i;
    let Some(c) = i.chars().next() else {
        return fail(
            i,
            at,
            "expected an attribute, an intrinsic or a value, found the end of the query",
        );
    };
    if c == '"' || c == '`' {
        return Ok(Operand::Lit(Literal::Str(string_lit(i)?)));
    }
    if c == '-' || c.is_ascii_digit() {
        return number(i).map(Operand::Lit);
    }
    if c == '.' {
        *i = &i[1..];
        return attribute(i, Scope::Any, at).map(Operand::Field);
    }
    if c.is_ascii_alphabetic() || c == '_' {
        let word: &str = take_while(1.., is_word_char).parse_next(i)?;
        if i.starts_with('.') {
            let scope = match word {
                "span" => Some(Scope::Span),
                "resource" => Some(Scope::Resource),
                "event" => Some(Scope::Event),
                "link" => Some(Scope::Link),
                "instrumentation" => Some(Scope::Instrumentation),
                _ => None,
            };
            if let Some(scope) = scope {
                *i = &i[1..];
                return attribute(i, scope, at).map(Operand::Field);
            }
            if word == "parent" {
                return fail(
                    i,
                    at,
                    "the `parent.` attribute scope is not supported by the desk; use `span.`, `resource.`, `event.`, `link.`, `instrumentation.` or `.`",
                );
            }
        }
        let lit = match word {
            "true" => Some(Literal::Bool(true)),
            "false" => Some(Literal::Bool(false)),
            "nil" => Some(Literal::Nil),
            "ok" => Some(Literal::Status(1)),
            "error" => Some(Literal::Status(2)),
            "unset" => Some(Literal::Status(0)),
            "unspecified" => Some(Literal::Kind(0)),
            "internal" => Some(Literal::Kind(1)),
            "server" => Some(Literal::Kind(2)),
            "client" => Some(Literal::Kind(3)),
            "producer" => Some(Literal::Kind(4)),
            "consumer" => Some(Literal::Kind(5)),
            _ => None,
        };
        if let Some(lit) = lit {
            return Ok(Operand::Lit(lit));
        }
        if let Some(intr) = Intrinsic::from_word(word) {
            return Ok(Operand::Field(Field::Intrinsic(intr)));
        }
        if word == "parent" {
            return fail(
                i,
                at,
                format!(
                    "the intrinsic `{word}` is not supported by the desk; supported intrinsics: {INTRINSICS}"
                ),
            );
        }
        return fail(
            i,
            at,
            format!(
                "unknown intrinsic `{word}`; intrinsics are {INTRINSICS}; attributes need a scope: `span.{w}`, `resource.{w}` or `.{w}`",
                w = word.split(':').next_back().unwrap_or(word)
            ),
        );
    }
    fail(
        i,
        at,
        format!(
            "expected an attribute (`span.x`, `resource.x`, `.x`), an intrinsic (`name`, `status`, `duration`, ...) or a value, found {}",
            found(at)
        ),
    )
}

fn attribute<'a>(i: &mut &'a str, scope: Scope, at: &'a str) -> PResult<Field> {
    let name = if i.starts_with('"') {
        string_lit(i)?
    } else {
        let name: &str = take_while(0.., is_attr_char).parse_next(i)?;
        name.to_string()
    };
    if name.is_empty() {
        return fail(i, at, "expected an attribute name after the scope");
    }
    Ok(Field::Attr { scope, name })
}

fn string_lit(i: &mut &str) -> PResult<String> {
    let at = *i;
    let mut chars = i.char_indices();
    let Some((_, quote)) = chars.next() else {
        return fail(i, at, "expected a string");
    };
    let mut out = String::new();
    while let Some((pos, c)) = chars.next() {
        if c == quote {
            *i = &i[pos + c.len_utf8()..];
            return Ok(out);
        }
        if c == '\\' && quote == '"' {
            match chars.next() {
                Some((_, 'n')) => out.push('\n'),
                Some((_, 't')) => out.push('\t'),
                Some((_, 'r')) => out.push('\r'),
                Some((_, '"')) => out.push('"'),
                Some((_, '\\')) => out.push('\\'),
                Some((_, other)) => {
                    out.push('\\');
                    out.push(other);
                }
                None => break,
            }
        } else {
            out.push(c);
        }
    }
    fail(i, at, "unterminated string")
}

fn number<'a>(i: &mut &'a str) -> PResult<Literal> {
    let at = *i;
    let neg = eat(i, "-");
    let text: &str = take_while(0.., |c: char| {
        c.is_ascii_alphanumeric() || c == '.' || c == 'µ' || c == 'μ'
    })
    .parse_next(i)?;
    let bad = |i: &mut &'a str| -> PResult<Literal> {
        fail(
            i,
            at,
            format!(
                "invalid number or duration {}; durations are written like `500ms`, `2s`, `1m30s` (units ns, us, ms, s, m, h)",
                found(at)
            ),
        )
    };
    if text.is_empty() || !text.starts_with(|c: char| c.is_ascii_digit()) {
        return bad(i);
    }
    let sign = if neg { -1 } else { 1 };
    if text.chars().all(|c| c.is_ascii_digit()) {
        return match text.parse::<i64>() {
            Ok(n) => Ok(Literal::Int(sign * n)),
            Err(_) => bad(i),
        };
    }
    if text.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return match text.parse::<f64>() {
            Ok(f) => Ok(Literal::Float(sign as f64 * f)),
            Err(_) => bad(i),
        };
    }
    match parse_go_duration(text) {
        Ok(ns) => match i64::try_from(ns) {
            Ok(ns) => Ok(Literal::Duration(sign * ns)),
            Err(_) => bad(i),
        },
        Err(_) => bad(i),
    }
}

const STAGES: &str = "`count()`, `avg(f)`, `min(f)`, `max(f)`, `sum(f)` compared with a number or duration, `by(f)`, `select(f, ...)`, `coalesce()` or a spanset filter `{ ... }`";

fn field_arg(i: &mut &str) -> PResult<Field> {
    ws(i)?;
    let at = *i;
    match operand(i)? {
        Operand::Field(f) => Ok(f),
        Operand::Lit(_) => fail(i, at, "expected an attribute or an intrinsic"),
    }
}

/// The argument of `by()` or an aggregate: a field or arithmetic over fields (Tempo's
/// `fieldExpression`); it must read the span (`by(1)` is rejected, as in Tempo).
fn arg(i: &mut &str) -> PResult<Arg> {
    ws(i)?;
    let at = *i;
    // Stop below the comparisons: only arithmetic belongs here.
    let (n, _) = field_node(i, 5, 1)?;
    let expr = to_value(i, n)?;
    match expr {
        ValueExpr::Field(f) => Ok(Arg::from(f)),
        ValueExpr::Lit(_) => fail(
            i,
            at,
            "expected an attribute, an intrinsic or arithmetic over them (the expression must read the span)",
        ),
        expr => Ok(Arg {
            label: expr.label(),
            expr,
        }),
    }
}

fn stage(i: &mut &str) -> PResult<Stage> {
    ws(i)?;
    let at = *i;
    if i.starts_with('{') || i.starts_with('(') {
        let (e, kind) = spanset_expr(i)?;
        if kind == Kind::Pipelines {
            return fail(
                i,
                at,
                "a pipeline stage cannot be a parenthesised pipeline (as in Tempo's grammar); continue the pipeline with `|` instead",
            );
        }
        return Ok(Stage::Filter(e));
    }
    let word: &str =
        take_while(0.., |c: char| c.is_ascii_alphanumeric() || c == '_').parse_next(i)?;
    match word {
        "by" => {
            expect(i, "(", "`(` after `by`")?;
            let f = arg(i)?;
            expect(i, ")", "`)`")?;
            Ok(Stage::By(f))
        }
        "select" => {
            expect(i, "(", "`(` after `select`")?;
            let mut fields = vec![field_arg(i)?];
            loop {
                ws(i)?;
                if eat(i, ",") {
                    fields.push(field_arg(i)?);
                } else {
                    break;
                }
            }
            expect(i, ")", "`,` or `)`")?;
            Ok(Stage::Select(fields))
        }
        "coalesce" => {
            expect(i, "(", "`(` after `coalesce`")?;
            expect(i, ")", "`)`")?;
            Ok(Stage::Coalesce)
        }
        "count" | "avg" | "min" | "max" | "sum" => {
            expect(i, "(", &format!("`(` after `{word}`"))?;
            let aggregate = if word == "count" {
                expect(i, ")", "`)` (count() takes no argument)")?;
                Aggregate::Count
            } else {
                ws(i)?;
                let arg_at = *i;
                let f = arg(i)?;
                if let ValueExpr::Field(Field::Intrinsic(intr)) = &f.expr
                    && intr.value_type() != IntrinsicType::Number
                {
                    return fail(
                        i,
                        arg_at,
                        format!(
                            "`{word}()` needs a numeric field such as `duration` or a numeric attribute"
                        ),
                    );
                }
                expect(i, ")", "`)`")?;
                let func = match word {
                    "avg" => AggFn::Avg,
                    "min" => AggFn::Min,
                    "max" => AggFn::Max,
                    _ => AggFn::Sum,
                };
                Aggregate::Over(func, f)
            };
            ws(i)?;
            let op_at = *i;
            let op = match cmp_op(i) {
                Ok(op) if !matches!(op, CmpOp::Re | CmpOp::NotRe) => op,
                _ => {
                    return fail(
                        i,
                        op_at,
                        format!(
                            "expected a comparison (`=`, `!=`, `>`, `>=`, `<`, `<=`) after `{}`, found {}",
                            aggregate.label(),
                            found(op_at)
                        ),
                    );
                }
            };
            ws(i)?;
            let v_at = *i;
            let value = match operand(i)? {
                Operand::Lit(l) => l.as_f64(),
                Operand::Field(_) => None,
            };
            let Some(value) = value else {
                return fail(
                    i,
                    v_at,
                    "an aggregate can only be compared with a number or a duration",
                );
            };
            Ok(Stage::Scalar {
                aggregate,
                op,
                value,
            })
        }
        "rate"
        | "count_over_time"
        | "min_over_time"
        | "max_over_time"
        | "avg_over_time"
        | "sum_over_time"
        | "quantile_over_time"
        | "histogram_over_time"
        | "compare"
        | "topk"
        | "bottomk" => fail(
            i,
            at,
            format!(
                "`{word}()` is a TraceQL metrics function, which the desk does not support (search only); pipeline stages are {STAGES}"
            ),
        ),
        "" => fail(
            i,
            at,
            format!(
                "expected a pipeline stage after `|`, found {}; stages are {STAGES}",
                found(at)
            ),
        ),
        other => fail(
            i,
            at,
            format!("unknown pipeline stage `{other}`; stages are {STAGES}"),
        ),
    }
}

fn push_field(fields: &mut Vec<Field>, f: &Field) {
    if !fields.contains(f) {
        fields.push(f.clone());
    }
}

fn collect_field_expr(e: &FieldExpr, out: &mut Vec<Field>) {
    match e {
        FieldExpr::Const(_) => {}
        FieldExpr::Cmp(c) => push_field(out, &c.field),
        FieldExpr::Compare(c) => {
            collect_value(&c.lhs, out);
            collect_value(&c.rhs, out);
        }
        FieldExpr::And(a, b) | FieldExpr::Or(a, b) => {
            collect_field_expr(a, out);
            collect_field_expr(b, out);
        }
        FieldExpr::Not(a) => collect_field_expr(a, out),
    }
}

fn collect_value(v: &ValueExpr, out: &mut Vec<Field>) {
    match v {
        ValueExpr::Field(f) => push_field(out, f),
        ValueExpr::Lit(_) => {}
        ValueExpr::Arith(_, a, b) => {
            collect_value(a, out);
            collect_value(b, out);
        }
        ValueExpr::Neg(a) => collect_value(a, out),
    }
}

fn collect_spanset(e: &SpansetExpr, out: &mut Vec<Field>) {
    match e {
        SpansetExpr::Filter(f) => collect_field_expr(f, out),
        SpansetExpr::Op(_, a, b) => {
            collect_spanset(a, out);
            collect_spanset(b, out);
        }
        SpansetExpr::Pipeline(p) => collect_pipeline(p, out),
    }
}

fn collect_pipeline(p: &Pipeline, out: &mut Vec<Field>) {
    collect_spanset(&p.head, out);
    for s in &p.stages {
        match s {
            Stage::Filter(e) => collect_spanset(e, out),
            Stage::Scalar {
                aggregate: Aggregate::Over(_, f),
                ..
            } => collect_value(&f.expr, out),
            Stage::Scalar { .. } | Stage::Coalesce => {}
            Stage::By(f) => collect_value(&f.expr, out),
            Stage::Select(fs) => fs.iter().for_each(|f| push_field(out, f)),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    /// A compact rendering of the tree to assert on shape.
    fn show(q: &str) -> String {
        fn fe(e: &FieldExpr) -> String {
            match e {
                FieldExpr::Const(b) => b.to_string(),
                FieldExpr::Cmp(c) => format!("{}{:?}", c.field.label(), c.op),
                FieldExpr::And(a, b) => format!("({} && {})", fe(a), fe(b)),
                FieldExpr::Or(a, b) => format!("({} || {})", fe(a), fe(b)),
                FieldExpr::Not(a) => format!("!{}", fe(a)),
                FieldExpr::Compare(c) => format!("[{} {:?} {}]", ve(&c.lhs), c.op, ve(&c.rhs)),
            }
        }
        fn ve(v: &ValueExpr) -> String {
            match v {
                ValueExpr::Field(f) => f.label(),
                ValueExpr::Lit(l) => format!("{l:?}"),
                ValueExpr::Arith(op, a, b) => format!("({} {op:?} {})", ve(a), ve(b)),
                ValueExpr::Neg(a) => format!("-{}", ve(a)),
            }
        }
        fn se(e: &SpansetExpr) -> String {
            match e {
                SpansetExpr::Filter(f) => format!("{{{}}}", fe(f)),
                SpansetExpr::Op(op, a, b) => {
                    let o = match op {
                        SpansetOp::And => "&&".to_string(),
                        SpansetOp::Or => "||".to_string(),
                        SpansetOp::Structural {
                            rel,
                            union,
                            negated,
                        } => {
                            let pre = if *union {
                                "&"
                            } else if *negated {
                                "!"
                            } else {
                                ""
                            };
                            format!("{pre}{rel:?}")
                        }
                    };
                    format!("({} {o} {})", se(a), se(b))
                }
                SpansetExpr::Pipeline(p) => format!("[{}]", pl(p)),
            }
        }
        fn pl(p: &Pipeline) -> String {
            let mut s = se(&p.head);
            for st in &p.stages {
                s.push_str(" | ");
                s.push_str(&match st {
                    Stage::Filter(e) => se(e),
                    Stage::Scalar {
                        aggregate,
                        op,
                        value,
                    } => format!("{}{op:?}{value}", aggregate.label()),
                    Stage::By(f) => format!("by({})", f.label),
                    Stage::Select(fs) => format!("select({})", fs.len()),
                    Stage::Coalesce => "coalesce()".to_string(),
                });
            }
            s
        }
        pl(&parse(q).unwrap().pipeline)
    }

    fn err(q: &str) -> ParseError {
        parse(q).expect_err(q)
    }

    #[test]
    fn field_precedence_is_tempos() {
        // && and || share one level, left to right (Tempo's expr.y: %left AND OR).
        assert_eq!(
            show("{ .a = 1 || .b = 2 && .c = 3 }"),
            "{((.aEq || .bEq) && .cEq)}"
        );
        assert_eq!(
            show("{ .a = 1 && .b = 2 || .c = 3 }"),
            "{((.aEq && .bEq) || .cEq)}"
        );
        assert_eq!(
            show("{ .a = 1 || (.b = 2 && .c = 3) }"),
            "{(.aEq || (.bEq && .cEq))}"
        );
        assert_eq!(show("{ !(.a = 1) && true }"), "{(!.aEq && true)}");
    }

    #[test]
    fn spanset_precedence() {
        // Structural operators bind tighter than && and ||; all are left-associative.
        assert_eq!(show("{} || {} > {}"), "({true} || ({true} Child {true}))");
        assert_eq!(
            show("{} > {} >> {}"),
            "(({true} Child {true}) Descendant {true})"
        );
        assert_eq!(show("({} || {}) > {}"), "(({true} || {true}) Child {true})");
        assert_eq!(show("{} && {} || {}"), "(({true} && {true}) || {true})");
        assert_eq!(
            show("{} &>> {} ~ {}"),
            "(({true} &Descendant {true}) Sibling {true})"
        );
        assert_eq!(
            show("{} < {} << {}"),
            "(({true} Parent {true}) Ancestor {true})"
        );
        // | binds loosest.
        assert_eq!(
            show("{} > {} | count() > 2 | by(span.x)"),
            "({true} Child {true}) | count()Gt2 | by(span.x)"
        );
        assert_eq!(
            show("({ } | count() > 1) && ({ })"),
            "([{true} | count()Gt1] && {true})"
        );
        // Tempo's grammar: a parenthesised pipeline combines only with parenthesised operands,
        // and cannot be followed by `|`.
        assert!(parse("({ } | count() > 1) && { }").is_err());
        assert!(parse("{ } > ({ } | count() > 1)").is_err());
        assert!(parse("({ } | count() > 1) | by(.a)").is_err());
        assert!(parse("{ } | ({ } | count() > 1)").is_err());
        assert!(parse("({ } | count() > 1) && ({ } && { }) > ({ } | count() > 2)").is_ok());
        assert!(parse("({ } && { }) | count() > 1").is_ok());
    }

    #[test]
    fn arithmetic_precedence_and_folding() {
        // + - below * / % below ^ (right-associative); literal subtrees fold at parse time.
        assert_eq!(
            show("{ .a + .b * .c > 1 }"),
            "{[(.a Add (.b Mul .c)) Gt Int(1)]}"
        );
        assert_eq!(
            show("{ .a - .b - .c > 1 }"),
            "{[((.a Sub .b) Sub .c) Gt Int(1)]}"
        );
        assert_eq!(
            show("{ .a ^ .b ^ .c > 1 }"),
            "{[(.a Pow (.b Pow .c)) Gt Int(1)]}"
        );
        assert_eq!(
            show("{ (.a + .b) * 2 = .c }"),
            "{[((.a Add .b) Mul Int(2)) Eq .c]}"
        );
        assert_eq!(show("{ -.a < 0 }"), "{[-.a Lt Int(0)]}");
        assert_eq!(show("{ .a = .b }"), "{[.a Eq .b]}");
        // Folded: a plain field-vs-literal comparison again.
        assert_eq!(show("{ duration > 10ms * 2 }"), "{durationGt}");
        let q = parse("{ duration > 10ms * 2 && .x = 2 ^ 3 ^ 2 && .y = 7 % 4 - 1 }").unwrap();
        let SpansetExpr::Filter(FieldExpr::And(ab, c)) = &q.pipeline.head else {
            panic!()
        };
        let FieldExpr::And(a, b) = &**ab else {
            panic!()
        };
        let lit = |e: &FieldExpr| match e {
            FieldExpr::Cmp(c) => c.value.clone(),
            _ => panic!(),
        };
        assert_eq!(lit(a), Literal::Float(20_000_000.0));
        assert_eq!(lit(b), Literal::Int(512));
        assert_eq!(lit(c), Literal::Int(2));
        // Comparisons bind looser than arithmetic, && and || looser still.
        assert_eq!(
            show("{ .a + 1 > 2 && .b = 1 || .c * 2 < 3 }"),
            "{(([(.a Add Int(1)) Gt Int(2)] && .bEq) || [(.c Mul Int(2)) Lt Int(3)])}"
        );
        for bad in [
            "{ name + 1 > 2 }",
            r#"{ .a + "x" > 2 }"#,
            "{ .a > 1 / 0 }",
            "{ status + 1 = 2 }",
            "{ duration * 2 = \"x\" }",
            "{ .a + 1 =~ \"x\" }",
            "{ .a + 1 }",
            "{ .a + 1 = nil }",
            "{ (.a = 1) + 1 > 0 }",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        // Chains count toward the expression depth bound.
        let deep = format!("{{ .a{} > 1 }}", " + 1".repeat(MAX_EXPR_DEPTH));
        assert_eq!(parse(&deep).unwrap_err().kind, Rejection::TooDeep);
        let deep = format!("{{ .a{} > 1 }}", " ^ 1".repeat(4_000));
        assert_eq!(parse(&deep).unwrap_err().kind, Rejection::TooDeep);
        let deep = format!("{{ {}.a > 1 }}", "-".repeat(4_000));
        assert_eq!(parse(&deep).unwrap_err().kind, Rejection::TooDeep);
    }

    /// Search queries of the kinds Tempo's parser tests accept (its `test_examples.yaml`,
    /// `valid:`), and ones it rejects (`parse_fails:` / `validate_fails:`).
    #[test]
    fn tempo_examples() {
        let valid = [
            "{ true }",
            "{ !true }",
            "{ 1 = 2 }",
            "{ -1 = 2 }",
            r#"{ "test" =~ "test" }"#,
            "{ .a }",
            "{ !.a }",
            "{ .a && false }",
            "{ -.a = 2 }",
            r#"{ !("test" != .c || ((true && .b) || 3 < .a)) }"#,
            "{ 1 < 1h }",
            r#"{ event.foo = "bar" }"#,
            r#"{ link.foo = "bar" }"#,
            r#"{ instrumentation.foo = "bar" }"#,
            r#"{ trace:id = "aasdf4ergf" }"#,
            "{ event:timeSinceStart > 1s }",
            r#"{ link:spanID = "f1f1f1f1f1f1f1f1" }"#,
            r#"{ instrumentation:version = "v3.34" }"#,
            "{ 1 ^ 1 = 2 }",
            "{ .a / 1 = 2 }",
            "{ duration > 1s * 2s }",
            "{ 1 * 1h = 1 }",
            r#"{ .http.status >= "200" }"#,
            "{ true } !> { true }",
            "{ true } !<< { true }",
            "({ true } | count() > 1 | { false }) >> ({ true } | count() > 1 | { false })",
            "({ true } | count() > 1 | { false }) && ({ true } | count() > 1 | { false })",
            "avg(.field) > 1",
            "max(duration) > 3s | { status = error || .http.status = 500 }",
            "select(.a)",
            "count() = 1 | { true }",
            "by(.a) | { true }",
            "{ nestedSetLeft > 3 }",
            "{ } >> { kind = server } | select(nestedSetLeft, nestedSetRight, nestedSetParent)",
            "{ .foo = nil }",
            "{ 1 = childCount }",
            "{ true } | max(1 + .a) = 1",
            "{ true } | max((1 + .a) * 2) = 1",
            "{ true } | by(1 + .a) | coalesce()",
            "{ true } | by(3 * .field - 2) | max(duration) < 1s",
        ];
        for q in valid {
            assert!(parse(q).is_ok(), "{q}: {}", parse(q).unwrap_err());
        }
        let invalid = [
            "true",
            "( true )",
            "{ . }",
            "{ .a < 3",
            "{ attribute = 4 }",
            "{ .attribute == 4 }",
            "{ true } + { true }",
            "{ true } <= { true }",
            "coalesce() | { true }",
            "count() > 3 && { true }",
            "{ true } | count()",
            "{ true } | by()",
            "({ true }) && (count())",
            "{ trace:status = error }",
            "{ span:rootName = \"bar\" }",
            "{ status }",
            "{ 1 + 1 }",
            r#"{ 1 + "foo" = 1 }"#,
            r#"{ 1 = "foo" }"#,
            "{ 1 = name }",
            "{ 1 =~ 2 }",
            "{ status > ok }",
            "{ -true }",
            r#"{ !name = "foo" }"#,
            r#"{ span.foo =~ "[" }"#,
            r#"{ nestedSetLeft = "foo" }"#,
            "{ nestedSetRight = false }",
            "{ true } | by(1)",
            "{ true } | by(\"foo\")",
            "{ true } | max(name + 1) = 1",
        ];
        for q in invalid {
            assert!(parse(q).is_err(), "{q} should be rejected");
        }
    }

    #[test]
    fn operands_and_literals() {
        let q = parse(r#"{ 500ms < duration && span."a b" = `raw\d` && resource.x.y-z != nil }"#)
            .unwrap();
        let mut cmps = Vec::new();
        fn walk(e: &FieldExpr, out: &mut Vec<Comparison>) {
            match e {
                FieldExpr::Cmp(c) => out.push(c.clone()),
                FieldExpr::And(a, b) | FieldExpr::Or(a, b) => {
                    walk(a, out);
                    walk(b, out);
                }
                _ => {}
            }
        }
        let SpansetExpr::Filter(f) = &q.pipeline.head else {
            panic!()
        };
        walk(f, &mut cmps);
        assert_eq!(cmps[0].field, Field::Intrinsic(Intrinsic::Duration));
        assert_eq!(
            cmps[0].op,
            CmpOp::Gt,
            "literal-left comparisons are flipped"
        );
        assert_eq!(cmps[0].value, Literal::Duration(500_000_000));
        assert_eq!(
            cmps[1].field,
            Field::Attr {
                scope: Scope::Span,
                name: "a b".into()
            }
        );
        assert_eq!(cmps[1].value, Literal::Str("raw\\d".into()));
        assert_eq!(
            cmps[2].field,
            Field::Attr {
                scope: Scope::Resource,
                name: "x.y-z".into()
            }
        );
        assert_eq!(q.fields.len(), 3);
        let q = parse(
            "{ span.n = -3 && .f = 2.5 && kind = client && status != error && span.b = false }",
        )
        .unwrap();
        assert_eq!(q.fields.len(), 5);
        assert!(parse("{ span:duration > 1m30s && trace:duration < 1.5s }").is_ok());
        assert!(parse("{span.http.response.status_code>=500}").is_ok());
        let re = parse(r#"{ name =~ "a|b" }"#).unwrap();
        let SpansetExpr::Filter(FieldExpr::Cmp(c)) = &re.pipeline.head else {
            panic!()
        };
        let re = c.regex.as_ref().unwrap();
        assert!(
            re.is_match("a") && !re.is_match("ab") && !re.is_match("xa"),
            "anchored"
        );
    }

    #[test]
    fn errors_carry_positions() {
        let cases: &[(&str, usize, &str)] = &[
            ("{ name = }", 10, "expected an attribute"),
            ("{ name = \"x\"", 13, "expected `}`"),
            ("{ name = \"x\" } | rate() by (x)", 18, "metrics"),
            ("{ bogus = 1 }", 3, "unknown intrinsic `bogus`"),
            ("{ trace:nope = 1 }", 3, "unknown intrinsic"),
            ("{ event:bogus = \"x\" }", 3, "unknown intrinsic"),
            ("{ parent.x = \"x\" }", 3, "not supported"),
            ("{ kind = error }", 3, "`kind` can only be compared"),
            ("{ name = duration }", 3, "different types"),
            ("{ 1 = \"x\" }", 3, "different types"),
            ("{ } >! { }", 6, "expected a spanset filter"),
            ("{ } |", 6, "expected a pipeline stage"),
            ("{ } | avg(name) > 1", 11, "numeric field"),
            ("({ } | by(.a)) && ({ })", 16, "coalesce"),
            ("({ } | count() > 1) && { }", 21, "parenthesised pipeline"),
            ("{ .a = 1 } | count() =~ 1", 22, "expected a comparison"),
            ("\n{ x = 1 }", 4, "unknown intrinsic"),
            ("{ name = \"é\" } | nope()", 18, "unknown pipeline stage"),
        ];
        for (q, col, word) in cases {
            let e = err(q);
            assert_eq!(e.column, *col, "{q}: {e}");
            assert!(e.message.contains(word), "{q}: {e}");
            assert!(e.to_string().contains(&format!("column {col} ")), "{e}");
        }
        assert_eq!(err("{ x = 1 }").offset, 2);
    }
}
