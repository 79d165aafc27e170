//! TraceQL metrics (`/api/metrics/query_range` and `/api/metrics/query`) over the store, with
//! Tempo 2.10's semantics: the request's range is aligned to the step (plus one leading step),
//! each step `i` covers spans that *started* in `(start + i·step, start + (i+1)·step]` and is
//! reported at its right edge, and the JSON is Tempo's `QueryRangeResponse` as jsonpb writes it.
//!
//! What the desk does differently from Tempo is listed in `docs/trace-desk.md` ("TraceQL
//! metrics").

pub mod compare;
pub mod eval;
pub mod parse;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use eval::{Outcome, evaluate, out_of_time};
pub use parse::{MetricsQuery, parse};

use crate::traceql::{ParseError, parse_go_duration};

/// Most steps a range query may ask for: Tempo's `query_frontend.metrics.max_intervals`
/// default. Checked before alignment (which adds up to two steps), as Tempo does.
pub const MAX_INTERVALS: u64 = 10_000;
/// Most series one answer holds: Tempo's `max_response_series` default. Spans of further
/// series are dropped and the answer is marked partial.
pub const MAX_SERIES: usize = 1_000;
/// Most step values one answer holds across its series: 4 MB of values and at most ~25 MB of
/// JSON. A query at the step bound holds fewer series than [`MAX_SERIES`] (49 at 10,001 steps);
/// one at Tempo's default step (~242 steps) all 1,000. Past it, as past [`MAX_SERIES`].
pub const MAX_CELLS: usize = 500_000;
/// Exemplars per answer when `exemplars` is absent or larger: Tempo's frontend default.
pub const MAX_EXEMPLARS: usize = 100;
/// Range when neither `start` nor `since` is given (Tempo's `defaultSince`).
pub const DEFAULT_SINCE: Duration = Duration::from_secs(3600);

const NANOS_PER_SEC: u64 = 1_000_000_000;
/// Latest timestamp and longest step accepted: Go's `time.Duration` range (int64 ns).
const MAX_NANOS: u64 = i64::MAX as u64;

/// What the desk accepts, appended to every query error.
pub const SUPPORTED: &str = "Metrics queries are `<spanset filter or search pipeline> | <function>` with rate(), count_over_time(), min_over_time(attr), max_over_time(attr), avg_over_time(attr), sum_over_time(attr), quantile_over_time(attr, q, ...), histogram_over_time(attr) or compare({ selection }, topN, start, end), optionally `by (attr, ...)`, then `| topk(n)`, `| bottomk(n)` or comparisons such as `> 10`, and `with(...)` hints (accepted, ignored); see docs/trace-desk.md";

/// `reason` labels of `trace_desk_metrics_queries_rejected_total`.
pub const REJECTION_REASONS: [&str; 6] = [
    "syntax",
    "too_long",
    "too_deep",
    "regex_too_big",
    "bad_parameter",
    "too_many_steps",
];

/// A metrics request the desk refuses (400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetricsError {
    /// A malformed parameter.
    #[error("{0}")]
    BadRequest(String),
    /// More steps than [`MAX_INTERVALS`].
    #[error("{0}")]
    TooManySteps(String),
    /// A query the desk cannot parse.
    #[error("invalid TraceQL metrics query at column {} (near {}): {}. {SUPPORTED}", .0.column, .0.near, .0.message)]
    Query(#[from] ParseError),
}

impl MetricsError {
    /// The `reason` label this refusal is counted under.
    pub fn reason(&self) -> &'static str {
        match self {
            MetricsError::BadRequest(_) => "bad_parameter",
            MetricsError::TooManySteps(_) => "too_many_steps",
            MetricsError::Query(e) => e.kind.label(),
        }
    }
}

/// Counters of the metrics endpoints, shown in `/metrics`.
#[derive(Debug, Default)]
pub struct Counters {
    rejected: [AtomicU64; REJECTION_REASONS.len()],
    queries: AtomicU64,
    partial: AtomicU64,
    series_capped: AtomicU64,
}

impl Counters {
    /// Counts a refusal.
    pub fn reject(&self, reason: &str) {
        if let Some(i) = REJECTION_REASONS.iter().position(|r| *r == reason) {
            self.rejected[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts an answered query.
    pub fn answered(&self, outcome: &Outcome) {
        self.queries.fetch_add(1, Ordering::Relaxed);
        if outcome.out_of_time {
            self.partial.fetch_add(1, Ordering::Relaxed);
        }
        if outcome.series_capped {
            self.series_capped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Prometheus text of the counters.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut metric = |name: &str, help: &str, value: u64| {
            crate::prom_text::write(&mut out, name, "counter", help, value)
        };
        metric(
            "trace_desk_metrics_queries_total",
            "TraceQL metrics queries answered (query_range and instant, complete or partial).",
            self.queries.load(Ordering::Relaxed),
        );
        metric(
            "trace_desk_metrics_queries_partial_total",
            "TraceQL metrics queries whose time budget (DESK_QUERY_TIMEOUT) ran out; they answered with the traces inspected so far.",
            self.partial.load(Ordering::Relaxed),
        );
        metric(
            "trace_desk_metrics_series_capped_total",
            "TraceQL metrics queries that reached the series bound (1,000 series, or 500,000 step values) and dropped further series.",
            self.series_capped.load(Ordering::Relaxed),
        );
        out.push_str(
            "# HELP trace_desk_metrics_queries_rejected_total TraceQL metrics queries refused with 400, by reason (syntax, too_long, too_deep, regex_too_big, bad_parameter, too_many_steps: over 10000 steps).\n# TYPE trace_desk_metrics_queries_rejected_total counter\n",
        );
        for (reason, n) in REJECTION_REASONS.iter().zip(&self.rejected) {
            out.push_str(&format!(
                "trace_desk_metrics_queries_rejected_total{{reason=\"{reason}\"}} {}\n",
                n.load(Ordering::Relaxed)
            ));
        }
        out
    }
}

/// A checked metrics request: the query and its window, aligned as Tempo aligns it.
#[derive(Debug, Clone)]
pub struct MetricsRequest {
    /// The parsed query.
    pub query: MetricsQuery,
    /// Window start, unix nanoseconds (exclusive: spans must start after it).
    pub start: u64,
    /// Window end, unix nanoseconds (inclusive).
    pub end: u64,
    /// Step, nanoseconds; `end - start` for an instant query.
    pub step: u64,
    /// Exemplars wanted (0 for instant queries).
    pub exemplars: usize,
    /// One value per series over the whole window (`/api/metrics/query`).
    pub instant: bool,
}

impl MetricsRequest {
    /// Number of steps.
    pub fn intervals(&self) -> usize {
        if self.instant || self.step == 0 {
            return 1;
        }
        usize::try_from((self.end - self.start) / self.step).unwrap_or(usize::MAX)
    }

    /// The step a span starting at `ts` (unix ns) falls into: steps are right-closed.
    pub fn interval_of(&self, ts: u64) -> Option<usize> {
        if ts <= self.start || ts > self.end {
            return None;
        }
        if self.instant {
            return Some(0);
        }
        let offset = ts - self.start;
        let mut i = offset / self.step;
        if i * self.step == offset {
            i -= 1;
        }
        usize::try_from(i).ok()
    }

    /// Timestamp (unix ns) a step is reported at: its right edge.
    pub fn timestamp_of(&self, i: usize) -> u64 {
        self.start + (i as u64 + 1) * self.step
    }
}

fn param<'a>(params: &'a HashMap<String, String>, name: &str) -> Option<&'a str> {
    params.get(name).map(|v| v.trim()).filter(|v| !v.is_empty())
}

/// Tempo's `parseTimestamp`: float seconds, integer seconds (≤ 10 digits) or nanoseconds, or
/// RFC 3339.
fn timestamp(name: &str, v: &str) -> Result<u64, MetricsError> {
    let bad = || {
        MetricsError::BadRequest(format!(
            "could not parse '{name}' parameter: expected unix seconds, unix nanoseconds or RFC 3339, got {v:?}"
        ))
    };
    if v.contains('.')
        && let Ok(f) = v.parse::<f64>()
    {
        if !(0.0..1e11).contains(&f) {
            return Err(bad());
        }
        // Millisecond precision, as Tempo rounds the fraction.
        let secs = f.trunc() as u64;
        let ms = ((f - f.trunc()) * 1000.0).round() as u64;
        return Ok(secs * NANOS_PER_SEC + ms * 1_000_000);
    }
    // Go's time stops at 2262 (int64 nanoseconds); so does the desk, which keeps the step
    // arithmetic clear of overflow.
    let in_range = |ns: u64| (ns <= MAX_NANOS).then_some(ns);
    if let Ok(n) = v.parse::<u64>() {
        return in_range(if v.len() <= 10 {
            n.saturating_mul(NANOS_PER_SEC)
        } else {
            n
        })
        .ok_or_else(bad);
    }
    humantime::parse_rfc3339_weak(v)
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .and_then(|d| u64::try_from(d.as_nanos()).ok())
        .and_then(in_range)
        .ok_or_else(bad)
}

/// Prometheus-style durations for `since`: Go durations plus `d`, `w` and `y`.
fn since_duration(v: &str) -> Result<u64, MetricsError> {
    let bad =
        |why: String| MetricsError::BadRequest(format!("could not parse 'since' parameter: {why}"));
    for (suffix, unit) in [("d", 86_400u64), ("w", 7 * 86_400), ("y", 365 * 86_400)] {
        if let Some(n) = v.strip_suffix(suffix)
            && let Ok(n) = n.parse::<u64>()
        {
            return n
                .checked_mul(unit * NANOS_PER_SEC)
                .ok_or_else(|| bad(format!("{v:?} is too long")));
        }
    }
    parse_go_duration(v).map_err(|e| bad(e.to_string()))
}

/// Tempo's `parseSecondsOrDuration` for `step`: float seconds or a Go duration.
fn step_duration(v: &str) -> Result<u64, MetricsError> {
    if let Ok(f) = v.parse::<f64>() {
        let ns = f * 1e9;
        if !ns.is_finite() || ns < 0.0 || ns > MAX_NANOS as f64 {
            return Err(MetricsError::BadRequest(format!(
                "invalid step: cannot parse {v:?} to a valid duration"
            )));
        }
        return Ok(ns as u64);
    }
    parse_go_duration(v)
        .ok()
        .filter(|ns| *ns <= MAX_NANOS)
        .ok_or_else(|| {
            MetricsError::BadRequest(format!(
                "invalid step: cannot parse {v:?} to a valid duration (a Go duration such as 15s or 1m, or seconds)"
            ))
        })
}

/// Tempo's `DefaultQueryRangeStep`: about 240 steps, rounded down to 5 s (or 1 s below 5 s),
/// at least 1 s.
pub fn default_step(start: u64, end: u64) -> u64 {
    let baseline = end.saturating_sub(start) / 240;
    let five = 5 * NANOS_PER_SEC;
    let mut interval = baseline / five * five;
    if interval < five {
        interval = baseline / NANOS_PER_SEC * NANOS_PER_SEC;
    }
    interval.max(NANOS_PER_SEC)
}

/// Go's `time.Duration.String()` (`1m30s`, `250ms`), for Tempo's wording of the step bound.
pub fn go_duration(ns: u64) -> String {
    if ns == 0 {
        return "0s".to_string();
    }
    let frac = |v: u64, unit: u64| {
        let whole = v / unit;
        let rest = v % unit;
        if rest == 0 {
            whole.to_string()
        } else {
            let digits = unit.ilog10() as usize;
            let s = format!("{whole}.{rest:0digits$}");
            s.trim_end_matches('0').to_string()
        }
    };
    if ns < 1_000 {
        return format!("{ns}ns");
    }
    if ns < 1_000_000 {
        return format!("{}µs", frac(ns, 1_000));
    }
    if ns < NANOS_PER_SEC {
        return format!("{}ms", frac(ns, 1_000_000));
    }
    let h = ns / (3600 * NANOS_PER_SEC);
    let m = ns / (60 * NANOS_PER_SEC) % 60;
    let s = ns % (60 * NANOS_PER_SEC);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if h > 0 || m > 0 {
        out.push_str(&format!("{m}m"));
    }
    out.push_str(&format!("{}s", frac(s, NANOS_PER_SEC)));
    out
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

impl MetricsRequest {
    /// Parses the parameters of `/api/metrics/query_range` (`instant` false) or
    /// `/api/metrics/query` (`instant` true) as Tempo does, `now` being the current time.
    pub fn from_params(
        params: &HashMap<String, String>,
        instant: bool,
    ) -> Result<Self, MetricsError> {
        Self::from_params_at(params, instant, now_ns())
    }

    /// [`MetricsRequest::from_params`] at a given current time (unix ns).
    pub fn from_params_at(
        params: &HashMap<String, String>,
        instant: bool,
        now: u64,
    ) -> Result<Self, MetricsError> {
        // `q` wins over Prometheus' `query`, as in Tempo.
        let Some(q) = param(params, "q").or_else(|| param(params, "query")) else {
            return Err(MetricsError::BadRequest(
                "missing q: a TraceQL metrics query such as `{ } | rate()`".to_string(),
            ));
        };
        let query = parse(q)?;
        let since = match param(params, "since") {
            Some(v) => since_duration(v)?,
            None => DEFAULT_SINCE.as_nanos() as u64,
        };
        let end = match param(params, "end") {
            Some(v) => timestamp("end", v)?,
            None => now,
        };
        let start = match param(params, "start") {
            Some(v) => timestamp("start", v)?,
            None => end.min(now).saturating_sub(since),
        };
        if start >= end {
            return Err(MetricsError::BadRequest(format!(
                "invalid start: end must be greater than start (start={start} end={end}, unix ns)"
            )));
        }
        let exemplars = if instant {
            0
        } else {
            match param(params, "exemplars") {
                None => MAX_EXEMPLARS,
                Some(v) => match v.parse::<usize>() {
                    Ok(0) => MAX_EXEMPLARS,
                    Ok(n) => n.min(MAX_EXEMPLARS),
                    Err(_) => {
                        return Err(MetricsError::BadRequest(format!(
                            "invalid exemplars: expected a non-negative integer, got {v:?}"
                        )));
                    }
                },
            }
        };
        if instant {
            return Ok(Self {
                query,
                start,
                end,
                step: end - start,
                exemplars,
                instant,
            });
        }
        let step = match param(params, "step") {
            Some(v) => step_duration(v)?,
            None => default_step(start, end),
        };
        if step == 0 {
            return Err(MetricsError::BadRequest(
                "invalid step: step must be greater than 0".to_string(),
            ));
        }
        if (end - start) / step > MAX_INTERVALS {
            return Err(MetricsError::TooManySteps(format!(
                "step of {} is too small, minimum step for given range is {} (the desk answers at most {MAX_INTERVALS} steps per series)",
                go_duration(step),
                go_duration((end - start) / MAX_INTERVALS)
            )));
        }
        // Tempo's AlignRequest: start down and end up to the step, then one more step in front.
        let mut start = start - start % step;
        let end = match end % step {
            0 => end,
            r => end.saturating_add(step - r),
        };
        if start > step {
            start -= step;
        }
        Ok(Self {
            query,
            start,
            end,
            step,
            exemplars,
            instant,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(pairs: &[(&str, &str)], instant: bool) -> Result<MetricsRequest, MetricsError> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        MetricsRequest::from_params_at(&m, instant, 1_700_000_000 * NANOS_PER_SEC)
    }

    #[test]
    fn default_steps_follow_tempo() {
        let h = 3600 * NANOS_PER_SEC;
        assert_eq!(default_step(0, h), 15 * NANOS_PER_SEC);
        assert_eq!(default_step(0, 6 * h), 90 * NANOS_PER_SEC);
        assert_eq!(default_step(0, 15 * 60 * NANOS_PER_SEC), 3 * NANOS_PER_SEC);
        assert_eq!(default_step(0, 60 * NANOS_PER_SEC), NANOS_PER_SEC);
        assert_eq!(default_step(0, 1_000 * NANOS_PER_SEC), 4 * NANOS_PER_SEC);
        assert_eq!(default_step(0, 1_300 * NANOS_PER_SEC), 5 * NANOS_PER_SEC);
    }

    #[test]
    fn alignment_adds_a_leading_step() {
        let r = req(
            &[
                ("q", "{} | rate()"),
                ("start", "1000"),
                ("end", "1055"),
                ("step", "10s"),
            ],
            false,
        )
        .unwrap();
        assert_eq!(r.start, 990 * NANOS_PER_SEC);
        assert_eq!(r.end, 1060 * NANOS_PER_SEC);
        assert_eq!(r.intervals(), 7);
        assert_eq!(r.timestamp_of(0), 1000 * NANOS_PER_SEC);
        assert_eq!(r.interval_of(1000 * NANOS_PER_SEC), Some(0));
        assert_eq!(r.interval_of(1000 * NANOS_PER_SEC + 1), Some(1));
        assert_eq!(r.interval_of(990 * NANOS_PER_SEC), None);
        assert_eq!(r.interval_of(1060 * NANOS_PER_SEC), Some(6));
        assert_eq!(r.interval_of(1060 * NANOS_PER_SEC + 1), None);
    }

    #[test]
    fn parameters() {
        // since, default end = now.
        let r = req(
            &[("q", "{} | rate()"), ("since", "15m"), ("step", "60")],
            false,
        )
        .unwrap();
        // now = 1_700_000_000 s, up to the next minute; now - 15m down to its minute, less one step.
        assert_eq!(r.end, 1_700_000_040 * NANOS_PER_SEC);
        assert_eq!(r.start, 1_699_999_020 * NANOS_PER_SEC);
        // nanoseconds and RFC 3339.
        let r = req(
            &[
                ("q", "{} | rate()"),
                ("start", "2023-11-14T22:00:00Z"),
                ("end", "1700000000000000000"),
                ("step", "1m"),
            ],
            false,
        )
        .unwrap();
        assert_eq!(r.step, 60 * NANOS_PER_SEC);
        assert_eq!(r.end, 1_700_000_040 * NANOS_PER_SEC);
        // Instant: the window as given.
        let r = req(
            &[("q", "{} | rate()"), ("start", "100"), ("end", "160")],
            true,
        )
        .unwrap();
        assert_eq!(
            (r.start, r.end, r.step, r.exemplars),
            (
                100 * NANOS_PER_SEC,
                160 * NANOS_PER_SEC,
                60 * NANOS_PER_SEC,
                0
            )
        );
        assert!(matches!(
            req(&[("q", "{} | rate()"), ("start", "5"), ("end", "5")], false),
            Err(MetricsError::BadRequest(_))
        ));
        assert!(matches!(
            req(&[("q", "{} | rate()"), ("step", "0s")], false),
            Err(MetricsError::BadRequest(_))
        ));
        assert!(matches!(
            req(&[("q", "{} | rate()"), ("start", "yesterday")], false),
            Err(MetricsError::BadRequest(_))
        ));
        assert!(matches!(
            req(&[("q", "{ } | search")], false),
            Err(MetricsError::Query(_))
        ));
        assert!(matches!(req(&[], false), Err(MetricsError::BadRequest(_))));
        // Past Go's time range (2262), and steps longer than it.
        assert!(matches!(
            req(
                &[("q", "{} | rate()"), ("end", "18446744073709551615")],
                false
            ),
            Err(MetricsError::BadRequest(_))
        ));
        assert!(matches!(
            req(&[("q", "{} | rate()"), ("step", "1e300")], false),
            Err(MetricsError::BadRequest(_))
        ));
    }

    #[test]
    fn step_bound_is_tempos() {
        let ok = req(
            &[
                ("q", "{} | rate()"),
                ("start", "0"),
                ("end", "10000"),
                ("step", "1s"),
            ],
            false,
        );
        assert!(ok.is_ok());
        let e = req(
            &[
                ("q", "{} | rate()"),
                ("start", "0"),
                ("end", "10001"),
                ("step", "1s"),
            ],
            false,
        )
        .unwrap_err();
        assert_eq!(e.reason(), "too_many_steps");
        assert!(
            e.to_string()
                .starts_with("step of 1s is too small, minimum step for given range is 1.0001s"),
            "{e}"
        );
    }

    #[test]
    fn go_durations() {
        assert_eq!(go_duration(90 * NANOS_PER_SEC), "1m30s");
        assert_eq!(go_duration(3600 * NANOS_PER_SEC), "1h0m0s");
        assert_eq!(go_duration(1_500_000), "1.5ms");
        assert_eq!(go_duration(15 * NANOS_PER_SEC), "15s");
    }
}
