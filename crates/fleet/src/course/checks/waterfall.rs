//! Step 5: questions about a trace the check generates — the span with the largest self time,
//! and the span that ends the critical path — answered from what the trace says.

use std::collections::HashMap;

use super::{
    CARD_OK, Ctx, Outcome, checkout, missing_services, new_traceparent, not_yet, spans_of, usage,
};
use crate::course::{CourseError, progress};
use crate::traces::model::Span;
use crate::traces::tree::{human, self_times};

/// Index of the span with the largest self time (ties: the earlier start).
pub fn largest_self_time(spans: &[Span]) -> Option<usize> {
    let selfs = self_times(spans);
    (0..spans.len()).max_by(|&a, &b| {
        selfs[a]
            .cmp(&selfs[b])
            .then(spans[b].start.cmp(&spans[a].start))
    })
}

/// The critical path from the root: at each span, the child that finished last among those
/// that finished within it (a child running on past its parent was not waited for).
pub fn critical_path(spans: &[Span]) -> Vec<usize> {
    let ids: HashMap<&str, usize> = spans
        .iter()
        .enumerate()
        .map(|(i, s)| (s.span_id.as_str(), i))
        .collect();
    let root = (0..spans.len())
        .filter(|&i| {
            spans[i]
                .parent_id
                .as_deref()
                .is_none_or(|p| !ids.contains_key(p))
        })
        .min_by_key(|&i| spans[i].start);
    let Some(mut at) = root else {
        return Vec::new();
    };
    let mut path = vec![at];
    while let Some(next) = (0..spans.len())
        .filter(|&i| {
            spans[i].parent_id.as_deref() == Some(spans[at].span_id.as_str())
                && spans[i].end <= spans[at].end
        })
        .max_by(|&a, &b| {
            spans[a]
                .end
                .cmp(&spans[b].end)
                .then(spans[b].start.cmp(&spans[a].start))
        })
    {
        path.push(next);
        at = next;
    }
    path
}

fn same(answer: &str, span: &Span) -> bool {
    let a = answer.trim();
    a.eq_ignore_ascii_case(&span.name)
        || a.eq_ignore_ascii_case(&format!("{} {}", span.service, span.name))
}

/// Both answers against the trace.
pub fn verdict(
    trace: &str,
    spans: &[Span],
    self_answer: &str,
    leaf_answer: &str,
) -> Result<Outcome, CourseError> {
    let selfs = self_times(spans);
    let (Some(top), Some(&leaf)) = (largest_self_time(spans), critical_path(spans).last()) else {
        return Err(not_yet(format!("trace {trace} has no spans")));
    };
    let path = critical_path(spans);
    let mut wrong = Vec::new();
    if !same(self_answer, &spans[top]) {
        let yours = spans
            .iter()
            .position(|s| s.name.eq_ignore_ascii_case(self_answer.trim()))
            .map(|i| format!("its self time is {}", human(selfs[i])))
            .unwrap_or_else(|| "there is no span of that name in the trace".to_owned());
        wrong.push(format!(
            "largest self time: you said \"{self_answer}\" ({yours}), but \"{}\" of {} has {} of its own",
            spans[top].name,
            spans[top].service,
            human(selfs[top])
        ));
    }
    if !same(leaf_answer, &spans[leaf]) {
        let names: Vec<&str> = path.iter().map(|&i| spans[i].name.as_str()).collect();
        wrong.push(format!(
            "end of the critical path: you said \"{leaf_answer}\", but following the child that finished last \
             from the root gives {}",
            names.join(" → ")
        ));
    }
    if !wrong.is_empty() {
        return Err(not_yet(format!(
            "in trace {trace}, {}",
            wrong.join("; and ")
        )));
    }
    Ok(Outcome::done(format!(
        "Right: \"{}\" has the largest self time ({}), and the critical path ends at \"{}\" ({} spans deep).",
        spans[top].name,
        human(selfs[top]),
        spans[leaf].name,
        path.len()
    )))
}

pub async fn check(ctx: &Ctx, args: &[String]) -> Result<Outcome, CourseError> {
    match args {
        [] => {
            let (trace, _, header) = new_traceparent();
            let (status, _) = checkout(&ctx.gateway, CARD_OK, &[("traceparent", &header)]).await?;
            if status != 201 {
                return Err(not_yet(format!("the checkout answered {status}, not 201")));
            }
            if ctx
                .backend
                .wait_trace(&trace, |s| missing_services(s).is_empty())
                .await?
                .is_none()
            {
                return Err(not_yet(format!(
                    "the new trace {trace} did not reach {} in time",
                    ctx.backend.base
                )));
            }
            progress::update(&ctx.data_dir, |p| p.waterfall_trace = Some(trace.clone()))?;
            Ok(Outcome::partial(format!(
                "Your trace: {trace}\n  fleet trace {trace} --attrs\n  {}/trace/{trace}\n\
                 Then answer: fleet course check 5 \"SPAN WITH THE LARGEST SELF TIME\" \"SPAN THAT ENDS THE CRITICAL PATH\"",
                ctx.backend.base
            )))
        }
        [self_answer, leaf_answer] => {
            let trace = progress::Progress::load(&ctx.data_dir)?
                .waterfall_trace
                .ok_or_else(|| usage("run `fleet course check 5` first: it makes the trace the questions are about"))?;
            let json = ctx.backend.trace_json(&trace).await?.ok_or_else(|| {
                not_yet(format!(
                    "trace {trace} is gone from {} (a restarted desk forgets): run `fleet course check 5` for a new one",
                    ctx.backend.base
                ))
            })?;
            verdict(&trace, &spans_of(&json), self_answer, leaf_answer)
        }
        _ => Err(usage(
            "`fleet course check 5` makes the trace; then `fleet course check 5 \"SELF TIME SPAN\" \"CRITICAL PATH END\"`",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::*;

    #[test]
    fn the_recorded_checkout_answers_both_questions() {
        let spans = spans_of(&checkout_trace());
        let top = &spans[largest_self_time(&spans).unwrap()];
        let path: Vec<&str> = critical_path(&spans)
            .iter()
            .map(|&i| spans[i].name.as_str())
            .collect();
        assert_eq!(path[0], "POST /checkout");
        assert!(path.len() >= 4, "{path:?}");
        let leaf = path.last().unwrap().to_string();
        let ok = verdict(CHECKOUT_ID, &spans, &top.name, &leaf).unwrap();
        assert!(ok.done, "{}", ok.text);
        // Answers may name the service too, in any case.
        verdict(
            CHECKOUT_ID,
            &spans,
            &format!("{} {}", top.service, top.name.to_uppercase()),
            &leaf,
        )
        .unwrap();
    }

    #[test]
    fn wrong_answers_are_named_with_the_right_span_and_the_path() {
        let spans = spans_of(&checkout_trace());
        let top = spans[largest_self_time(&spans).unwrap()].name.clone();
        let err = verdict(CHECKOUT_ID, &spans, "sendEmail", "POST /checkout")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("you said \"sendEmail\" (its self time is"),
            "{err}"
        );
        assert!(err.contains(&format!("but \"{top}\" of")), "{err}");
        assert!(err.contains("gives POST /checkout → "), "{err}");
        let err = verdict(CHECKOUT_ID, &spans, "no such span", "x")
            .unwrap_err()
            .to_string();
        assert!(err.contains("there is no span of that name"), "{err}");
    }

    #[test]
    fn a_child_running_past_its_parent_is_off_the_path() {
        let span = |id: &str, parent: Option<&str>, start, end| Span {
            trace_id: "t".into(),
            span_id: id.into(),
            parent_id: parent.map(str::to_owned),
            service: "s".into(),
            name: id.into(),
            kind: crate::traces::model::Kind::Internal,
            start,
            end,
            error: false,
            status_message: String::new(),
            attributes: vec![],
            events: vec![],
        };
        let spans = vec![
            span("root", None, 0, 100),
            span("a", Some("root"), 0, 60),
            span("b", Some("root"), 60, 90),
            span("async", Some("root"), 90, 130),
            span("b1", Some("b"), 61, 89),
        ];
        let path: Vec<&str> = critical_path(&spans)
            .iter()
            .map(|&i| spans[i].name.as_str())
            .collect();
        assert_eq!(path, ["root", "b", "b1"]);
        assert_eq!(spans[largest_self_time(&spans).unwrap()].name, "a");
    }
}
