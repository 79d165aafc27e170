//! Evaluates a [`MetricsRequest`] over a snapshot of the store and renders Tempo's JSON.
//!
//! Each held trace is matched with the search evaluator ([`tq::run`]); the spans it selects
//! that started inside the window are counted into series keyed by their `by()` values (and,
//! for histograms and quantiles, a log2 bucket). Series are plain per-step vectors, as in
//! Tempo's `StepAggregator`, bounded by [`MAX_SERIES`] and [`MAX_CELLS`].

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use serde_json::{Map, Value, json};

use super::parse::{Function, SecondStage, is_duration};
use super::{MAX_CELLS, MAX_SERIES, MetricsRequest};
use crate::jsonpb;
use crate::search::trace_id_hex;
use crate::store::{Store, StoredSpan};
use crate::traceql::ast::Field;
use crate::traceql::eval::{self as tq, TraceView, Val};

const NANOS_PER_SEC: f64 = 1e9;

/// A rendered metrics answer.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Tempo's `QueryRangeResponse` (or `QueryInstantResponse`) as JSON text, written without
    /// an intermediate JSON tree (an answer at the step-value bound holds 500,000 samples).
    pub body: String,
    /// The time budget ran out before every trace was inspected.
    pub out_of_time: bool,
    /// Series past [`MAX_SERIES`] / [`MAX_CELLS`] were dropped.
    pub series_capped: bool,
}

/// One exemplar: a span standing for a sample.
#[derive(Debug, Clone)]
pub(super) struct Exemplar {
    pub(super) labels: Vec<(String, Val)>,
    pub(super) value: f64,
    pub(super) ts_ms: u64,
}

/// One series: labels and a value per step.
#[derive(Debug, Clone)]
pub(super) struct Series {
    pub(super) labels: Vec<(String, Val)>,
    pub(super) values: Vec<f64>,
    /// Spans per step, for `avg_over_time`.
    pub(super) counts: Vec<f64>,
    pub(super) exemplars: Vec<Exemplar>,
}

/// A hashable form of a label value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum Key {
    Str(String),
    Int(i64),
    Float(u64),
    Bool(bool),
    Duration(u64),
    Nil,
}

pub(super) fn key(v: &Val) -> Key {
    match v {
        Val::Str(s) => Key::Str(s.clone()),
        Val::Int(n) => Key::Int(*n),
        Val::Float(f) if *f == 0.0 => Key::Float(0),
        Val::Float(f) => Key::Float(f.to_bits()),
        Val::Bool(b) => Key::Bool(*b),
        Val::Duration(d) => Key::Duration(*d),
        Val::Nil => Key::Nil,
    }
}

/// Tempo's `Log2Bucketize`: the next power of two at or above `v` (`v` ≥ 2).
pub fn log2_bucket(v: u64) -> f64 {
    2f64.powf((v as f64).log2().ceil())
}

/// Tempo's `Log2Quantile`: the `p` quantile of log2 buckets (`(upper bound, count)`, sorted by
/// bound), interpolating exponentially inside the bucket it falls in.
pub fn log2_quantile(p: f64, buckets: &[(f64, f64)]) -> f64 {
    if p.is_nan() || !(0.0..=1.0).contains(&p) || buckets.is_empty() {
        return 0.0;
    }
    let total_count: f64 = buckets.iter().map(|b| b.1).sum();
    if total_count <= 0.0 {
        return 0.0;
    }
    let max_samples = (p * total_count).ceil().max(1.0);
    let mut total = 0.0;
    let mut bucket = 0;
    for (i, (max, count)) in buckets.iter().enumerate() {
        bucket = i;
        if total + count > max_samples {
            break;
        }
        total += count;
        if total == max_samples {
            return *max;
        }
    }
    let interp = (max_samples - total) / buckets[bucket].1;
    let max_v = buckets[bucket].0.log2();
    let min_v = if bucket > 0 {
        buckets[bucket - 1].0.log2()
    } else {
        max_v - 1.0
    };
    2f64.powf(min_v + (max_v - min_v) * interp)
}

/// A span's duration in nanoseconds.
fn duration_ns(s: &StoredSpan) -> u64 {
    s.span
        .end_time_unix_nano
        .saturating_sub(s.span.start_time_unix_nano)
}

/// The numeric value of `field` on a span as Tempo's `*_over_time` reads it: `duration` in
/// seconds, other numbers as they are (other durations in nanoseconds); `None` when absent or
/// not a number.
fn number(view: &TraceView, idx: usize, field: &Field) -> Option<f64> {
    if is_duration(field) {
        return Some(duration_ns(&view.spans()[idx]) as f64 / NANOS_PER_SEC);
    }
    match view.field(idx, field)? {
        Val::Int(n) => Some(n as f64),
        Val::Float(f) if !f.is_nan() => Some(f),
        Val::Duration(d) => Some(d as f64),
        _ => None,
    }
}

/// The log2 bucket of `field` on a span (Tempo's `bucketizeFnFor`): durations in seconds,
/// integers as they are; `None` (the span is left out) below 2 or for other types.
fn bucket(view: &TraceView, idx: usize, field: &Field) -> Option<f64> {
    if is_duration(field) {
        let d = duration_ns(&view.spans()[idx]);
        return (d >= 2).then(|| log2_bucket(d) / NANOS_PER_SEC);
    }
    match view.field(idx, field)? {
        Val::Int(n) if n >= 2 => Some(log2_bucket(n as u64)),
        Val::Duration(d) if d >= 2 => Some(log2_bucket(d) / NANOS_PER_SEC),
        _ => None,
    }
}

/// Series being filled.
struct Acc<'r> {
    req: &'r MetricsRequest,
    steps: usize,
    index: HashMap<Vec<Key>, usize>,
    series: Vec<Series>,
    cells: usize,
    capped: bool,
    init: f64,
    with_counts: bool,
}

impl<'r> Acc<'r> {
    fn new(req: &'r MetricsRequest) -> Self {
        let init = match req.query.function {
            Function::MinOverTime(_) | Function::MaxOverTime(_) | Function::SumOverTime(_) => {
                f64::NAN
            }
            _ => 0.0,
        };
        Self {
            req,
            steps: req.intervals(),
            index: HashMap::new(),
            series: Vec::new(),
            cells: 0,
            capped: false,
            init,
            with_counts: matches!(req.query.function, Function::AvgOverTime(_)),
        }
    }

    /// The series for `key`, made with `labels` if new; `None` past the series bounds.
    fn series(
        &mut self,
        key: Vec<Key>,
        labels: impl FnOnce() -> Vec<(String, Val)>,
    ) -> Option<usize> {
        if let Some(i) = self.index.get(&key) {
            return Some(*i);
        }
        let cost = self.steps * if self.with_counts { 2 } else { 1 };
        if self.series.len() >= MAX_SERIES || self.cells + cost > MAX_CELLS {
            self.capped = true;
            return None;
        }
        self.cells += cost;
        let i = self.series.len();
        self.series.push(Series {
            labels: labels(),
            values: vec![self.init; self.steps],
            counts: if self.with_counts {
                vec![0.0; self.steps]
            } else {
                Vec::new()
            },
            exemplars: Vec::new(),
        });
        self.index.insert(key, i);
        Some(i)
    }

    /// Adds one span; returns its series (for an exemplar) when it was counted.
    fn observe(&mut self, view: &TraceView, idx: usize, step: usize) -> Option<(usize, f64)> {
        let q = &self.req.query;
        let by_vals: Vec<Val> =
            q.by.iter()
                .map(|f| view.field(idx, f).unwrap_or(Val::Nil))
                .collect();
        let mut keys: Vec<Key> = by_vals.iter().map(key).collect();
        let by_labels = |with_bucket: Option<f64>| {
            let mut labels: Vec<(String, Val)> =
                q.by.iter()
                    .zip(&by_vals)
                    .filter(|(_, v)| **v != Val::Nil)
                    .map(|(f, v)| (f.label(), v.clone()))
                    .collect();
            match with_bucket {
                Some(b) => labels.push(("__bucket".to_string(), Val::Float(b))),
                None if q.by.is_empty() => {
                    labels.push(("__name__".to_string(), Val::Str(q.function.name().into())))
                }
                // All nil: Tempo keeps the first label, valued nil.
                None if labels.is_empty() => labels.push((q.by[0].label(), Val::Nil)),
                None => {}
            }
            labels
        };
        let nan = f64::NAN;
        match &q.function {
            Function::Rate | Function::CountOverTime => {
                let s = self.series(keys, || by_labels(None))?;
                self.series[s].values[step] += 1.0;
                Some((s, nan))
            }
            Function::MinOverTime(f)
            | Function::MaxOverTime(f)
            | Function::SumOverTime(f)
            | Function::AvgOverTime(f) => {
                let v = number(view, idx, f)?;
                let s = self.series(keys, || by_labels(None))?;
                let cur = &mut self.series[s].values[step];
                *cur = match q.function {
                    Function::MinOverTime(_) if cur.is_nan() || v < *cur => v,
                    Function::MaxOverTime(_) if cur.is_nan() || v > *cur => v,
                    Function::SumOverTime(_) if cur.is_nan() => v,
                    Function::SumOverTime(_) | Function::AvgOverTime(_) => *cur + v,
                    _ => *cur,
                };
                if self.with_counts {
                    self.series[s].counts[step] += 1.0;
                }
                Some((s, v))
            }
            Function::HistogramOverTime(f) | Function::QuantileOverTime(f, _) => {
                let b = bucket(view, idx, f)?;
                keys.push(Key::Float(b.to_bits()));
                let s = self.series(keys, || by_labels(Some(b)))?;
                self.series[s].values[step] += 1.0;
                let v = match q.function {
                    Function::QuantileOverTime(..) => number(view, idx, f).unwrap_or(0.0),
                    _ => nan,
                };
                Some((s, v))
            }
            Function::Compare { .. } => None,
        }
    }
}

/// The spans a query's spanset pipeline selects in one trace, in start-time order.
pub(super) fn selected(filter: Option<&crate::traceql::Query>, view: &TraceView) -> Vec<usize> {
    match filter {
        None => {
            let spans = view.spans();
            let mut all: Vec<usize> = (0..spans.len()).collect();
            all.sort_by_key(|i| (spans[*i].span.start_time_unix_nano, *i));
            all
        }
        Some(q) => {
            let mut idx: Vec<usize> = tq::run(q, view)
                .into_iter()
                .flat_map(|set| set.spans)
                .collect();
            let spans = view.spans();
            idx.sort_by_key(|i| (spans[*i].span.start_time_unix_nano, *i));
            idx.dedup();
            idx
        }
    }
}

pub(super) fn exemplar_labels(trace: &str, span: &StoredSpan) -> Vec<(String, Val)> {
    vec![
        ("trace:id".to_string(), Val::Str(trace.to_string())),
        (
            "span:id".to_string(),
            Val::Str(hex::encode(&span.span.span_id)),
        ),
    ]
}

/// Runs a metrics request over the store, inspecting traces (oldest received first) until
/// `deadline`; past it the answer holds what the inspected traces gave and says so.
pub fn evaluate(store: &Store, req: &MetricsRequest, deadline: Option<Instant>) -> Outcome {
    if let Function::Compare { .. } = req.query.function {
        return super::compare::evaluate(store, req, deadline);
    }
    let snapshot = store.snapshot();
    let total = snapshot.len();
    let mut acc = Acc::new(req);
    let mut inspected_traces = 0usize;
    let mut inspected_spans = 0u64;
    let mut exemplar_traces = 0usize;
    let mut out_of_time = false;
    for (id, spans) in &snapshot {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            out_of_time = true;
            break;
        }
        inspected_traces += 1;
        // Only spans that started in the window count; a trace with none cannot contribute.
        if !spans
            .iter()
            .any(|s| req.interval_of(s.span.start_time_unix_nano).is_some())
        {
            continue;
        }
        let view = TraceView::new(spans);
        let mut exemplar: Option<(usize, f64, usize)> = None;
        for idx in selected(req.query.filter.as_ref(), &view) {
            let Some(step) = req.interval_of(spans[idx].span.start_time_unix_nano) else {
                continue;
            };
            inspected_spans += 1;
            if let Some((s, v)) = acc.observe(&view, idx, step)
                && exemplar.is_none()
            {
                exemplar = Some((s, v, idx));
            }
        }
        // One exemplar per trace, for the first `exemplars` traces that counted (Tempo picks a
        // random span of the trace; the desk its first counted span, so answers repeat).
        if let Some((s, value, idx)) = exemplar
            && exemplar_traces < req.exemplars
        {
            exemplar_traces += 1;
            let span = &spans[idx];
            acc.series[s].exemplars.push(Exemplar {
                labels: exemplar_labels(&trace_id_hex(id), span),
                value,
                ts_ms: span.span.start_time_unix_nano / 1_000_000,
            });
        }
    }
    let capped = acc.capped;
    let mut series = finish(req, acc.series);
    apply_second_stage(&mut series, &req.query.second_stage);
    let body = render(
        req,
        &series,
        &metrics_json(inspected_traces, inspected_spans, total, out_of_time),
        partial_message(out_of_time, capped, inspected_traces, total).as_deref(),
    );
    Outcome {
        body,
        out_of_time,
        series_capped: capped,
    }
}

/// Tempo's `SearchMetrics` of an answer.
pub(super) fn metrics_json(traces: usize, spans: u64, total: usize, partial: bool) -> Value {
    json!({
        "inspectedTraces": traces,
        "inspectedSpans": spans.to_string(),
        "inspectedBytes": "0",
        "completedJobs": if partial { 0 } else { 1 },
        "totalJobs": 1,
        "totalBlocks": u64::from(total > 0),
    })
}

/// The `message` of a partial answer (Tempo's `status: PARTIAL`) when the budget or the series
/// bound cut it short.
pub(super) fn partial_message(
    out_of_time: bool,
    capped: bool,
    inspected: usize,
    total: usize,
) -> Option<String> {
    let mut why = Vec::new();
    if out_of_time {
        why.push(format!(
            "the query time budget (DESK_QUERY_TIMEOUT) ran out after inspecting {inspected} of {total} traces; the series cover those"
        ));
    }
    if capped {
        why.push(format!(
            "the answer reached the desk's bound of {MAX_SERIES} series ({MAX_CELLS} step values in all); spans of further series were left out"
        ));
    }
    (!why.is_empty()).then(|| why.join("; "))
}

/// The answer when the query never got a search slot within its budget.
pub fn out_of_time(store: &Store, req: &MetricsRequest) -> Outcome {
    let total = store.stats().traces_held as usize;
    let body = render(
        req,
        &[],
        &metrics_json(0, 0, total, true),
        Some(
            "the query time budget (DESK_QUERY_TIMEOUT) ran out while waiting for a free search slot; no trace was inspected",
        ),
    );
    Outcome {
        body,
        out_of_time: true,
        series_capped: false,
    }
}

/// Turns the per-step accumulators into final values: rates per second, averages, and
/// quantile series computed from the bucket series.
fn finish(req: &MetricsRequest, mut series: Vec<Series>) -> Vec<Series> {
    match &req.query.function {
        Function::Rate => {
            let per_sec = NANOS_PER_SEC / req.step as f64;
            for s in &mut series {
                for v in &mut s.values {
                    *v *= per_sec;
                }
            }
            series
        }
        Function::AvgOverTime(_) => {
            for s in &mut series {
                for (v, n) in s.values.iter_mut().zip(&s.counts) {
                    *v = if *n > 0.0 { *v / n } else { f64::NAN };
                }
            }
            series
        }
        Function::QuantileOverTime(_, qs) => quantiles(qs, series),
        _ => series,
    }
}

/// Tempo's `HistogramAggregator.Results`: per group (labels without `__bucket`), one series per
/// quantile, labelled `p`; a step without spans reads 0. Exemplars go to the lowest quantile
/// whose value (over the whole range and all groups) is at or above theirs.
fn quantiles(qs: &[f64], buckets: Vec<Series>) -> Vec<Series> {
    struct Group {
        labels: Vec<(String, Val)>,
        steps: Vec<Vec<(f64, f64)>>,
        exemplars: Vec<Exemplar>,
    }
    let mut groups: BTreeMap<String, Group> = BTreeMap::new();
    let mut all: BTreeMap<u64, (f64, f64)> = BTreeMap::new();
    for s in buckets {
        let Some(((_, Val::Float(b)), labels)) = s.labels.split_last() else {
            continue;
        };
        let b = *b;
        let g = groups.entry(prom_labels(labels)).or_insert_with(|| Group {
            labels: labels.to_vec(),
            steps: vec![Vec::new(); s.values.len()],
            exemplars: Vec::new(),
        });
        for (i, n) in s.values.iter().enumerate() {
            if *n > 0.0 {
                g.steps[i].push((b, *n));
                // Bucket bounds are positive, so their bits sort like the values.
                all.entry(b.to_bits()).or_insert((b, 0.0)).1 += n;
            }
        }
        g.exemplars.extend(s.exemplars);
    }
    let all: Vec<(f64, f64)> = all.into_values().collect();
    let overall: Vec<f64> = qs.iter().map(|q| log2_quantile(*q, &all)).collect();
    let mut out = Vec::new();
    for (_, mut g) in groups {
        for step in &mut g.steps {
            step.sort_by(|a, b| a.0.total_cmp(&b.0));
        }
        for (qi, q) in qs.iter().enumerate() {
            let mut labels = g.labels.clone();
            labels.push(("p".to_string(), Val::Float(*q)));
            let values = g
                .steps
                .iter()
                .map(|b| {
                    if b.is_empty() {
                        0.0
                    } else {
                        log2_quantile(*q, b)
                    }
                })
                .collect();
            let exemplars = g
                .exemplars
                .iter()
                .filter(|e| {
                    let target = overall
                        .iter()
                        .position(|v| e.value <= *v)
                        .unwrap_or(overall.len() - 1);
                    target == qi
                })
                .cloned()
                .collect();
            out.push(Series {
                labels,
                values,
                counts: Vec::new(),
                exemplars,
            });
        }
    }
    out
}

/// `topk`/`bottomk` (per step, like Prometheus and Tempo 2.10) and value filters.
pub(super) fn apply_second_stage(series: &mut Vec<Series>, stages: &[SecondStage]) {
    for stage in stages {
        match stage {
            SecondStage::Filter(op, x) => {
                for s in series.iter_mut() {
                    for v in &mut s.values {
                        if !v.is_nan() && !(*v).partial_cmp(x).is_some_and(|o| op.holds(o)) {
                            *v = f64::NAN;
                        }
                    }
                }
            }
            SecondStage::TopK(k) | SecondStage::BottomK(k) => {
                let top = matches!(stage, SecondStage::TopK(_));
                let steps = series.first().map_or(0, |s| s.values.len());
                let names: Vec<String> = series.iter().map(|s| prom_labels(&s.labels)).collect();
                let mut kept: Vec<(usize, usize)> = Vec::new();
                for i in 0..steps {
                    let mut at: Vec<usize> = (0..series.len())
                        .filter(|s| !series[*s].values[i].is_nan())
                        .collect();
                    at.sort_by(|a, b| {
                        let o = series[*a].values[i].total_cmp(&series[*b].values[i]);
                        let o = if top { o.reverse() } else { o };
                        o.then_with(|| names[*a].cmp(&names[*b]))
                    });
                    kept.extend(at.into_iter().take(*k).map(|s| (s, i)));
                }
                let mut keep = vec![vec![false; steps]; series.len()];
                for (s, i) in kept {
                    keep[s][i] = true;
                }
                for (s, keep) in series.iter_mut().zip(keep) {
                    for (v, k) in s.values.iter_mut().zip(keep) {
                        if !k {
                            *v = f64::NAN;
                        }
                    }
                }
            }
        }
        series.retain(|s| s.values.iter().any(|v| !v.is_nan()));
    }
}

/// jsonpb `AnyValue` of a label value.
fn any_value(v: &Val) -> Value {
    match v {
        Val::Str(s) => json!({ "stringValue": s }),
        Val::Int(n) => json!({ "intValue": n.to_string() }),
        Val::Float(f) => json!({ "doubleValue": jsonpb::double(*f) }),
        Val::Bool(b) => json!({ "boolValue": b }),
        Val::Duration(d) => json!({ "intValue": d.to_string() }),
        Val::Nil => json!({}),
    }
}

fn labels_json(labels: &[(String, Val)]) -> Value {
    Value::Array(
        labels
            .iter()
            .map(|(k, v)| json!({ "key": k, "value": any_value(v) }))
            .collect(),
    )
}

/// Tempo's Prometheus-style label text (`{resource.service.name="a", p="0.5"}`), sorted by
/// name; nil reads `<nil>` and an empty string `<empty>`.
pub(super) fn prom_labels(labels: &[(String, Val)]) -> String {
    let mut sorted: Vec<(&str, String)> = labels
        .iter()
        .map(|(k, v)| {
            let text = match v {
                Val::Nil => "<nil>".to_string(),
                Val::Str(s) if s == "nil" => "<nil>".to_string(),
                Val::Str(s) if s.is_empty() => "<empty>".to_string(),
                Val::Str(s) => s.clone(),
                Val::Int(n) => n.to_string(),
                Val::Float(f) => f.to_string(),
                Val::Bool(b) => b.to_string(),
                Val::Duration(d) => super::go_duration(*d),
            };
            (k.as_str(), text)
        })
        .collect();
    sorted.sort();
    let inner: Vec<String> = sorted.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{{{}}}", inner.join(", "))
}

fn exemplars_json(req: &MetricsRequest, s: &Series) -> Vec<Value> {
    s.exemplars
        .iter()
        .filter(|e| {
            // Tempo drops exemplars whose step has no value.
            req.interval_of(e.ts_ms.saturating_mul(1_000_000).max(req.start + 1))
                .is_none_or(|i| s.values.get(i).is_some_and(|v| !v.is_nan()))
        })
        .map(|e| {
            let mut m = Map::new();
            m.insert("labels".into(), labels_json(&e.labels));
            // jsonpb omits a zero value; counts' exemplars carry NaN.
            if e.value != 0.0 {
                m.insert("value".into(), jsonpb::double(e.value));
            }
            m.insert("timestampMs".into(), json!(e.ts_ms.to_string()));
            Value::Object(m)
        })
        .collect()
}

/// Tempo's answer as JSON text: `{"series":[…],"metrics":…}` plus `status`/`message` when
/// partial. Series are sorted by their label text, samples oldest first, NaN steps left out,
/// and a zero value omitted as jsonpb omits defaults. Samples are written straight into the
/// text, so an answer costs its text and no JSON tree.
pub(super) fn render(
    req: &MetricsRequest,
    series: &[Series],
    metrics: &Value,
    partial: Option<&str>,
) -> String {
    use std::fmt::Write as _;
    let mut sorted: Vec<(String, &Series)> =
        series.iter().map(|s| (prom_labels(&s.labels), s)).collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out = String::from("{\"series\":[");
    let mut first = true;
    for (prom, s) in sorted {
        let head = format!(
            "{{\"labels\":{},\"promLabels\":{}",
            labels_json(&s.labels),
            Value::String(prom)
        );
        if req.instant {
            let Some(v) = s.values.first().filter(|v| !v.is_nan()) else {
                continue;
            };
            if !first {
                out.push(',');
            }
            first = false;
            out.push_str(&head);
            if *v != 0.0 {
                let _ = write!(out, ",\"value\":{}", jsonpb::double(*v));
            }
            out.push('}');
            continue;
        }
        if s.values.iter().all(|v| v.is_nan()) {
            continue;
        }
        if !first {
            out.push(',');
        }
        first = false;
        out.push_str(&head);
        out.push_str(",\"samples\":[");
        let mut first_sample = true;
        for (i, v) in s.values.iter().enumerate().filter(|(_, v)| !v.is_nan()) {
            if !first_sample {
                out.push(',');
            }
            first_sample = false;
            let _ = write!(
                out,
                "{{\"timestampMs\":\"{}\"",
                req.timestamp_of(i) / 1_000_000
            );
            if *v != 0.0 {
                let _ = write!(out, ",\"value\":{}", jsonpb::double(*v));
            }
            out.push('}');
        }
        out.push(']');
        let ex = exemplars_json(req, s);
        if !ex.is_empty() {
            let _ = write!(out, ",\"exemplars\":{}", Value::Array(ex));
        }
        out.push('}');
    }
    let _ = write!(out, "],\"metrics\":{metrics}");
    if let Some(message) = partial {
        let _ = write!(
            out,
            ",\"status\":\"PARTIAL\",\"message\":{}",
            Value::String(message.to_string())
        );
    }
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_powers_of_two() {
        assert_eq!(log2_bucket(2), 2.0);
        assert_eq!(log2_bucket(3), 4.0);
        assert_eq!(log2_bucket(1024), 1024.0);
        assert_eq!(log2_bucket(1025), 2048.0);
        // 100 ms → 2^27 ns = 0.134217728 s.
        assert_eq!(log2_bucket(100_000_000) / 1e9, 0.134217728);
    }

    #[test]
    fn quantiles_interpolate_like_tempo() {
        // 10 spans in the 2^27 ns bucket (≤ 134 ms), 10 in 2^28 (≤ 268 ms).
        let b = [(0.134217728, 10.0), (0.268435456, 10.0)];
        // p50: exactly the first bucket's bound.
        assert_eq!(log2_quantile(0.5, &b), 0.134217728);
        // p75: halfway (15 of 20) → 2^(log2(lo) + 0.5).
        let want = 2f64.powf(0.134217728f64.log2() + 0.5);
        assert!((log2_quantile(0.75, &b) - want).abs() < 1e-12);
        assert_eq!(log2_quantile(1.0, &b), 0.268435456);
        // p0 reads at least one sample: half of the first bucket (2^(x-1) .. 2^x, 1 of 10).
        let want = 2f64.powf(0.134217728f64.log2() - 1.0 + 0.1);
        assert!((log2_quantile(0.0, &b) - want).abs() < 1e-12);
        assert_eq!(log2_quantile(0.5, &[]), 0.0);
    }
}
