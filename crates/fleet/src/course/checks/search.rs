//! Step 4: TraceQL exercises. The learner's query and the reference run over the same window;
//! the trace sets must be equal, and when they are not the check says which traces differ.

use std::collections::BTreeSet;
use std::time::Duration;

use super::{Ctx, Outcome, not_yet, now, usage};
use crate::course::{CourseError, progress};

/// (id, what to find, reference query).
pub const EXERCISES: &[(&str, &str, &str)] = &[
    (
        "failed-checkouts",
        "every checkout the gateway answered with a 4xx or 5xx",
        r#"{ name = "POST /checkout" && kind = server && span.http.response.status_code >= 400 }"#,
    ),
    (
        "slow-retried",
        "checkouts slower than 500 ms whose payment was retried",
        r#"{ trace:duration > 500ms } && { span.http.request.resend_count > 0 }"#,
    ),
    (
        "payment-errors",
        "traces in which the gateway called down to a payment-api span that failed",
        r#"{ resource.service.name = "api-gateway" } >> { resource.service.name = "payment-api" && status = error }"#,
    ),
];

/// The most traces one search returns; a query matching more cannot be compared whole.
pub const SEARCH_LIMIT: usize = 1000;

/// How far back the exercises look.
pub const WINDOW: Duration = Duration::from_secs(15 * 60);

/// Equal sets pass; otherwise the traces missed and the ones caught too many, a few of each.
/// A set as large as [`SEARCH_LIMIT`] may be cut short by the backend: no verdict on it.
pub fn compare(reference: &BTreeSet<String>, yours: &BTreeSet<String>) -> Result<String, String> {
    if reference.len() >= SEARCH_LIMIT || yours.len() >= SEARCH_LIMIT {
        return Err(format!(
            "{} the search limit of {SEARCH_LIMIT} traces, so the backend may have cut the answer short and the \
             sets cannot be compared whole: add a condition that narrows both (or wait for older traffic to age \
             out of the window)",
            if reference.len() >= SEARCH_LIMIT {
                "the reference query reaches"
            } else {
                "your query reaches"
            }
        ));
    }
    if reference == yours {
        return Ok(format!(
            "Your query matches exactly the {} trace(s) the reference matches.",
            reference.len()
        ));
    }
    let sample = |ids: Vec<&String>| {
        let shown: Vec<&str> = ids.iter().take(3).map(|s| s.as_str()).collect();
        let more = ids.len().saturating_sub(3);
        format!(
            "{}{}",
            shown.join(", "),
            if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            }
        )
    };
    let missed: Vec<&String> = reference.difference(yours).collect();
    let extra: Vec<&String> = yours.difference(reference).collect();
    let mut parts = vec![format!(
        "your query matches {} trace(s), the reference {}",
        yours.len(),
        reference.len()
    )];
    if !missed.is_empty() {
        parts.push(format!(
            "it misses {} the reference finds ({}): your condition is too narrow",
            missed.len(),
            sample(missed)
        ));
    }
    if !extra.is_empty() {
        parts.push(format!(
            "it also matches {} the reference does not ({}): your condition is too broad",
            extra.len(),
            sample(extra)
        ));
    }
    parts.push("compare them with `fleet trace ID --attrs`".to_owned());
    Err(parts.join("; "))
}

/// Runs `yours` and `reference` over the same window and compares; one retry after two seconds
/// when they differ, in case spans were still arriving between the two searches.
pub async fn compare_live(
    ctx: &Ctx,
    yours: &str,
    reference: &str,
    start: u64,
) -> Result<String, CourseError> {
    if let Err(e) = trace_desk::traceql::parse(yours) {
        return Err(not_yet(format!("your query `{yours}` does not parse: {e}")));
    }
    let mut last = String::new();
    for attempt in 0..2 {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        let end = now() + 1;
        let reference_set: BTreeSet<String> = ctx
            .backend
            .search(reference, start, end)
            .await?
            .into_iter()
            .collect();
        if reference_set.is_empty() {
            return Err(not_yet(format!(
                "the reference query matches no trace since {}: run the step's commands first (they make the traffic)",
                crate::traces::list::utc(start.saturating_mul(1_000_000_000))
            )));
        }
        let your_set: BTreeSet<String> = ctx
            .backend
            .search(yours, start, end)
            .await?
            .into_iter()
            .collect();
        match compare(&reference_set, &your_set) {
            Ok(text) => return Ok(text),
            Err(why) => last = why,
        }
    }
    Err(not_yet(last))
}

pub async fn check(ctx: &Ctx, args: &[String]) -> Result<Outcome, CourseError> {
    let list = || {
        EXERCISES
            .iter()
            .map(|(id, what, _)| format!("  {id}: {what}"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let [exercise, query] = args else {
        return Err(usage(format!(
            "give an exercise and your query, e.g. fleet course check 4 failed-checkouts '{{ status = error }}'; the exercises:\n{}",
            list()
        )));
    };
    let Some((id, _, reference)) = EXERCISES.iter().find(|(id, _, _)| id == exercise) else {
        return Err(usage(format!(
            "no exercise {exercise:?}; the exercises:\n{}",
            list()
        )));
    };
    let start = now().saturating_sub(WINDOW.as_secs());
    let text = compare_live(ctx, query, reference, start).await?;
    let p = progress::update(&ctx.data_dir, |p| {
        p.exercises.insert((*id).to_owned());
    })?;
    let left: Vec<&str> = EXERCISES
        .iter()
        .map(|(id, _, _)| *id)
        .filter(|id| !p.exercises.contains(*id))
        .collect();
    let text = format!("{id}: {text}");
    if left.is_empty() {
        Ok(Outcome::done(format!("{text}\nAll three exercises pass.")))
    } else {
        Ok(Outcome::partial(format!(
            "{text}\nExercises left: {}.",
            left.join(", ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ids: &[&str]) -> BTreeSet<String> {
        ids.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn equal_sets_pass_whatever_the_spelling() {
        let json: serde_json::Value =
            serde_json::from_str(include_str!("fixtures/search-checkouts.json")).unwrap();
        let ids: BTreeSet<String> = crate::traces::list::parse_search(&json)
            .unwrap()
            .into_iter()
            .map(|f| f.trace_id)
            .collect();
        assert_eq!(ids.len(), 2);
        assert!(
            compare(&ids, &ids.clone())
                .unwrap()
                .contains("exactly the 2 trace(s)")
        );
    }

    #[test]
    fn differences_are_named_both_ways() {
        let err = compare(&set(&["a", "b", "c"]), &set(&["b", "c", "d", "e"])).unwrap_err();
        assert!(
            err.contains("your query matches 4 trace(s), the reference 3"),
            "{err}"
        );
        assert!(
            err.contains("it misses 1 the reference finds (a): your condition is too narrow"),
            "{err}"
        );
        assert!(
            err.contains(
                "it also matches 2 the reference does not (d, e): your condition is too broad"
            ),
            "{err}"
        );
        let err = compare(&set(&["a", "b", "c", "d", "e"]), &set(&[])).unwrap_err();
        assert!(
            err.contains("misses 5 the reference finds (a, b, c and 2 more)"),
            "{err}"
        );
        assert!(!err.contains("too broad"), "{err}");
    }

    #[test]
    fn sets_at_the_search_limit_get_no_verdict() {
        let full: BTreeSet<String> = (0..SEARCH_LIMIT).map(|i| format!("{i:032x}")).collect();
        let mut under = full.clone();
        under.pop_last();
        assert!(
            compare(&under, &under.clone()).is_ok(),
            "one under the limit compares"
        );
        let err = compare(&full, &under).unwrap_err();
        assert!(
            err.contains("the reference query reaches the search limit of 1000"),
            "{err}"
        );
        let err = compare(&under, &full).unwrap_err();
        assert!(err.contains("your query reaches"), "{err}");
    }

    #[test]
    fn the_reference_queries_parse_in_the_desk() {
        for (id, _, q) in EXERCISES {
            trace_desk::traceql::parse(q).unwrap_or_else(|e| panic!("{id}: {e}"));
        }
    }
}
