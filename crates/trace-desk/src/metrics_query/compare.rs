//! `compare({selection}, topN, start, end)`: Tempo's `MetricsCompare`, which Grafana's Traces
//! Drilldown uses for its comparison tab. Every span the query selects is split into the
//! *selection* (spans the `{selection}` filter matches, inside `[start, end)` when given) and
//! the *baseline* (the rest); for every attribute of those spans it counts, per step, each
//! value's spans (the `topN` most frequent values per attribute) and all spans with the
//! attribute.
//!
//! Series: `{__meta_type="baseline", <attr>=<value>}`, `{__meta_type="selection", ...}`,
//! `{__meta_type="baseline_total", <attr>=nil}`, `{__meta_type="selection_total", ...}`.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Av;

use super::eval::{
    Exemplar, Key, Outcome, Series, exemplar_labels, key, metrics_json, partial_message, render,
    selected,
};
use super::parse::Function;
use super::{MAX_CELLS, MetricsRequest};
use crate::search::trace_id_hex;
use crate::store::Store;
use crate::trace_view::{kind_text, status_text};
use crate::traceql::eval::{TraceView, Val};

/// Counts of one side (baseline or selection).
#[derive(Default)]
struct Side {
    /// attribute → value → (value, counts per step).
    values: HashMap<String, HashMap<Key, (Val, Vec<f64>)>>,
    /// attribute → spans with it, per step.
    totals: HashMap<String, Vec<f64>>,
    /// (attributes of the span, exemplar).
    exemplars: Vec<(Vec<String>, Exemplar)>,
}

fn attr_val(kv: &KeyValue) -> Option<Val> {
    match kv.value.as_ref()?.value.as_ref()? {
        Av::StringValue(s) => Some(Val::Str(s.clone())),
        Av::IntValue(n) => Some(Val::Int(*n)),
        Av::DoubleValue(f) => Some(Val::Float(*f)),
        Av::BoolValue(b) => Some(Val::Bool(*b)),
        _ => None,
    }
}

/// The attributes of a span compare() splits by: span and resource attributes and the
/// intrinsics `name`, `status` and `kind` (durations, ids and timestamps are left out, as
/// their values are all different).
fn span_attributes(view: &TraceView, idx: usize) -> Vec<(String, Val)> {
    let s = &view.spans()[idx];
    let mut out = vec![
        ("name".to_string(), Val::Str(s.span.name.clone())),
        ("status".to_string(), Val::Str(status_text(s).to_string())),
        (
            "kind".to_string(),
            Val::Str(kind_text(s.span.kind).to_string()),
        ),
    ];
    for kv in &s.span.attributes {
        if let Some(v) = attr_val(kv) {
            out.push((format!("span.{}", kv.key), v));
        }
    }
    for kv in &s.resource.attributes {
        if let Some(v) = attr_val(kv) {
            out.push((format!("resource.{}", kv.key), v));
        }
    }
    out
}

/// Runs a `compare()` query.
pub fn evaluate(store: &Store, req: &MetricsRequest, deadline: Option<Instant>) -> Outcome {
    let Function::Compare {
        selection,
        top_n,
        start_ns,
        end_ns,
    } = &req.query.function
    else {
        return super::eval::evaluate(store, req, deadline);
    };
    let steps = req.intervals();
    let snapshot = store.snapshot();
    let total = snapshot.len();
    let (mut baseline, mut chosen) = (Side::default(), Side::default());
    let mut cells = 0usize;
    let mut capped = false;
    let mut inspected_traces = 0usize;
    let mut inspected_spans = 0u64;
    let mut out_of_time = false;
    let mut exemplar_traces = 0usize;
    for (id, spans) in &snapshot {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            out_of_time = true;
            break;
        }
        inspected_traces += 1;
        if !spans
            .iter()
            .any(|s| req.interval_of(s.span.start_time_unix_nano).is_some())
        {
            continue;
        }
        let view = TraceView::new(spans);
        let in_selection: HashSet<usize> = selected(Some(selection), &view).into_iter().collect();
        let mut exemplar_taken = exemplar_traces >= req.exemplars;
        for idx in selected(req.query.filter.as_ref(), &view) {
            let st = spans[idx].span.start_time_unix_nano;
            let Some(step) = req.interval_of(st) else {
                continue;
            };
            inspected_spans += 1;
            let in_window = (*start_ns == 0 && *end_ns == 0) || (st >= *start_ns && st < *end_ns);
            let side = if in_window && in_selection.contains(&idx) {
                &mut chosen
            } else {
                &mut baseline
            };
            let attrs = span_attributes(&view, idx);
            if !exemplar_taken {
                // One exemplar per trace (its first counted span), as for the other functions;
                // Tempo hangs it on the totals series of each attribute the span has.
                exemplar_taken = true;
                exemplar_traces += 1;
                side.exemplars.push((
                    attrs.iter().map(|(a, _)| a.clone()).collect(),
                    Exemplar {
                        labels: exemplar_labels(&trace_id_hex(id), &spans[idx]),
                        value: f64::NAN,
                        ts_ms: st / 1_000_000,
                    },
                ));
            }
            for (attr, v) in attrs {
                let k = key(&v);
                let values = side.values.entry(attr.clone()).or_default();
                if !values.contains_key(&k) {
                    if cells + steps > MAX_CELLS {
                        capped = true;
                        continue;
                    }
                    cells += steps;
                    values.insert(k.clone(), (v, vec![0.0; steps]));
                }
                if let Some((_, counts)) = values.get_mut(&k) {
                    counts[step] += 1.0;
                }
                if !side.totals.contains_key(&attr) {
                    if cells + steps > MAX_CELLS {
                        capped = true;
                        continue;
                    }
                    cells += steps;
                }
                side.totals.entry(attr).or_insert_with(|| vec![0.0; steps])[step] += 1.0;
            }
        }
    }
    let mut series = Vec::new();
    for (meta, side) in [("baseline", baseline), ("selection", chosen)] {
        for (attr, values) in side.values {
            let mut values: Vec<(Val, Vec<f64>)> = values.into_values().collect();
            // Most spans first; ties by value text so answers repeat.
            values.sort_by(|a, b| {
                let (ta, tb): (f64, f64) = (a.1.iter().sum(), b.1.iter().sum());
                tb.total_cmp(&ta)
                    .then_with(|| format!("{:?}", a.0).cmp(&format!("{:?}", b.0)))
            });
            for (v, counts) in values.into_iter().take(*top_n) {
                series.push(Series {
                    labels: vec![
                        ("__meta_type".to_string(), Val::Str(meta.to_string())),
                        (attr.clone(), v),
                    ],
                    values: counts,
                    counts: Vec::new(),
                    exemplars: Vec::new(),
                });
            }
        }
        for (attr, counts) in side.totals {
            let exemplars = side
                .exemplars
                .iter()
                .filter(|(attrs, _)| attrs.contains(&attr))
                .map(|(_, e)| e.clone())
                .collect();
            series.push(Series {
                labels: vec![
                    ("__meta_type".to_string(), Val::Str(format!("{meta}_total"))),
                    (attr, Val::Nil),
                ],
                values: counts,
                counts: Vec::new(),
                exemplars,
            });
        }
    }
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
