//! `fleet quiz`: a hidden fault that only the traces reveal.

use crate::support::*;

#[tokio::test(flavor = "multi_thread")]
async fn quiz_hides_the_fault_checks_the_answer_and_shows_the_evidence() {
    let fleet = Fleet::start(FleetOptions::default()).await;
    let state =
        std::env::temp_dir().join(format!("fleet-quiz-{}.json", uuid::Uuid::new_v4().simple()));
    let state = state.to_string_lossy().to_string();
    let out = fleet
        .command(&[
            "quiz",
            "start",
            "--puzzle",
            "slow-insert",
            "--requests",
            "3",
            "--state",
            &state,
        ])
        .await;
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("3 checkouts"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // No peeking: the admin API hides the armed fault, the spans carry no fault event.
    let listing = fleet.admin_faults(&fleet.urls["order-api"]).await;
    assert!(
        listing.body["faults"]["hidden"].is_string(),
        "{}",
        listing.body
    );
    let traces = fleet.all_traces(3).await;
    for spans in roots_named(&traces, "POST /checkout") {
        assert!(
            spans
                .iter()
                .all(|s| !s.events.contains(&"fault.injected".to_owned()))
        );
        assert_eq!(
            largest_self_time(spans).name,
            "INSERT orders",
            "the fault is findable from the trace"
        );
    }

    let wrong = fleet
        .command_unchecked(&[
            "quiz",
            "answer",
            "payment-api",
            "POST /v1/charges",
            "--state",
            &state,
        ])
        .await;
    assert!(!wrong.status.success());
    assert!(String::from_utf8_lossy(&wrong.stdout).contains("Not quite"));

    let right = fleet
        .command(&[
            "quiz",
            "answer",
            "order-api",
            "insert orders",
            "--state",
            &state,
        ])
        .await;
    let text = String::from_utf8_lossy(&right.stdout).to_string();
    assert!(text.contains("Correct"), "{text}");
    assert!(
        text.contains("TraceQL: { span.db.operation.name = \"INSERT\" && duration > 300ms }"),
        "{text}"
    );
    assert!(
        text.contains("It matches 3 trace(s)"),
        "the evidence query finds every quiz checkout: {text}"
    );
    assert!(text.contains("span \"INSERT orders\""), "{text}");

    // Answered: the fault is gone and the quiz is over.
    let listing = fleet.admin_faults(&fleet.urls["order-api"]).await;
    assert_eq!(listing.body["faults"], serde_json::json!({}));
    assert!(!std::path::Path::new(&state).exists());
    fleet.stop().await;
}
