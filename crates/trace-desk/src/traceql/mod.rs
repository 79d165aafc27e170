//! TraceQL for the desk's `/api/search?q=`: a parser ([`parse`]) built with
//! `winnow` and an evaluator ([`eval`]) over the spans of one trace.
//!
//! The grammar and what is supported are documented in `docs/traceql.md`.

pub mod ast;
pub mod duration;
pub mod eval;
pub mod parser;

pub use ast::Query;
pub use duration::parse_go_duration;
pub use parser::{ParseError, parse};
