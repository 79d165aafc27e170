//! `fleet course`: the no-Docker steps walked on a fleet started by the test — each step's
//! commands (as written, or their equivalent with this fleet's URLs), then its check with a
//! right answer (passes) and a wrong one (fails, naming what was wrong).

use std::collections::HashSet;

use crate::support::*;

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

impl Fleet {
    /// `fleet course ARGS…`: must pass, and says so.
    async fn course_passes(&self, args: &[&str], says: &str) -> String {
        let mut argv = vec!["course"];
        argv.extend_from_slice(args);
        let out = self.command_unchecked(&argv).await;
        let t = text(&out);
        assert!(out.status.success(), "fleet {argv:?} failed:\n{t}");
        assert!(
            t.contains(says),
            "fleet {argv:?} does not say {says:?}:\n{t}"
        );
        t
    }

    /// `fleet course ARGS…`: must fail, and its message must name `what`.
    async fn course_fails(&self, args: &[&str], what: &str) -> String {
        let mut argv = vec!["course"];
        argv.extend_from_slice(args);
        let out = self.command_unchecked(&argv).await;
        let t = text(&out);
        assert_eq!(
            out.status.code(),
            Some(1),
            "fleet {argv:?} did not fail:\n{t}"
        );
        assert!(
            t.contains(what),
            "fleet {argv:?} does not name {what:?}:\n{t}"
        );
        t
    }
}

/// The critical path's last span, computed here independently of the check: from the root,
/// the child that finished last within its parent.
fn critical_path_end(spans: &[Span]) -> String {
    let ids: HashSet<&str> = spans.iter().map(|s| s.span_id.as_str()).collect();
    let mut at = spans
        .iter()
        .filter(|s| s.parent_span_id.as_deref().is_none_or(|p| !ids.contains(p)))
        .min_by_key(|s| s.start)
        .expect("a root");
    while let Some(next) = spans
        .iter()
        .filter(|s| s.parent_span_id.as_deref() == Some(at.span_id.as_str()) && s.end <= at.end)
        .max_by_key(|s| s.end)
    {
        at = next;
    }
    at.name.clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn course_walks_the_no_docker_steps_with_right_and_wrong_answers() {
    // Step 3's no-Docker track: the fleet started with the resource attribute.
    let fleet = Fleet::start(FleetOptions {
        env: vec![(
            "OTEL_RESOURCE_ATTRIBUTES".into(),
            "deployment.environment.name=course".into(),
        )],
        ..Default::default()
    })
    .await;
    let desk = fleet.desk().to_owned();
    let gateway = fleet.gateway().to_owned();
    fleet
        .course_passes(&["list"], "All steps (0 / 10 completed)")
        .await;
    fleet.course_passes(&["show", "1"], "Commands to run").await;

    // Step 1: a checkout with the learner's own traceparent.
    let trace = uuid::Uuid::new_v4().simple().to_string();
    let span = &uuid::Uuid::new_v4().simple().to_string()[..16];
    let traceparent = format!("00-{trace}-{span}-01");
    let reply = post_json(
        &format!("{gateway}/checkout"),
        &order_body("ada@example.com", &[("COFFEE-250G", 1)], CARD_OK),
        &[("traceparent", &traceparent)],
    )
    .await;
    assert_eq!(reply.status, 201);
    assert_eq!(reply.trace_id(), trace);
    wait_for_trace(&desk, &trace, 20).await;
    fleet
        .command(&["trace", &trace, "--attrs", "--tempo", &desk])
        .await;
    fleet
        .course_fails(
            &["check", "1", &trace, "0123456789abcdef"],
            &format!("has parent {span}, not your span id 0123456789abcdef"),
        )
        .await;
    fleet
        .course_fails(&["check", "1", &format!("00-{trace}-{span}")], "four parts")
        .await;
    fleet
        .course_passes(
            &["check", "1", &traceparent],
            &format!("is the child of your span {span}"),
        )
        .await;

    // Step 2: the desk is the backend; the gateway is not a Tempo.
    assert_eq!(get(&format!("{desk}/ready")).await.status, 200);
    assert_eq!(
        get(&format!("{desk}/api/status/buildinfo")).await.status,
        200
    );
    fleet
        .course_fails(&["check", "2", "--tempo", &gateway], "/ready answered 404")
        .await;
    fleet
        .course_passes(&["check", "2"], "follows Tempo 2.")
        .await;

    // Step 3: every service carries the attribute; a value the learner did not set fails.
    fleet
        .course_fails(
            &["check", "3", "staging"],
            "carry deployment.environment.name=\"course\", not \"staging\"",
        )
        .await;
    fleet
        .course_passes(
            &["check", "3", "course"],
            "carries deployment.environment.name=course",
        )
        .await;

    // Step 4: the traffic of the step, then the three exercises.
    let load = |args: &[&str]| {
        let mut v = vec!["load", "--url", gateway.as_str(), "--quiet"];
        v.extend_from_slice(args);
        v.into_iter().map(str::to_owned).collect::<Vec<String>>()
    };
    for args in [
        load(&["--rate", "10", "--duration", "10s", "--decline-rate", "0.3"]),
        vec!["scenario".into(), "on".into(), "retry-storm".into()],
        load(&["--rate", "5", "--duration", "10s"]),
        vec!["scenario".into(), "off".into()],
    ] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        // `fleet load` exits non-zero when checkouts fail, which the step wants.
        fleet.command_unchecked(&args).await;
    }
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    fleet
        .course_fails(
            &[
                "check",
                "4",
                "failed-checkouts",
                r#"{ name = "POST /checkout" }"#,
            ],
            "your condition is too broad",
        )
        .await;
    fleet
        .course_fails(
            &[
                "check",
                "4",
                "failed-checkouts",
                r#"{ name = "POST /checkout" "#,
            ],
            "does not parse",
        )
        .await;
    fleet
        .course_passes(
            &["check", "4", "failed-checkouts", r#"{ kind = server && name = "POST /checkout" && span.http.response.status_code > 399 }"#],
            "Exercises left: slow-retried, payment-errors",
        )
        .await;
    fleet
        .course_fails(
            &[
                "check",
                "4",
                "slow-retried",
                r#"{ span.http.request.resend_count > 0 }"#,
            ],
            "too broad",
        )
        .await;
    fleet
        .course_passes(
            &[
                "check",
                "4",
                "slow-retried",
                r#"{ span.http.request.resend_count > 0 } && { trace:duration > 500ms }"#,
            ],
            "slow-retried: Your query matches exactly",
        )
        .await;
    fleet
        .course_passes(
            &[
                "check",
                "4",
                "payment-errors",
                r#"{ resource.service.name = "payment-api" && status = error }"#,
            ],
            "All three exercises pass",
        )
        .await;

    // Step 5: the check makes the trace; the answers are read from it here.
    let out = fleet.course_passes(&["check", "5"], "Your trace: ").await;
    let id = out
        .split("Your trace: ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .expect("a trace id")
        .to_owned();
    let spans = wait_for_trace(&desk, &id, 20).await;
    let top = largest_self_time(&spans).name.clone();
    let end = critical_path_end(&spans);
    let wrong_self = if top == "sendEmail" {
        "charge"
    } else {
        "sendEmail"
    };
    fleet
        .course_fails(
            &["check", "5", wrong_self, &end],
            &format!("you said \"{wrong_self}\""),
        )
        .await;
    fleet
        .course_fails(
            &["check", "5", &top, "POST /checkout"],
            "end of the critical path: you said \"POST /checkout\"",
        )
        .await;
    fleet
        .course_passes(
            &["check", "5", &top, &end],
            "Step 5 — Read span waterfalls: passed",
        )
        .await;

    // Step 8 needs the Collector's tail sampler: on the desk, which keeps everything, its check
    // fails and says so; a trace without the policy attribute cannot answer the question.
    fleet
        .course_fails(
            &["check", "8"],
            "everything is kept, so nothing samples at the tail",
        )
        .await;
    fleet
        .course_fails(
            &["check", "8", &id, "keep-errors"],
            "carries no tailsampling.policy",
        )
        .await;

    // …and its no-Docker track asks about three recorded traces.
    fleet
        .course_passes(&["check", "8", "--offline"], "Trace C")
        .await;
    fleet
        .course_fails(
            &[
                "check",
                "8",
                "--offline",
                "keep-slow",
                "keep-slow",
                "keep-errors",
            ],
            "trace B: you said keep-slow, but the first policy that can keep it is baseline-10pct",
        )
        .await;
    fleet
        .course_passes(
            &[
                "check",
                "8",
                "--offline",
                "keep-slow",
                "baseline-10pct",
                "keep-errors",
            ],
            "Step 8 — Tail sampling: passed",
        )
        .await;

    // Steps 6, 9 and 10: puzzles through `fleet quiz`, recorded by the course.
    let state = fleet
        .data_dir
        .join("quiz.json")
        .to_string_lossy()
        .to_string();
    let quiz = |puzzle: &'static str, service: &'static str, operation: &'static str| {
        let state = state.clone();
        let fleet = &fleet;
        async move {
            fleet
                .command(&[
                    "quiz",
                    "start",
                    "--puzzle",
                    puzzle,
                    "--requests",
                    "3",
                    "--state",
                    &state,
                ])
                .await;
            fleet
                .command(&["quiz", "answer", service, operation, "--state", &state])
                .await;
        }
    };
    quiz("slow-insert", "order-api", "INSERT orders").await;
    fleet
        .course_fails(
            &["check", "6"],
            "not solved yet: n-plus-one, pool-exhaustion",
        )
        .await;
    quiz("n-plus-one", "order-api", "SELECT order_items").await;
    quiz("pool-exhaustion", "order-api", "sqlx.pool.acquire").await;
    fleet
        .course_passes(&["check", "6"], "Step 6 — Identify bottlenecks: passed")
        .await;

    quiz("timeout-cascade", "payment-api", "POST /v1/charges").await;
    quiz(
        "broken-propagation",
        "order-api",
        "payment.v1.PaymentService/Charge",
    )
    .await;
    fleet
        .course_fails(&["check", "9"], "not solved yet: charge-errors")
        .await;
    quiz(
        "charge-errors",
        "payment-api",
        "payment.v1.PaymentService/Charge",
    )
    .await;
    fleet
        .course_passes(&["check", "9"], "timeout-cascade in ")
        .await;

    fleet
        .command(&[
            "quiz",
            "start",
            "--puzzle",
            "locked-table",
            "--requests",
            "3",
            "--state",
            &state,
        ])
        .await;
    let right_query = r#"{ duration > 300ms && span.db.operation.name = "INSERT" }"#;
    fleet
        .course_fails(
            &[
                "check",
                "10",
                "payment-api",
                "charge",
                right_query,
                "--quiz-state",
                &state,
            ],
            "payment-api / \"charge\" is not the root cause",
        )
        .await;
    fleet
        .course_fails(
            &[
                "check",
                "10",
                "order-api",
                "INSERT orders",
                "{ duration > 20s }",
                "--quiz-state",
                &state,
            ],
            "your condition is too narrow",
        )
        .await;
    fleet
        .course_passes(
            &[
                "check",
                "10",
                "order-api",
                "INSERT orders",
                right_query,
                "--quiz-state",
                &state,
            ],
            "Root cause right",
        )
        .await;
    fleet.command(&["scenario", "off"]).await;

    // Step 7 restarts the fleet with a sampler: the test below.
    let list = fleet
        .course_passes(&["list"], "All steps (9 / 10 completed)")
        .await;
    assert!(list.contains("[ ]  7. Head sampling"), "{list}");
    assert!(list.contains("[✓] 10. Production practices"), "{list}");
    fleet.course_passes(&["reset"], "0 / 10 completed").await;
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn course_step_7_measures_head_sampling_against_the_ratio() {
    let fleet = Fleet::start(FleetOptions {
        env: vec![
            (
                "OTEL_TRACES_SAMPLER".into(),
                "parentbased_traceidratio".into(),
            ),
            ("OTEL_TRACES_SAMPLER_ARG".into(), "0.25".into()),
        ],
        ..Default::default()
    })
    .await;
    let gateway = fleet.gateway().to_owned();
    fleet
        .command(&[
            "load",
            "--url",
            &gateway,
            "--rate",
            "20",
            "--duration",
            "2s",
            "--quiet",
        ])
        .await;
    fleet
        .course_fails(&["check", "7", "0.9"], "The fleet samples at about 0.")
        .await;
    fleet
        .course_passes(&["check", "7", "0.25"], "every kept trace is whole")
        .await;
    fleet.course_passes(&["progress"], "1 / 10 completed").await;
    fleet.stop().await;
}
