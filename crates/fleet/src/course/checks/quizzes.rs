//! Steps 6, 9 and 10 through the quiz: puzzles solved with `fleet quiz answer` are recorded in
//! the course's progress (with the seconds they took); the capstone is judged here, together
//! with the learner's TraceQL.

use super::{Ctx, Outcome, not_yet, usage};
use crate::course::{CourseError, progress::Progress};
use crate::quiz::Running;

/// Step 6's puzzles: a slow database, an N+1, an exhausted pool.
pub const BOTTLENECKS: [&str; 3] = ["slow-insert", "n-plus-one", "pool-exhaustion"];
/// Step 9's drills, each to be solved within [`DRILL_LIMIT_SECS`].
pub const DRILLS: [&str; 3] = ["timeout-cascade", "broken-propagation", "charge-errors"];
pub const DRILL_LIMIT_SECS: u64 = 600;
/// Step 10's incident.
pub const CAPSTONE: &str = "locked-table";

/// Every puzzle of `wanted` solved (within `limit` seconds when given).
pub fn solved_verdict(
    p: &Progress,
    wanted: &[&str],
    limit: Option<u64>,
) -> Result<Outcome, CourseError> {
    let missing: Vec<&str> = wanted
        .iter()
        .copied()
        .filter(|id| !p.puzzles.contains_key(*id))
        .collect();
    let slow: Vec<String> = wanted
        .iter()
        .filter_map(|id| {
            let took = *p.puzzles.get(*id)?;
            limit
                .filter(|l| took > *l)
                .map(|l| format!("{id} took {took} s, over the drill's {l} s"))
        })
        .collect();
    let mut problems = Vec::new();
    if !missing.is_empty() {
        problems.push(format!(
            "not solved yet: {} (e.g. `fleet quiz start --puzzle {}`, then `fleet quiz answer SERVICE \"OPERATION\"`)",
            missing.join(", "),
            missing[0]
        ));
    }
    if !slow.is_empty() {
        problems.push(format!(
            "{} (start it again and beat the clock)",
            slow.join("; ")
        ));
    }
    if !problems.is_empty() {
        return Err(not_yet(problems.join("; ")));
    }
    let times: Vec<String> = wanted
        .iter()
        .map(|id| {
            format!(
                "{id} in {} s",
                p.puzzles.get(*id).copied().unwrap_or_default()
            )
        })
        .collect();
    Ok(Outcome::done(format!("Solved: {}.", times.join(", "))))
}

pub fn check_bottlenecks(ctx: &Ctx) -> Result<Outcome, CourseError> {
    solved_verdict(&Progress::load(&ctx.data_dir)?, &BOTTLENECKS, None)
}

pub fn check_drills(ctx: &Ctx) -> Result<Outcome, CourseError> {
    solved_verdict(
        &Progress::load(&ctx.data_dir)?,
        &DRILLS,
        Some(DRILL_LIMIT_SECS),
    )
}

/// The capstone's root cause, without the query part.
pub fn capstone_verdict(
    running: &Running,
    service: &str,
    operation: &str,
) -> Result<(), CourseError> {
    if running.puzzle != CAPSTONE {
        return Err(not_yet(format!(
            "the running quiz is {}, not the capstone: `fleet quiz start --puzzle {CAPSTONE}`",
            running.puzzle
        )));
    }
    if !running.is_culprit(service, operation) {
        return Err(not_yet(format!(
            "{service} / \"{operation}\" is not the root cause: look again at what the slow traces share \
             (`fleet traces --slowest 5`)"
        )));
    }
    Ok(())
}

pub async fn check_capstone(ctx: &Ctx, args: &[String]) -> Result<Outcome, CourseError> {
    let [service, operation, query] = args else {
        return Err(usage(
            "give the root cause and your TraceQL: fleet course check 10 SERVICE \"OPERATION\" '{ … }'",
        ));
    };
    let running = Running::read(&ctx.quiz_state).map_err(|e| usage(format!("{e:#}")))?;
    capstone_verdict(&running, service, operation)?;
    let text =
        super::search::compare_live(ctx, query, running.traceql, running.started_unix).await?;
    Ok(Outcome::done(format!(
        "Root cause right: {service} / \"{operation}\". {text}\nClear the fault with `fleet scenario off`."
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn solved_puzzles_pass_and_missing_or_slow_ones_are_named() {
        let mut p = Progress::default();
        p.puzzles.insert("slow-insert".into(), 40);
        let err = solved_verdict(&p, &BOTTLENECKS, None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("not solved yet: n-plus-one, pool-exhaustion"),
            "{err}"
        );
        p.puzzles.insert("n-plus-one".into(), 70);
        p.puzzles.insert("pool-exhaustion".into(), 900);
        assert!(
            solved_verdict(&p, &BOTTLENECKS, None)
                .unwrap()
                .text
                .contains("pool-exhaustion in 900 s")
        );
        p.puzzles.insert("timeout-cascade".into(), 100);
        p.puzzles.insert("broken-propagation".into(), 700);
        let err = solved_verdict(&p, &DRILLS, Some(DRILL_LIMIT_SECS))
            .unwrap_err()
            .to_string();
        assert!(err.contains("not solved yet: charge-errors"), "{err}");
        assert!(
            err.contains("broken-propagation took 700 s, over the drill's 600 s"),
            "{err}"
        );
    }

    #[test]
    fn the_capstone_judges_the_running_quiz() {
        let path =
            std::env::temp_dir().join(format!("quiz-{}.json", uuid::Uuid::new_v4().simple()));
        std::fs::write(&path, r#"{"puzzle":"locked-table","started_unix":100}"#).unwrap();
        let running = Running::read(&path).unwrap();
        capstone_verdict(&running, "order-api", "insert orders").unwrap();
        let err = capstone_verdict(&running, "payment-api", "charge")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("payment-api / \"charge\" is not the root cause"),
            "{err}"
        );
        std::fs::write(&path, r#"{"puzzle":"slow-insert","started_unix":100}"#).unwrap();
        let err = capstone_verdict(&Running::read(&path).unwrap(), "order-api", "INSERT orders")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("the running quiz is slow-insert, not the capstone"),
            "{err}"
        );
        let _ = std::fs::remove_file(&path);
    }
}
