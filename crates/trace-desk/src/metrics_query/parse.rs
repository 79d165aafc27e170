//! Parses a TraceQL metrics query: `spansetPipeline | metricsFunction(...) [by (...)]
//! [| topk(n) | bottomk(n) | > x ...] [with (...)]`.
//!
//! The part before the metrics `|` goes to the search parser ([`traceql::parse`]) unchanged, so
//! every construct search accepts works in front of a metrics function. Fields inside `by()`,
//! `*_over_time()` and the `compare()` selection are parsed by the search parser too (through a
//! `select()` stage), so field syntax and its errors are the same as in search.

use crate::traceql::ast::{CmpOp, Field, Intrinsic, Stage};
use crate::traceql::parser::{ParseError, Rejection, snippet as near};
use crate::traceql::{self, Query};

/// Metrics functions, as written in the query.
pub const FUNCTIONS: [&str; 9] = [
    "rate",
    "count_over_time",
    "min_over_time",
    "max_over_time",
    "avg_over_time",
    "sum_over_time",
    "quantile_over_time",
    "histogram_over_time",
    "compare",
];

/// Most `by()` fields: Tempo's `maxGroupBys` (5), one fewer for the functions that group by a
/// histogram bucket too.
pub const MAX_GROUP_BYS: usize = 5;

/// Default `topN` of `compare()` (Tempo's default: the 10 most frequent values per attribute).
pub const DEFAULT_COMPARE_TOP_N: usize = 10;

/// The first-stage function.
#[derive(Debug, Clone)]
pub enum Function {
    /// `rate()`: spans per second in each step.
    Rate,
    /// `count_over_time()`: spans in each step.
    CountOverTime,
    /// `min_over_time(field)`.
    MinOverTime(Field),
    /// `max_over_time(field)`.
    MaxOverTime(Field),
    /// `avg_over_time(field)`.
    AvgOverTime(Field),
    /// `sum_over_time(field)`.
    SumOverTime(Field),
    /// `quantile_over_time(field, q, ...)`.
    QuantileOverTime(Field, Vec<f64>),
    /// `histogram_over_time(field)`.
    HistogramOverTime(Field),
    /// `compare({selection}, topN, start, end)`.
    Compare {
        /// The selection spans are compared against the rest (the baseline).
        selection: Box<Query>,
        /// Values kept per attribute.
        top_n: usize,
        /// Selection window start, unix nanoseconds (0: the whole range).
        start_ns: u64,
        /// Selection window end, unix nanoseconds (0: the whole range).
        end_ns: u64,
    },
}

impl Function {
    /// Tempo's name of the function (the `__name__` label of ungrouped series).
    pub fn name(&self) -> &'static str {
        match self {
            Function::Rate => "rate",
            Function::CountOverTime => "count_over_time",
            Function::MinOverTime(_) => "min_over_time",
            Function::MaxOverTime(_) => "max_over_time",
            Function::AvgOverTime(_) => "avg_over_time",
            Function::SumOverTime(_) => "sum_over_time",
            Function::QuantileOverTime(..) => "quantile_over_time",
            Function::HistogramOverTime(_) => "histogram_over_time",
            Function::Compare { .. } => "compare",
        }
    }
}

/// A second-stage operation on the series.
#[derive(Debug, Clone, PartialEq)]
pub enum SecondStage {
    /// `| topk(n)`: at each step, the `n` series with the highest values.
    TopK(usize),
    /// `| bottomk(n)`: at each step, the `n` series with the lowest values.
    BottomK(usize),
    /// `> 10`, `<= 0.5`, ...: keeps the samples for which the comparison holds.
    Filter(CmpOp, f64),
}

/// A parsed metrics query.
#[derive(Debug, Clone)]
pub struct MetricsQuery {
    /// The spanset pipeline before the metrics function; `None` selects every span (`{}`).
    pub filter: Option<Query>,
    /// The metrics function.
    pub function: Function,
    /// `by(...)` fields.
    pub by: Vec<Field>,
    /// Second-stage operations, in order.
    pub second_stage: Vec<SecondStage>,
    /// `with(...)` hints as written (`key`, `value`); accepted and ignored.
    pub hints: Vec<(String, String)>,
}

/// A byte range of the query text and the error to report in it.
fn error_at(q: &str, offset: usize, message: impl Into<String>) -> ParseError {
    ParseError::at(q, offset, Rejection::Syntax, message)
}

/// Moves the column of an error from a sub-query parsed on its own (`text`, which sits at
/// byte `at` of `q`, after `prefix` bytes that the sub-parse was given in front of it).
fn shift(q: &str, e: ParseError, at: usize, prefix: usize) -> ParseError {
    if e.kind != Rejection::Syntax {
        // Length and depth bounds keep their own wording; place them at the sub-query.
        let mut moved = error_at(q, at, e.message);
        moved.kind = e.kind;
        return moved;
    }
    error_at(q, at + e.offset.saturating_sub(prefix), e.message)
}

/// Byte offsets of the top-level `|` (not `||`) of `q`, outside strings, braces and parentheses.
fn top_level_pipes(q: &str) -> Vec<usize> {
    let bytes = q.as_bytes();
    let mut out = Vec::new();
    let mut depth: usize = 0;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' | b'`' => {
                let quote = bytes[i];
                i += 1;
                while i < bytes.len() && bytes[i] != quote {
                    if quote == b'"' && bytes[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            b'{' | b'(' => depth += 1,
            b'}' | b')' => depth = depth.saturating_sub(1),
            b'|' if bytes.get(i + 1) == Some(&b'|') => i += 1,
            b'|' if depth == 0 => out.push(i),
            _ => {}
        }
        i += 1;
    }
    out
}

fn ident_len(s: &str) -> usize {
    s.bytes()
        .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_')
        .count()
}

fn skip_ws(q: &str, mut i: usize) -> usize {
    while q[i..].starts_with(|c: char| c.is_whitespace()) {
        i += q[i..].chars().next().map_or(1, char::len_utf8);
    }
    i
}

/// True when the text after a `|` at `pipe` starts a metrics function call.
fn starts_function(q: &str, pipe: usize) -> bool {
    let i = skip_ws(q, pipe + 1);
    let n = ident_len(&q[i..]);
    FUNCTIONS.contains(&&q[i..i + n]) && q[skip_ws(q, i + n)..].starts_with('(')
}

/// Finds the `)` closing the `(` at `open`, skipping strings and nested brackets.
fn closing(q: &str, open: usize) -> Option<usize> {
    let bytes = q.as_bytes();
    let mut depth = 0usize;
    let mut i = open;
    while i < bytes.len() {
        match bytes[i] {
            b'"' | b'`' => {
                let quote = bytes[i];
                i += 1;
                while i < bytes.len() && bytes[i] != quote {
                    if quote == b'"' && bytes[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            b'(' | b'{' => depth += 1,
            b')' | b'}' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return (bytes[i] == b')').then_some(i);
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// Splits `q[start..end]` at its top-level commas: (byte offset in `q`, trimmed text).
fn split_args<'q>(q: &'q str, start: usize, end: usize) -> Vec<(usize, &'q str)> {
    let bytes = q.as_bytes();
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut from = start;
    let mut i = start;
    let push = |from: usize, to: usize, out: &mut Vec<(usize, &'q str)>| {
        let raw = &q[from..to];
        let lead = raw.len() - raw.trim_start().len();
        out.push((from + lead, raw.trim()));
    };
    while i < end {
        match bytes[i] {
            b'"' | b'`' => {
                let quote = bytes[i];
                i += 1;
                while i < end && bytes[i] != quote {
                    if quote == b'"' && bytes[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            b'(' | b'{' => depth += 1,
            b')' | b'}' => depth = depth.saturating_sub(1),
            b',' if depth == 0 => {
                push(from, i, &mut out);
                from = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    if !q[from..end].trim().is_empty() || !out.is_empty() {
        push(from, end, &mut out);
    }
    out
}

/// Parses a comma-separated field list (`resource.service.name, name`) at byte `at` of `q`.
fn fields(q: &str, at: usize, text: &str) -> Result<Vec<Field>, ParseError> {
    const PREFIX: &str = "{} | select(";
    let parsed = traceql::parse(&format!("{PREFIX}{text})")).map_err(|e| {
        // The `)` we appended is the end of the caller's text.
        shift(q, e, at, PREFIX.len())
    })?;
    match parsed.pipeline.stages.as_slice() {
        [Stage::Select(fs)] => Ok(fs.clone()),
        _ => Err(error_at(
            q,
            at,
            "expected attribute names such as `resource.service.name`",
        )),
    }
}

fn one_field(q: &str, at: usize, text: &str, func: &str) -> Result<Field, ParseError> {
    if text.is_empty() {
        return Err(error_at(
            q,
            at,
            format!("{func}() needs an attribute, e.g. {func}(duration)"),
        ));
    }
    let mut fs = fields(q, at, text)?;
    if fs.len() != 1 {
        return Err(error_at(q, at, format!("{func}() takes one attribute")));
    }
    Ok(fs.remove(0))
}

fn number(q: &str, at: usize, text: &str, what: &str) -> Result<f64, ParseError> {
    text.parse::<f64>()
        .ok()
        .filter(|f| f.is_finite())
        .ok_or_else(|| error_at(q, at, format!("expected {what}, found {}", near(text))))
}

/// `true` when `q` is a match-all filter (`{}` or `{ true }`), which needs no evaluation.
fn is_match_all(q: &str) -> bool {
    let q: String = q.chars().filter(|c| !c.is_whitespace()).collect();
    q == "{}" || q == "{true}"
}

/// A timestamp argument of `compare()`: unix nanoseconds, as Tempo reads it.
fn compare_time(q: &str, at: usize, text: &str) -> Result<u64, ParseError> {
    text.parse::<u64>()
        .ok()
        .filter(|n| *n > 0 && *n <= i64::MAX as u64)
        .ok_or_else(|| {
            error_at(
                q,
                at,
                format!(
                    "compare() timestamps must be positive integer unix nanoseconds, found {}",
                    near(text)
                ),
            )
        })
}

fn function(q: &str, name: &str, open: usize, close: usize) -> Result<Function, ParseError> {
    let args = split_args(q, open + 1, close);
    let arg_at = |i: usize| args.get(i).map_or(close, |a| a.0);
    let no_args = |f: Function| {
        if args.is_empty() {
            Ok(f)
        } else {
            Err(error_at(
                q,
                arg_at(0),
                format!("{name}() takes no arguments"),
            ))
        }
    };
    let first = args.first().map_or("", |a| a.1);
    Ok(match name {
        "rate" => no_args(Function::Rate)?,
        "count_over_time" => no_args(Function::CountOverTime)?,
        "min_over_time"
        | "max_over_time"
        | "avg_over_time"
        | "sum_over_time"
        | "histogram_over_time" => {
            if args.len() > 1 {
                return Err(error_at(
                    q,
                    arg_at(1),
                    format!("{name}() takes one attribute"),
                ));
            }
            let f = one_field(q, arg_at(0), first, name)?;
            match name {
                "min_over_time" => Function::MinOverTime(f),
                "max_over_time" => Function::MaxOverTime(f),
                "avg_over_time" => Function::AvgOverTime(f),
                "sum_over_time" => Function::SumOverTime(f),
                _ => Function::HistogramOverTime(f),
            }
        }
        "quantile_over_time" => {
            let f = one_field(q, arg_at(0), first, name)?;
            if args.len() < 2 {
                return Err(error_at(
                    q,
                    close,
                    "quantile_over_time() needs at least one quantile, e.g. quantile_over_time(duration, .5, .99)",
                ));
            }
            let mut qs = Vec::new();
            for (at, text) in &args[1..] {
                let v = number(q, *at, text, "a quantile between 0 and 1")?;
                if !(0.0..=1.0).contains(&v) {
                    return Err(error_at(
                        q,
                        *at,
                        format!("quantile must be between 0 and 1: {v}"),
                    ));
                }
                qs.push(v);
            }
            Function::QuantileOverTime(f, qs)
        }
        "compare" => {
            let Some((at, sel)) = args.first().copied() else {
                return Err(error_at(
                    q,
                    close,
                    "compare() needs a spanset filter, e.g. compare({ status = error })",
                ));
            };
            if args.len() > 4 {
                return Err(error_at(
                    q,
                    arg_at(4),
                    "compare() takes at most 4 arguments: ({selection}, topN, start, end)",
                ));
            }
            if !sel.starts_with('{') {
                return Err(error_at(
                    q,
                    at,
                    format!(
                        "compare() needs a spanset filter first, found {}",
                        near(sel)
                    ),
                ));
            }
            let selection = traceql::parse(sel).map_err(|e| shift(q, e, at, 0))?;
            let top_n = match args.get(1) {
                None => DEFAULT_COMPARE_TOP_N,
                Some((at, text)) => match text.parse::<usize>() {
                    Ok(n) if n > 0 => n,
                    _ => {
                        return Err(error_at(
                            q,
                            *at,
                            format!(
                                "compare() topN must be a positive integer, found {}",
                                near(text)
                            ),
                        ));
                    }
                },
            };
            let start_ns = match args.get(2) {
                None => 0,
                Some((at, text)) => compare_time(q, *at, text)?,
            };
            let end_ns = match args.get(3) {
                None => 0,
                Some((at, text)) => compare_time(q, *at, text)?,
            };
            if args.len() == 3 {
                return Err(error_at(
                    q,
                    close,
                    "compare() takes both a start and an end, or neither",
                ));
            }
            if args.len() == 4 && end_ns <= start_ns {
                return Err(error_at(
                    q,
                    arg_at(3),
                    "compare() end timestamp must be greater than start timestamp",
                ));
            }
            Function::Compare {
                selection: Box::new(selection),
                top_n,
                start_ns,
                end_ns,
            }
        }
        _ => {
            return Err(error_at(
                q,
                open,
                format!("unknown metrics function {name}()"),
            ));
        }
    })
}

fn comparison(s: &str) -> Option<(CmpOp, usize)> {
    [
        (">=", CmpOp::Ge),
        ("<=", CmpOp::Le),
        ("!=", CmpOp::Ne),
        ("=", CmpOp::Eq),
        (">", CmpOp::Gt),
        ("<", CmpOp::Lt),
    ]
    .into_iter()
    .find(|(tok, _)| s.starts_with(tok))
    .map(|(tok, op)| (op, tok.len()))
}

/// Parses a whole metrics query.
pub fn parse(q: &str) -> Result<MetricsQuery, ParseError> {
    if q.len() > traceql::parser::MAX_QUERY_BYTES {
        // The search parser words the length bound.
        return Err(traceql::parse(q)
            .err()
            .unwrap_or_else(|| error_at(q, 0, "query too long")));
    }
    let Some(split) = top_level_pipes(q)
        .into_iter()
        .find(|p| starts_function(q, *p))
    else {
        return Err(error_at(
            q,
            q.len(),
            format!(
                "not a metrics query: expected `| <function>(...)` after the spanset filter, one of {}; e.g. `{{ }} | rate() by (resource.service.name)`",
                FUNCTIONS.join(", ")
            ),
        ));
    };
    let head = &q[..split];
    if head.trim().is_empty() {
        return Err(error_at(
            q,
            0,
            "expected a spanset filter such as `{ }` before the metrics function",
        ));
    }
    let filter = if is_match_all(head) {
        None
    } else {
        Some(traceql::parse(head)?)
    };

    // The function.
    let name_at = skip_ws(q, split + 1);
    let name_len = ident_len(&q[name_at..]);
    let name = &q[name_at..name_at + name_len];
    let open = skip_ws(q, name_at + name_len);
    let close =
        closing(q, open).ok_or_else(|| error_at(q, open, format!("unclosed `(` of {name}()")))?;
    let function = function(q, name, open, close)?;

    // by(...)
    let mut i = skip_ws(q, close + 1);
    let mut by = Vec::new();
    if q[i..].starts_with("by") && q[skip_ws(q, i + 2)..].starts_with('(') {
        let open = skip_ws(q, i + 2);
        let close = closing(q, open).ok_or_else(|| error_at(q, open, "unclosed `(` of by()"))?;
        let inner = &q[open + 1..close];
        let lead = inner.len() - inner.trim_start().len();
        if inner.trim().is_empty() {
            return Err(error_at(q, close, "by() needs at least one attribute"));
        }
        by = fields(q, open + 1 + lead, inner.trim())?;
        let max = match function {
            Function::QuantileOverTime(..) | Function::HistogramOverTime(_) => MAX_GROUP_BYS - 1,
            _ => MAX_GROUP_BYS,
        };
        if by.len() > max {
            return Err(error_at(
                q,
                open,
                format!(
                    "{}() supports at most {max} by() attributes, got {}",
                    function.name(),
                    by.len()
                ),
            ));
        }
        if matches!(function, Function::Compare { .. }) {
            return Err(error_at(q, i, "compare() does not take by()"));
        }
        i = skip_ws(q, close + 1);
    }

    // Second stage and hints.
    let second_at = i;
    let mut second_stage = Vec::new();
    let mut hints = Vec::new();
    while i < q.len() {
        let rest = &q[i..];
        if rest.starts_with('|') && !rest.starts_with("||") {
            let at = skip_ws(q, i + 1);
            let n = ident_len(&q[at..]);
            let word = &q[at..at + n];
            if word != "topk" && word != "bottomk" {
                return Err(error_at(
                    q,
                    at,
                    format!(
                        "expected topk(n) or bottomk(n) after the metrics function, found {}",
                        near(&q[at..])
                    ),
                ));
            }
            let open = skip_ws(q, at + n);
            if !q[open..].starts_with('(') {
                return Err(error_at(q, open, format!("expected `(` after {word}")));
            }
            let close = closing(q, open)
                .ok_or_else(|| error_at(q, open, format!("unclosed `(` of {word}()")))?;
            let text = q[open + 1..close].trim();
            let k = match text.parse::<usize>() {
                Ok(k) if k > 0 => k,
                _ => {
                    return Err(error_at(
                        q,
                        open + 1,
                        format!("{word}() needs a positive integer, found {}", near(text)),
                    ));
                }
            };
            second_stage.push(if word == "topk" {
                SecondStage::TopK(k)
            } else {
                SecondStage::BottomK(k)
            });
            i = skip_ws(q, close + 1);
        } else if let Some((op, len)) = comparison(rest) {
            let at = skip_ws(q, i + len);
            let n = q[at..]
                .bytes()
                .take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'+'))
                .count();
            let v = number(q, at, &q[at..at + n], "a number")?;
            second_stage.push(SecondStage::Filter(op, v));
            i = skip_ws(q, at + n);
        } else if rest.starts_with("with") && q[skip_ws(q, i + 4)..].starts_with('(') {
            let open = skip_ws(q, i + 4);
            let close =
                closing(q, open).ok_or_else(|| error_at(q, open, "unclosed `(` of with()"))?;
            for (at, arg) in split_args(q, open + 1, close) {
                let Some((k, v)) = arg.split_once('=') else {
                    return Err(error_at(
                        q,
                        at,
                        format!("expected a hint `name=value`, found {}", near(arg)),
                    ));
                };
                let k = k.trim();
                if k.is_empty() || ident_len(k) != k.len() {
                    return Err(error_at(
                        q,
                        at,
                        format!("expected a hint name, found {}", near(arg)),
                    ));
                }
                hints.push((k.to_string(), v.trim().to_string()));
            }
            i = skip_ws(q, close + 1);
            if i < q.len() {
                return Err(error_at(
                    q,
                    i,
                    format!(
                        "unexpected {} after with(...): hints end the query",
                        near(&q[i..])
                    ),
                ));
            }
        } else {
            return Err(error_at(
                q,
                i,
                format!(
                    "unexpected {}; expected by(...), `| topk(n)`, `| bottomk(n)`, a comparison such as `> 10`, with(...) or the end of the query",
                    near(rest)
                ),
            ));
        }
    }
    if !second_stage.is_empty() && matches!(function, Function::Compare { .. }) {
        // Tempo's grammar has no second stage after compare().
        return Err(error_at(
            q,
            second_at,
            "compare() cannot be followed by topk(), bottomk() or a comparison",
        ));
    }
    Ok(MetricsQuery {
        filter,
        function,
        by,
        second_stage,
        hints,
    })
}

/// True when `f` is the `duration` intrinsic, whose values Tempo reports in seconds.
pub fn is_duration(f: &Field) -> bool {
    matches!(f, Field::Intrinsic(Intrinsic::Duration))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn red_queries_parse() {
        let m = parse("{ status = error } | rate() by (resource.service.name)").unwrap();
        assert!(m.filter.is_some());
        assert!(matches!(m.function, Function::Rate));
        assert_eq!(m.by.len(), 1);
        assert_eq!(m.by[0].label(), "resource.service.name");

        let m = parse(
            "{} | quantile_over_time(duration, .5, .9, .99) by (resource.service.name, name)",
        )
        .unwrap();
        assert!(m.filter.is_none());
        match &m.function {
            Function::QuantileOverTime(f, qs) => {
                assert!(is_duration(f));
                assert_eq!(qs, &vec![0.5, 0.9, 0.99]);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(m.by.len(), 2);

        let m =
            parse("{ } | histogram_over_time(duration) with(sample=true, exemplars=5)").unwrap();
        assert_eq!(
            m.hints,
            vec![
                ("sample".into(), "true".into()),
                ("exemplars".into(), "5".into())
            ]
        );

        let m = parse("{} | rate() by (span.http.route) | topk(3) > 0.5").unwrap();
        assert_eq!(
            m.second_stage,
            vec![SecondStage::TopK(3), SecondStage::Filter(CmpOp::Gt, 0.5)]
        );

        let m =
            parse(r#"{ resource.service.name = "a|b" } | compare({ status = error }, 5)"#).unwrap();
        match m.function {
            Function::Compare { top_n, .. } => assert_eq!(top_n, 5),
            other => panic!("{other:?}"),
        }
        // A search pipeline in front of the function.
        assert!(parse("{ kind = server } | select(name) | count_over_time()").is_ok());
        assert!(parse("{ .a = 1 } || { .b = 2 } | rate()").is_ok());
    }

    #[test]
    fn errors_name_the_column() {
        let e = parse("{ } | rate() by (resource.service.name").unwrap_err();
        assert_eq!(e.column, 17, "{e}");
        let e = parse("{ } | rat()").unwrap_err();
        assert!(e.message.contains("not a metrics query"), "{e}");
        let e = parse("{ } | quantile_over_time(duration, 1.5)").unwrap_err();
        assert_eq!(e.column, 36, "{e}");
        assert!(e.message.contains("between 0 and 1"));
        let e = parse("{ } | rate() by (span.)").unwrap_err();
        assert!(e.column >= 18, "{e}");
        let e = parse("{ span.x = } | rate()").unwrap_err();
        assert_eq!(e.column, 12, "{e}");
        let e = parse("{ } | rate(duration)").unwrap_err();
        assert_eq!(e.column, 12, "{e}");
        let e = parse("{ } | rate() | topk(0)").unwrap_err();
        assert_eq!(e.column, 21, "{e}");
        let e = parse("{ } | rate() nonsense").unwrap_err();
        assert_eq!(e.column, 14, "{e}");
        let e = parse("{ } | compare({ status = error }, 10, 2000, 1000)").unwrap_err();
        assert!(e.message.contains("greater than start"), "{e}");
        let e = parse("{ } | compare({ status = error }, 10, 2000)").unwrap_err();
        assert!(e.message.contains("start and an end"), "{e}");
        let e = parse("{ } | compare({ status = error }) | topk(3)").unwrap_err();
        assert_eq!(e.column, 35, "{e}");
        let e = parse("{ } | compare(status = error)").unwrap_err();
        assert_eq!(e.column, 15, "{e}");
        let e = parse("{ } | rate() by (.a, .b, .c, .d, .e, .f)").unwrap_err();
        assert!(e.message.contains("at most 5"), "{e}");
    }
}
