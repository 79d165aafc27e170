//! Step 7 (head sampling: the kept fraction against the sampler's ratio, and every kept trace
//! whole) and step 8 (tail sampling in the Collector: every error kept, healthy traffic near the
//! baseline, and which policy kept a trace).

use std::collections::HashSet;
use std::time::Duration;

use serde_json::Value;

use super::{
    CARD_DECLINED, CARD_OK, Ctx, Outcome, checkout, missing_services, not_yet, spans_of, usage,
};
use crate::course::CourseError;
use crate::traces::model::Span;

/// Checkouts the head-sampling check sends.
pub const HEAD_SAMPLE: usize = 200;
/// Standard deviations of the binomial the kept count may stray: a right ratio fails about
/// once in 16,000 runs.
pub const SIGMAS: f64 = 4.0;

/// `n · p ± SIGMAS · sqrt(n · p · (1 − p))`, half a trace wide at least.
pub fn binomial_bounds(n: usize, p: f64) -> (f64, f64) {
    let n = n as f64;
    let mean = n * p;
    let spread = (SIGMAS * (n * p * (1.0 - p)).sqrt()).max(0.5);
    ((mean - spread).max(0.0), (mean + spread).min(n))
}

/// What is wrong with a kept trace: services missing, spans whose parent is not in the trace
/// (other than the root's), more than one root.
pub fn incomplete(spans: &[Span]) -> Option<String> {
    let mut problems = Vec::new();
    let missing = missing_services(spans);
    if !missing.is_empty() {
        problems.push(format!("no spans of {}", missing.join(", ")));
    }
    let ids: HashSet<&str> = spans.iter().map(|s| s.span_id.as_str()).collect();
    let orphans: Vec<String> = spans
        .iter()
        .filter(|s| s.parent_id.as_deref().is_some_and(|p| !ids.contains(p)))
        .map(|s| format!("\"{}\" of {}", s.name, s.service))
        .collect();
    // The root's parent may be outside (a caller's traceparent); any other orphan is a gap.
    if orphans.len() + spans.iter().filter(|s| s.parent_id.is_none()).count() > 1 {
        problems.push(format!(
            "spans whose parent is missing: {}",
            orphans.join(", ")
        ));
    }
    (!problems.is_empty()).then(|| problems.join("; "))
}

/// The head-sampling verdict: `kept` traces (each as its spans) out of `sent` root checkouts.
pub fn head_verdict(
    ratio: f64,
    sent: usize,
    kept: &[(String, Vec<Span>)],
) -> Result<Outcome, CourseError> {
    let (lo, hi) = binomial_bounds(sent, ratio);
    let k = kept.len() as f64;
    if k < lo || k > hi {
        let seen = k / sent as f64;
        return Err(not_yet(format!(
            "the backend kept {} of {sent} checkouts ({:.1} %); with OTEL_TRACES_SAMPLER_ARG={ratio} expect \
             {:.0} to {:.0} ({SIGMAS} standard deviations of the binomial around {:.1}). The fleet samples at \
             about {seen:.2}: was it restarted with OTEL_TRACES_SAMPLER=parentbased_traceidratio \
             OTEL_TRACES_SAMPLER_ARG={ratio}?",
            kept.len(),
            100.0 * seen,
            lo.ceil(),
            hi.floor(),
            sent as f64 * ratio
        )));
    }
    let broken: Vec<String> = kept
        .iter()
        .filter_map(|(id, spans)| incomplete(spans).map(|why| format!("{id}: {why}")))
        .collect();
    if !broken.is_empty() {
        return Err(not_yet(format!(
            "{} kept trace(s) are missing spans (a service decided on its own instead of following its \
             parent: use the parentbased_ sampler): {}",
            broken.len(),
            broken
                .iter()
                .take(3)
                .cloned()
                .collect::<Vec<_>>()
                .join("; ")
        )));
    }
    Ok(Outcome::done(format!(
        "Kept {} of {sent} checkouts ({:.1} %), within {:.0} to {:.0} for ratio {ratio}; every kept trace is whole \
         (4 services, no missing parent).",
        kept.len(),
        100.0 * k / sent as f64,
        lo.ceil(),
        hi.floor()
    )))
}

/// Sends `n` checkouts (no traceparent: the gateway's sampler decides), 8 at a time; the trace
/// ids the gateway reported, and how the non-201 answers went.
async fn send_batch(ctx: &Ctx, n: usize, card: &'static str) -> Result<Vec<String>, CourseError> {
    let mut ids = Vec::with_capacity(n);
    let mut set = tokio::task::JoinSet::new();
    let mut next = 0;
    while next < n || !set.is_empty() {
        while next < n && set.len() < 8 {
            let gateway = ctx.gateway.clone();
            set.spawn(async move { checkout(&gateway, card, &[]).await });
            next += 1;
        }
        if let Some(done) = set.join_next().await {
            let (_, id) = done.map_err(|e| usage(format!("a checkout task failed: {e}")))??;
            let id = id.ok_or_else(|| usage("the gateway's answer has no x-trace-id header"))?;
            ids.push(id);
        }
    }
    Ok(ids)
}

/// Fetches each id; the ones the backend has, with their spans (incomplete ones fetched again).
async fn fetch_kept(ctx: &Ctx, ids: &[String]) -> Result<Vec<(String, Vec<Span>)>, CourseError> {
    let mut kept = Vec::new();
    for id in ids {
        if let Some(json) = ctx.backend.trace_json(id).await? {
            kept.push((id.clone(), spans_of(&json)));
        }
    }
    if kept.iter().any(|(_, s)| incomplete(s).is_some()) {
        // Late spans (the email goes out beside the reply): one more look.
        tokio::time::sleep(Duration::from_secs(3)).await;
        for (id, spans) in kept.iter_mut() {
            if incomplete(spans).is_some()
                && let Some(json) = ctx.backend.trace_json(id).await?
            {
                *spans = spans_of(&json);
            }
        }
    }
    Ok(kept)
}

pub async fn check_head(ctx: &Ctx, args: &[String]) -> Result<Outcome, CourseError> {
    let ratio = match args {
        [r] => r
            .parse::<f64>()
            .ok()
            .filter(|r| (0.0..=1.0).contains(r))
            .ok_or_else(|| {
                usage(format!(
                    "{r:?} is not a ratio between 0 and 1 (OTEL_TRACES_SAMPLER_ARG)"
                ))
            })?,
        _ => {
            return Err(usage(
                "give the ratio you started the fleet with, e.g. fleet course check 7 0.25",
            ));
        }
    };
    let ids = send_batch(ctx, HEAD_SAMPLE, CARD_OK).await?;
    // The SDKs export in batches about every second.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let kept = fetch_kept(ctx, &ids).await?;
    head_verdict(ratio, ids.len(), &kept)
}

/// The tail sampler's baseline (deploy/config/otel-collector/tail.yaml, `baseline-10pct`).
pub const TAIL_BASELINE: f64 = 0.10;
/// The tail sampler's `decision_wait`, plus the export to Tempo.
pub const TAIL_WAIT: Duration = Duration::from_secs(20);
/// Traces over this are kept by `keep-slow`, not the baseline.
pub const TAIL_SLOW_MS: u64 = 500;

/// The tail-sampling verdict: every error trace kept, and the fast healthy ones near the
/// baseline. `healthy` is each healthy trace's spans when the backend has it.
pub fn tail_verdict(
    errors: &[(String, bool)],
    healthy: &[(String, Option<Vec<Span>>)],
) -> Result<Outcome, CourseError> {
    let dropped: Vec<&str> = errors
        .iter()
        .filter(|(_, k)| !k)
        .map(|(id, _)| id.as_str())
        .collect();
    if !dropped.is_empty() {
        return Err(not_yet(format!(
            "{} of {} error traces were not kept (e.g. {}): no keep-errors (status_code ERROR) policy is at work; \
             run the stack with `make up SAMPLING=tail`",
            dropped.len(),
            errors.len(),
            dropped[0]
        )));
    }
    let duration_ms = |spans: &[Span]| {
        let start = spans.iter().map(|s| s.start).min().unwrap_or(0);
        let end = spans.iter().map(|s| s.end).max().unwrap_or(0);
        end.saturating_sub(start) / 1_000_000
    };
    // Slow traces are kept by keep-slow whatever the baseline says: leave them out of the count.
    let fast: Vec<bool> = healthy
        .iter()
        .filter(|(_, s)| s.as_deref().is_none_or(|s| duration_ms(s) <= TAIL_SLOW_MS))
        .map(|(_, s)| s.is_some())
        .collect();
    let kept = fast.iter().filter(|k| **k).count();
    let (lo, hi) = binomial_bounds(fast.len(), TAIL_BASELINE);
    if (kept as f64) < lo || kept as f64 > hi {
        return Err(not_yet(format!(
            "{kept} of {} fast healthy traces were kept; the {:.0} % baseline allows {:.0} to {:.0}{}",
            fast.len(),
            100.0 * TAIL_BASELINE,
            lo.ceil(),
            hi.floor(),
            if kept == fast.len() {
                ": everything is kept, so nothing samples at the tail (`make up SAMPLING=tail`)"
            } else {
                ""
            }
        )));
    }
    Ok(Outcome::done(format!(
        "All {} error traces kept; {kept} of {} fast healthy traces kept (baseline {:.0} %, {:.0} to {:.0} allowed).",
        errors.len(),
        fast.len(),
        100.0 * TAIL_BASELINE,
        lo.ceil(),
        hi.floor()
    )))
}

pub const POLICY_ATTR: &str = "tailsampling.policy";
pub const POLICIES: [&str; 3] = ["keep-errors", "keep-slow", "baseline-10pct"];

/// The learner's answer to "which policy kept this trace?" against its `tailsampling.policy`.
pub fn policy_verdict(trace: &str, spans: &[Span], answer: &str) -> Result<Outcome, CourseError> {
    let Some(policy) = spans.iter().find_map(|s| s.attr(POLICY_ATTR)) else {
        return Err(not_yet(format!(
            "trace {trace} carries no {POLICY_ATTR} attribute: was it kept by the tail Collector \
             (`make up SAMPLING=tail`)?"
        )));
    };
    if !policy.eq_ignore_ascii_case(answer.trim()) {
        let hint = if POLICIES.contains(&answer.trim()) {
            format!(
                "{answer} may also have voted to keep it, but the attribute names the first policy in tail.yaml's \
                 order that did"
            )
        } else {
            format!("the policies are {}", POLICIES.join(", "))
        };
        return Err(not_yet(format!(
            "trace {trace} was kept by {policy}, not {answer} ({hint})"
        )));
    }
    Ok(Outcome::partial(format!(
        "Right: trace {trace} was kept by {policy}. (The step is done when `fleet course check 8` also passes \
         on a batch.)"
    )))
}

/// The no-Docker track of step 8: three traces recorded from the fleet (a slow healthy
/// checkout, a fast healthy one, a declined one), labelled A, B, C.
const OFFLINE: [(&str, &str); 3] = [
    ("A", include_str!("fixtures/slow.json")),
    ("B", include_str!("fixtures/checkout.json")),
    ("C", include_str!("fixtures/declined.json")),
];

/// The first policy of tail.yaml, in its order, that keeps a trace, and why.
pub fn first_policy(spans: &[Span]) -> (&'static str, String) {
    let start = spans.iter().map(|s| s.start).min().unwrap_or(0);
    let end = spans.iter().map(|s| s.end).max().unwrap_or(0);
    let ms = end.saturating_sub(start) / 1_000_000;
    if let Some(e) = spans.iter().find(|s| s.error) {
        (
            POLICIES[0],
            format!(
                "\"{}\" of {} has status ERROR (keep-errors comes first)",
                e.name, e.service
            ),
        )
    } else if ms > TAIL_SLOW_MS {
        (
            POLICIES[1],
            format!("no span failed, and it lasts {ms} ms, over keep-slow's {TAIL_SLOW_MS} ms"),
        )
    } else {
        (
            POLICIES[2],
            format!(
                "no span failed and it lasts {ms} ms, under {TAIL_SLOW_MS} ms: only the {:.0} % baseline can keep it",
                100.0 * TAIL_BASELINE
            ),
        )
    }
}

/// The offline answers: for A, B and C, the policy that keeps each first.
pub fn offline_verdict(answers: &[String]) -> Result<Outcome, CourseError> {
    let mut wrong = Vec::new();
    for ((label, json), answer) in OFFLINE.iter().zip(answers) {
        let json: Value = serde_json::from_str(json)
            .map_err(|e| usage(format!("recorded trace {label}: {e}")))?;
        let (policy, why) = first_policy(&spans_of(&json));
        if !answer.trim().eq_ignore_ascii_case(policy) {
            wrong.push(format!(
                "trace {label}: you said {answer}, but the first policy that can keep it is {policy}: {why}"
            ));
        }
    }
    if !wrong.is_empty() {
        return Err(not_yet(wrong.join("; ")));
    }
    Ok(Outcome::done(
        "Right for all three recorded traces (the no-Docker track). With Docker, `make up SAMPLING=tail` and \
         `fleet course check 8` check the real Collector.",
    ))
}

fn offline_questions() -> Result<Outcome, CourseError> {
    use crate::traces::render::{Options, waterfall};
    let mut text = String::from(
        "No-Docker track: three traces recorded from this fleet. For each, which policy of \
         deploy/config/otel-collector/tail.yaml keeps it first (keep-errors, keep-slow, baseline-10pct)?\n\n",
    );
    for (label, json) in OFFLINE {
        let json: Value = serde_json::from_str(json)
            .map_err(|e| usage(format!("recorded trace {label}: {e}")))?;
        let spans = spans_of(&json);
        let id = spans
            .first()
            .map(|s| s.trace_id.clone())
            .unwrap_or_default();
        text.push_str(&format!("Trace {label}\n"));
        text.push_str(&waterfall(
            &id,
            &spans,
            Options {
                width: 110,
                color: false,
                attrs: false,
            },
        ));
        text.push('\n');
    }
    text.push_str("Answer: fleet course check 8 --offline POLICY_A POLICY_B POLICY_C\n");
    Ok(Outcome::partial(text))
}

pub async fn check_tail(ctx: &Ctx, args: &[String]) -> Result<Outcome, CourseError> {
    if ctx.offline {
        return match args {
            [] => offline_questions(),
            [_, _, _] => offline_verdict(args),
            _ => Err(usage(
                "fleet course check 8 --offline POLICY_A POLICY_B POLICY_C",
            )),
        };
    }
    match args {
        [] => {
            let errors = send_batch(ctx, 10, CARD_DECLINED).await?;
            let healthy = send_batch(ctx, 60, CARD_OK).await?;
            println!(
                "Sent 10 declined and 60 healthy checkouts; waiting {} s for the tail sampler's decision…",
                TAIL_WAIT.as_secs()
            );
            tokio::time::sleep(TAIL_WAIT).await;
            let mut e = Vec::new();
            for id in &errors {
                e.push((id.clone(), ctx.backend.trace_json(id).await?.is_some()));
            }
            let mut h = Vec::new();
            for id in &healthy {
                let spans = ctx
                    .backend
                    .trace_json(id)
                    .await?
                    .map(|j: Value| spans_of(&j));
                h.push((id.clone(), spans));
            }
            tail_verdict(&e, &h)
        }
        [trace, policy] => {
            let json = ctx.backend.trace_json(trace).await?.ok_or_else(|| {
                not_yet(format!(
                    "no trace {trace} at {}: the tail sampler dropped it, or the id is wrong",
                    ctx.backend.base
                ))
            })?;
            policy_verdict(trace, &spans_of(&json), policy)
        }
        _ => Err(usage(
            "`fleet course check 8` checks a batch; `fleet course check 8 TRACE_ID POLICY` checks your answer",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::*;

    fn kept(n: usize, json: &Value) -> Vec<(String, Vec<Span>)> {
        (0..n).map(|i| (format!("t{i}"), spans_of(json))).collect()
    }

    /// The check's idea of the tail sampler is the one the stack runs (deploy/ is validated
    /// offline by tests/deploy): policy names, baseline, latency threshold, and a wait longer
    /// than `decision_wait`.
    #[test]
    fn the_tail_check_matches_the_collector_config() {
        let yaml = include_str!("../../../../../deploy/config/otel-collector/tail.yaml");
        for policy in POLICIES {
            assert!(
                yaml.contains(&format!("- name: {policy}\n")),
                "{policy} not in tail.yaml"
            );
        }
        assert!(yaml.contains(&format!(
            "sampling_percentage: {}\n",
            (TAIL_BASELINE * 100.0) as u32
        )));
        assert!(yaml.contains(&format!("threshold_ms: {TAIL_SLOW_MS}\n")));
        let wait: u64 = yaml
            .split("decision_wait: ")
            .nth(1)
            .and_then(|r| r.split('s').next())
            .and_then(|n| n.trim().parse().ok())
            .expect("decision_wait in tail.yaml");
        assert!(
            TAIL_WAIT.as_secs() > wait,
            "TAIL_WAIT must outlast decision_wait ({wait} s)"
        );
        assert!(yaml.contains(&format!("attributes[\"{POLICY_ATTR}\"]")));
    }

    #[test]
    fn the_offline_track_judges_policies_from_the_recorded_traces() {
        let a = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let ok = offline_verdict(&a(&["keep-slow", "baseline-10pct", "KEEP-ERRORS"])).unwrap();
        assert!(ok.done);
        let err = offline_verdict(&a(&["keep-slow", "keep-slow", "baseline-10pct"]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("trace B: you said keep-slow, but the first policy that can keep it is baseline-10pct: no span failed and it lasts"), "{err}");
        assert!(
            err.contains("trace C: you said baseline-10pct, but the first policy that can keep it is keep-errors: \""),
            "{err}"
        );
        assert!(!err.contains("trace A"), "{err}");
        let q = offline_questions().unwrap();
        assert!(!q.done && q.text.contains("Trace C\n") && q.text.contains("POST /v1/charges"));
    }

    #[test]
    fn the_bounds_are_four_binomial_deviations() {
        let (lo, hi) = binomial_bounds(200, 0.25);
        assert!(
            (lo - 25.51).abs() < 0.01 && (hi - 74.49).abs() < 0.01,
            "{lo} {hi}"
        );
        assert_eq!(binomial_bounds(200, 1.0), (199.5, 200.0));
        assert_eq!(binomial_bounds(200, 0.0), (0.0, 0.5));
    }

    #[test]
    fn head_sampling_near_the_ratio_with_whole_traces_passes() {
        let ok = head_verdict(0.25, 200, &kept(48, &checkout_trace())).unwrap();
        assert!(ok.done && ok.text.contains("Kept 48 of 200"), "{}", ok.text);
    }

    #[test]
    fn head_sampling_far_from_the_ratio_fails_naming_the_fraction_seen() {
        let err = head_verdict(0.25, 200, &kept(200, &checkout_trace()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("kept 200 of 200 checkouts (100.0 %)"), "{err}");
        assert!(err.contains("expect 26 to 74"), "{err}");
        let err = head_verdict(0.9, 200, &kept(50, &checkout_trace()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("samples at about 0.25"), "{err}");
    }

    #[test]
    fn a_kept_trace_missing_a_service_fails_naming_it() {
        let mut traces = kept(50, &checkout_trace());
        traces[7].1 = spans_of(&without_service(checkout_trace(), "payment-api"));
        let err = head_verdict(0.25, 200, &traces).unwrap_err().to_string();
        assert!(err.contains("t7: no spans of payment-api"), "{err}");
        traces[7].1 = spans_of(&without_service(checkout_trace(), "api-gateway"));
        let err = head_verdict(0.25, 200, &traces).unwrap_err().to_string();
        assert!(
            err.contains("t7: no spans of api-gateway; spans whose parent is missing: \""),
            "{err}"
        );
    }

    fn with_policy(json: Value, policy: &'static str) -> Value {
        edit_spans(json, move |_, span| {
            if !span["attributes"].is_array() {
                span["attributes"] = serde_json::json!([]);
            }
            span["attributes"]
                .as_array_mut()
                .unwrap()
                .push(serde_json::json!(
                    {"key": POLICY_ATTR, "value": {"stringValue": policy}}
                ));
        })
    }

    #[test]
    fn the_policy_that_kept_a_trace_is_read_from_its_spans() {
        let errors = spans_of(&with_policy(declined(), "keep-errors"));
        policy_verdict("d", &errors, "keep-errors").unwrap();
        let err = policy_verdict("d", &errors, "baseline-10pct")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("was kept by keep-errors, not baseline-10pct"),
            "{err}"
        );
        assert!(err.contains("first policy"), "{err}");
        let err = policy_verdict("d", &errors, "errors")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("the policies are keep-errors, keep-slow, baseline-10pct"),
            "{err}"
        );
        let err = policy_verdict("c", &spans_of(&checkout_trace()), "keep-errors")
            .unwrap_err()
            .to_string();
        assert!(err.contains("carries no tailsampling.policy"), "{err}");
    }

    #[test]
    fn tail_sampling_keeps_errors_and_a_baseline() {
        let errors: Vec<(String, bool)> = (0..10).map(|i| (format!("e{i}"), true)).collect();
        let baseline = spans_of(&with_policy(checkout_trace(), "baseline-10pct"));
        let healthy: Vec<(String, Option<Vec<Span>>)> = (0..60)
            .map(|i| (format!("h{i}"), (i % 10 == 0).then(|| baseline.clone())))
            .collect();
        let ok = tail_verdict(&errors, &healthy).unwrap();
        assert!(
            ok.text.contains("6 of 60 fast healthy traces kept"),
            "{}",
            ok.text
        );

        let mut lost = errors.clone();
        lost[3].1 = false;
        let err = tail_verdict(&lost, &healthy).unwrap_err().to_string();
        assert!(
            err.contains("1 of 10 error traces were not kept (e.g. e3)"),
            "{err}"
        );

        let everything: Vec<(String, Option<Vec<Span>>)> = (0..60)
            .map(|i| (format!("h{i}"), Some(baseline.clone())))
            .collect();
        let err = tail_verdict(&errors, &everything).unwrap_err().to_string();
        assert!(
            err.contains("60 of 60 fast healthy traces were kept")
                && err.contains("everything is kept"),
            "{err}"
        );
    }
}
