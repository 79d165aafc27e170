//! Recording outcomes and the final summary (terminal table and JSON).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::mix::Endpoint;

/// How many slowest and failed requests the summary names.
pub const TOP: usize = 10;

/// What happened to one request.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub endpoint: Endpoint,
    /// `None`: no HTTP answer (connection refused, timeout, reset).
    pub status: Option<u16>,
    pub latency: Duration,
    pub trace_id: Option<String>,
    /// The error's `code` from the JSON body, or the transport error.
    pub error: Option<String>,
    /// The status the plan called for (201, 402 for the declined card, 404 for a random id…).
    pub expected_status: u16,
}

impl Outcome {
    pub fn failed(&self) -> bool {
        !self.status.is_some_and(|s| (200..300).contains(&s))
    }

    /// A failure the run did not ask for (anything but a planned decline or a planned 404).
    pub fn unexpected(&self) -> bool {
        self.status != Some(self.expected_status)
    }
}

/// One request named in the summary.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct TraceRef {
    pub trace_id: Option<String>,
    pub endpoint: &'static str,
    pub status: Option<u16>,
    pub latency_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub expected: bool,
}

impl TraceRef {
    fn of(o: &Outcome) -> Self {
        TraceRef {
            trace_id: o.trace_id.clone(),
            endpoint: o.endpoint.route(),
            status: o.status,
            latency_ms: ms(o.latency),
            error: o.error.clone(),
            expected: !o.unexpected(),
        }
    }
}

#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq)]
pub struct Latency {
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

impl Latency {
    /// Percentiles of a histogram of microseconds.
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Latency::default();
        }
        let q = |q: f64| h.value_at_quantile(q) as f64 / 1e3;
        Latency {
            p50_ms: q(0.50),
            p90_ms: q(0.90),
            p99_ms: q(0.99),
            max_ms: h.max() as f64 / 1e3,
            mean_ms: (h.mean() / 1e3 * 100.0).round() / 100.0,
        }
    }
}

pub fn new_histogram() -> Histogram<u64> {
    // 1 µs to 1 h at 3 significant digits; a value past the top is clamped, never lost.
    Histogram::new_with_bounds(1, 3_600_000_000, 3)
        .unwrap_or_else(|_| Histogram::new(3).unwrap_or_else(|_| unreachable!()))
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

struct EndpointStats {
    count: u64,
    errors: u64,
    latency: Histogram<u64>,
}

/// Every outcome of a run, aggregated as it arrives.
pub struct Recorder {
    latency: Histogram<u64>,
    endpoints: [EndpointStats; 3],
    statuses: BTreeMap<u16, u64>,
    pub answered: u64,
    pub transport_errors: u64,
    pub errors: u64,
    pub unexpected_errors: u64,
    pub untraced: u64,
    slowest: Vec<Outcome>,
    failed_unexpected: Vec<Outcome>,
    failed_expected: Vec<Outcome>,
}

impl Default for Recorder {
    fn default() -> Self {
        let endpoint = || EndpointStats {
            count: 0,
            errors: 0,
            latency: new_histogram(),
        };
        Recorder {
            latency: new_histogram(),
            endpoints: [endpoint(), endpoint(), endpoint()],
            statuses: BTreeMap::new(),
            answered: 0,
            transport_errors: 0,
            errors: 0,
            unexpected_errors: 0,
            untraced: 0,
            slowest: Vec::new(),
            failed_unexpected: Vec::new(),
            failed_expected: Vec::new(),
        }
    }
}

impl Recorder {
    pub fn record(&mut self, o: Outcome) {
        let micros = u64::try_from(o.latency.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        let e = &mut self.endpoints[o.endpoint.index()];
        e.count += 1;
        e.latency.saturating_record(micros);
        match o.status {
            Some(status) => {
                self.answered += 1;
                *self.statuses.entry(status).or_default() += 1;
                // Only answered requests measure the fleet; a refused connection is not latency.
                self.latency.saturating_record(micros);
                if o.trace_id.is_none() {
                    self.untraced += 1;
                }
            }
            None => self.transport_errors += 1,
        }
        if o.failed() {
            self.errors += 1;
            e.errors += 1;
            if o.unexpected() {
                self.unexpected_errors += 1;
                push_capped(&mut self.failed_unexpected, &o);
            } else {
                push_capped(&mut self.failed_expected, &o);
            }
        }
        if o.status.is_some() {
            self.keep_if_slow(o);
        }
    }

    fn keep_if_slow(&mut self, o: Outcome) {
        if self.slowest.len() < TOP {
            self.slowest.push(o);
        } else if let Some((i, fastest)) = self
            .slowest
            .iter()
            .enumerate()
            .min_by_key(|(_, s)| s.latency)
            && fastest.latency < o.latency
        {
            self.slowest[i] = o;
        }
    }

    pub fn completed(&self) -> u64 {
        self.answered + self.transport_errors
    }

    pub fn latency(&self) -> Latency {
        Latency::of(&self.latency)
    }

    pub fn endpoint_summaries(&self) -> Vec<EndpointSummary> {
        Endpoint::ALL
            .iter()
            .map(|e| {
                let s = &self.endpoints[e.index()];
                EndpointSummary {
                    endpoint: e.route(),
                    count: s.count,
                    errors: s.errors,
                    latency: Latency::of(&s.latency),
                }
            })
            .collect()
    }

    pub fn statuses(&self) -> BTreeMap<String, u64> {
        self.statuses
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect()
    }

    /// Slowest first.
    pub fn slowest(&self) -> Vec<TraceRef> {
        let mut s = self.slowest.clone();
        s.sort_by_key(|o| std::cmp::Reverse(o.latency));
        s.iter().map(TraceRef::of).collect()
    }

    /// Unexpected failures first (5xx, transport errors…), then planned ones (declines, 404s).
    pub fn failed(&self) -> Vec<TraceRef> {
        self.failed_unexpected
            .iter()
            .chain(&self.failed_expected)
            .take(TOP)
            .map(TraceRef::of)
            .collect()
    }
}

fn push_capped(list: &mut Vec<Outcome>, o: &Outcome) {
    if list.len() < TOP {
        list.push(o.clone());
    }
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct EndpointSummary {
    pub endpoint: &'static str,
    pub count: u64,
    pub errors: u64,
    pub latency: Latency,
}

/// Everything `fleet load` reports; `--json` writes exactly this.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    pub url: String,
    /// `open` (constant arrival rate) or `closed` (concurrency).
    pub model: &'static str,
    pub rate: Option<f64>,
    pub concurrency: Option<usize>,
    pub mix: String,
    pub seed: u64,
    pub duration_s: Option<f64>,
    /// Requests sent (answered or not); dropped ones are not sent.
    pub requests: u64,
    pub answered: u64,
    /// Open model: arrivals not sent because `--max-in-flight` requests were already out.
    pub dropped: u64,
    pub transport_errors: u64,
    /// Non-2xx answers plus transport errors.
    pub errors: u64,
    /// Errors the run did not plan (everything but declined-card 402s and random-id 404s).
    pub unexpected_errors: u64,
    /// Answers without an `x-trace-id` header (should be 0).
    pub untraced: u64,
    pub statuses: BTreeMap<String, u64>,
    /// From the first send until sending stopped.
    pub send_window_s: f64,
    /// From the first send until the last answer.
    pub elapsed_s: f64,
    /// `requests / send_window_s`.
    pub achieved_rate: f64,
    /// Open model: the latest any arrival was sent after its due time.
    pub max_schedule_lag_ms: f64,
    pub latency: Latency,
    pub endpoints: Vec<EndpointSummary>,
    pub slowest: Vec<TraceRef>,
    pub failed: Vec<TraceRef>,
    /// Traces made before the run proper (the catalogue read at start).
    pub setup_trace_ids: Vec<String>,
    /// Stopped by Ctrl-C / SIGTERM.
    pub interrupted: bool,
    pub tempo_url: String,
}

impl Summary {
    /// The terminal report.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let model = match (self.rate, self.concurrency) {
            (Some(rate), _) => format!("open model, {} req/s", num(rate)),
            (None, Some(c)) => format!("closed model, {c} workers"),
            _ => self.model.to_owned(),
        };
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "fleet load: {model}, mix {}, seed {} → {}{}",
            self.mix,
            self.seed,
            self.url,
            if self.interrupted {
                " (interrupted)"
            } else {
                ""
            }
        );
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "  requests   {} sent · {} answered · {} dropped · {} transport errors",
            self.requests, self.answered, self.dropped, self.transport_errors
        );
        let _ = writeln!(
            out,
            "  rate       {} req/s sent{} over {} s{}",
            num(self.achieved_rate),
            self.rate
                .map(|r| format!(" of {} offered", num(r)))
                .unwrap_or_default(),
            num(self.send_window_s),
            if self.rate.is_some() {
                format!(" (max schedule lag {} ms)", num(self.max_schedule_lag_ms))
            } else {
                String::new()
            }
        );
        let statuses: Vec<String> = self
            .statuses
            .iter()
            .map(|(s, n)| format!("{s} × {n}"))
            .collect();
        let _ = writeln!(
            out,
            "  statuses   {}",
            if statuses.is_empty() {
                "none".to_owned()
            } else {
                statuses.join(" · ")
            }
        );
        let _ = writeln!(
            out,
            "  errors     {} ({} unexpected; declined-card 402s and random-id 404s are planned)",
            self.errors, self.unexpected_errors
        );
        let l = &self.latency;
        let _ = writeln!(
            out,
            "  latency    p50 {} ms · p90 {} ms · p99 {} ms · max {} ms",
            num(l.p50_ms),
            num(l.p90_ms),
            num(l.p99_ms),
            num(l.max_ms)
        );
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "  {:<18} {:>7} {:>7} {:>9} {:>9} {:>9}",
            "endpoint", "count", "errors", "p50 ms", "p99 ms", "max ms"
        );
        for e in &self.endpoints {
            let _ = writeln!(
                out,
                "  {:<18} {:>7} {:>7} {:>9} {:>9} {:>9}",
                e.endpoint,
                e.count,
                e.errors,
                num(e.latency.p50_ms),
                num(e.latency.p99_ms),
                num(e.latency.max_ms)
            );
        }
        let line = |t: &TraceRef| {
            format!(
                "    {:>9} ms  {:<3}  {:<17} {}{}",
                num(t.latency_ms),
                t.status.map_or("—".to_owned(), |s| s.to_string()),
                t.endpoint,
                t.trace_id.as_deref().unwrap_or("(no trace id)"),
                match (&t.error, t.expected) {
                    (Some(e), true) => format!("  {e} (planned)"),
                    (Some(e), false) => format!("  {e}"),
                    (None, _) => String::new(),
                }
            )
        };
        if !self.slowest.is_empty() {
            let _ = writeln!(out);
            let _ = writeln!(out, "  slowest");
            for t in &self.slowest {
                let _ = writeln!(out, "{}", line(t));
            }
        }
        if !self.failed.is_empty() {
            let _ = writeln!(out);
            let _ = writeln!(
                out,
                "  failed (first {}, unexpected first){}",
                self.failed.len(),
                if self.errors > self.failed.len() as u64 {
                    format!(", {} in all", self.errors)
                } else {
                    String::new()
                }
            );
            for t in &self.failed {
                let _ = writeln!(out, "{}", line(t));
            }
        }
        let example = self
            .failed
            .iter()
            .find(|t| !t.expected)
            .or(self.slowest.first())
            .and_then(|t| t.trace_id.clone())
            .unwrap_or_else(|| "<id>".to_owned());
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "  read one:   fleet trace {example}   or   curl {}/api/traces/{example}",
            self.tempo_url.trim_end_matches('/')
        );
        out
    }
}

/// Up to one decimal under 100, whole numbers above.
pub fn num(v: f64) -> String {
    if v.abs() >= 100.0 || v == v.trunc() {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(ms: u64, status: Option<u16>, expected: u16) -> Outcome {
        Outcome {
            endpoint: Endpoint::Checkout,
            status,
            latency: Duration::from_millis(ms),
            trace_id: Some(format!("{ms:032x}")),
            error: None,
            expected_status: expected,
        }
    }

    #[test]
    fn percentiles_of_one_to_a_thousand_ms() {
        let mut r = Recorder::default();
        for ms in 1..=1000 {
            r.record(outcome(ms, Some(201), 201));
        }
        let l = r.latency();
        // HDR at 3 significant digits: within 0.1 %.
        let near = |got: f64, want: f64| (got - want).abs() <= want * 0.001 + 0.001;
        assert!(near(l.p50_ms, 500.0), "{l:?}");
        assert!(near(l.p90_ms, 900.0), "{l:?}");
        assert!(near(l.p99_ms, 990.0), "{l:?}");
        assert!(near(l.max_ms, 1000.0), "{l:?}");
        assert!(near(l.mean_ms, 500.5), "{l:?}");
    }

    #[test]
    fn percentiles_with_a_slow_tail() {
        let mut r = Recorder::default();
        for _ in 0..95 {
            r.record(outcome(10, Some(200), 200));
        }
        for _ in 0..5 {
            r.record(outcome(2000, Some(200), 200));
        }
        let l = r.latency();
        assert!((l.p50_ms - 10.0).abs() < 0.02, "{l:?}");
        assert!((l.p90_ms - 10.0).abs() < 0.02, "{l:?}");
        assert!((l.p99_ms - 2000.0).abs() < 2.0, "{l:?}");
        assert!((l.max_ms - 2000.0).abs() < 2.0, "{l:?}");
        assert_eq!(Latency::of(&new_histogram()), Latency::default());
    }

    #[test]
    fn keeps_the_slowest_ten_slowest_first() {
        let mut r = Recorder::default();
        for ms in [5, 50, 1, 70, 3, 90, 2, 8, 60, 40, 30, 20, 10, 100, 4] {
            r.record(outcome(ms, Some(201), 201));
        }
        let got: Vec<f64> = r.slowest().iter().map(|t| t.latency_ms).collect();
        assert_eq!(
            got,
            vec![100.0, 90.0, 70.0, 60.0, 50.0, 40.0, 30.0, 20.0, 10.0, 8.0]
        );
    }

    #[test]
    fn counts_statuses_errors_and_lists_unexpected_failures_first() {
        let mut r = Recorder::default();
        r.record(outcome(1, Some(201), 201));
        for _ in 0..12 {
            r.record(outcome(2, Some(402), 402)); // planned decline
        }
        r.record(outcome(3, Some(503), 201));
        r.record(Outcome {
            trace_id: None,
            error: Some("connection refused".into()),
            ..outcome(4, None, 201)
        });
        assert_eq!(r.completed(), 15);
        assert_eq!(r.answered, 14);
        assert_eq!(r.transport_errors, 1);
        assert_eq!(r.errors, 14);
        assert_eq!(r.unexpected_errors, 2);
        let statuses = r.statuses();
        assert_eq!(statuses["201"], 1);
        assert_eq!(statuses["402"], 12);
        assert_eq!(statuses["503"], 1);
        let failed = r.failed();
        assert_eq!(failed.len(), TOP);
        assert_eq!(failed[0].status, Some(503));
        assert_eq!(failed[1].status, None);
        assert!(!failed[0].expected && failed[2].expected);
        // Transport errors are not latency samples.
        assert!((r.latency().max_ms - 3.0).abs() < 0.01);
    }

    #[test]
    fn numbers_read_well() {
        assert_eq!(num(12.34), "12.3");
        assert_eq!(num(40.0), "40");
        assert_eq!(num(1234.4), "1234");
    }
}
