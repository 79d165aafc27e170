//! `fleet trace` and `fleet traces` against a trace desk loaded with the committed fixture
//! (`crates/trace-desk/tests/fixtures/fleet-traces.otlp.json`): golden waterfalls and the list.
//!
//! `UPDATE_GOLDEN=1 cargo test -p fleet --test traces` rewrites `tests/golden/*.txt`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Output, Stdio};

use serde_json::Value;
use tokio::process::Command;

const PAID: &str = "f5b08f76f1cceaa3e7a355004130f4cc";
const DECLINED: &str = "4ff1e1fbac8fed2c9c7cea776ce230c9";
const PROVIDER_FAULT: &str = "9ecd8cb49e973a1083cdfd954a62ac22";

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fixture() -> Value {
    let path = workspace().join("crates/trace-desk/tests/fixtures/fleet-traces.otlp.json");
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Per trace id (hex): (start, end, any error) from the fixture itself.
fn fixture_traces() -> BTreeMap<String, (u64, u64, bool)> {
    let mut out: BTreeMap<String, (u64, u64, bool)> = BTreeMap::new();
    for rs in fixture()["resourceSpans"].as_array().unwrap() {
        for ss in rs["scopeSpans"].as_array().unwrap() {
            for s in ss["spans"].as_array().unwrap() {
                let start: u64 = s["startTimeUnixNano"].as_str().unwrap().parse().unwrap();
                let end: u64 = s["endTimeUnixNano"].as_str().unwrap().parse().unwrap();
                let e = out
                    .entry(s["traceId"].as_str().unwrap().to_owned())
                    .or_insert((u64::MAX, 0, false));
                e.0 = e.0.min(start);
                e.1 = e.1.max(end);
                e.2 |= s["status"]["code"] == 2;
            }
        }
    }
    out
}

/// A desk in this process with the fixture loaded over OTLP/HTTP JSON.
async fn loaded_desk() -> (trace_desk::RunningDesk, String) {
    let desk = trace_desk::start(trace_desk::DeskConfig::ephemeral(100_000))
        .await
        .unwrap();
    let body =
        std::fs::read(workspace().join("crates/trace-desk/tests/fixtures/fleet-traces.otlp.json"))
            .unwrap();
    let resp = reqwest::Client::new()
        .post(format!("http://{}/v1/traces", desk.otlp_http_addr()))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{:?}", resp.text().await);
    let url = format!("http://{}", desk.api_addr());
    (desk, url)
}

async fn fleet(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fleet"))
        .args(args)
        .env_remove("NO_COLOR")
        .env_remove("FLEET_TEMPO_URL")
        .env_remove("COLUMNS")
        .env_remove("RUST_BACKTRACE")
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap()
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "fleet failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn golden(name: &str, actual: &str) {
    let path = workspace().join("tests/golden").join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (UPDATE_GOLDEN=1 cargo test -p fleet --test traces writes it)",
            path.display()
        )
    });
    if expected != actual {
        let first = expected
            .lines()
            .zip(actual.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(expected.lines().count().min(actual.lines().count()));
        panic!(
            "{name} differs from the golden file first at line {}\n--- expected\n{expected}\n--- actual\n{actual}\n\
             (UPDATE_GOLDEN=1 cargo test -p fleet --test traces rewrites it)",
            first + 1
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn waterfalls_match_the_golden_files() {
    let (desk, url) = loaded_desk().await;
    for (file, id, extra) in [
        ("trace-paid-checkout.txt", PAID, None),
        ("trace-declined.txt", DECLINED, None),
        ("trace-declined-attrs.txt", DECLINED, Some("--attrs")),
        ("trace-provider-fault.txt", PROVIDER_FAULT, None),
    ] {
        let mut args = vec!["trace", id, "--tempo", &url, "--no-color", "--width", "100"];
        args.extend(extra);
        let text = stdout(&fleet(&args).await);
        golden(file, &text);
    }
    desk.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn waterfall_content() {
    let (desk, url) = loaded_desk().await;
    // Without --no-color, but stdout is a pipe: no ANSI either.
    let text = stdout(&fleet(&["trace", DECLINED, "--tempo", &url, "--width", "100"]).await);
    assert!(!text.contains('\x1b'), "{text}");
    assert!(text.starts_with(&format!("trace {DECLINED}\n")), "{text}");
    assert!(
        text.contains("root      api-gateway  POST /checkout\n"),
        "{text}"
    );
    assert!(text.contains("spans     13, 3 with errors ✗"), "{text}");
    assert!(text.contains("✗ card declined"), "{text}");
    let slowest: Vec<&str> = text.lines().filter(|l| l.contains("◀ slowest (")).collect();
    assert_eq!(slowest.len(), 1, "{text}");
    assert!(
        slowest[0].contains("payment-api  POST /v1/charges"),
        "{text}"
    );
    // Every span line is 100 columns up to the bar's end.
    let span_lines: Vec<&str> = text
        .lines()
        .filter(|l| [" SRV ", " CLI ", " INT "].iter().any(|k| l.contains(k)))
        .collect();
    assert_eq!(span_lines.len(), 13, "{text}");
    for line in span_lines {
        let end = line.rfind('│').unwrap();
        assert_eq!(line[..end].chars().count() + 1, 100, "{line:?}");
    }
    // Tempo trims leading zeros; the short form works too.
    let short = stdout(
        &fleet(&[
            "trace",
            "cae4a3db4498753ebfa9dd6d3a31110",
            "--tempo",
            &url,
            "--no-color",
        ])
        .await,
    );
    assert!(
        short.starts_with("trace 0cae4a3db4498753ebfa9dd6d3a31110\n"),
        "{short}"
    );
    assert!(short.contains("GET /orders/{id}"), "{short}");

    let missing = fleet(&["trace", "1234", "--tempo", &url]).await;
    assert!(!missing.status.success());
    let err = String::from_utf8_lossy(&missing.stderr);
    assert!(err.contains("not found"), "{err}");
    let bad = fleet(&["trace", "xyz", "--tempo", &url]).await;
    assert!(!bad.status.success());
    desk.shutdown().await;
}

/// Trace ids (first column) of `fleet traces` output.
fn listed(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.len() == 32 && w.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn traces_lists_filters_and_sorts() {
    let (desk, url) = loaded_desk().await;
    let fixture = fixture_traces();
    assert_eq!(fixture.len(), 10);

    let all = stdout(&fleet(&["traces", "--tempo", &url, "--limit", "100"]).await);
    let ids = listed(&all);
    assert_eq!(
        ids.iter().cloned().collect::<BTreeSet<_>>(),
        fixture.keys().cloned().collect::<BTreeSet<_>>(),
        "{all}"
    );
    assert!(all.contains("TRACE ID"), "{all}");
    assert!(
        all.contains(&format!("  fleet trace {} --tempo {url}\n", ids[0])),
        "{all}"
    );

    let errors =
        stdout(&fleet(&["traces", "--tempo", &url, "--query", "{ status = error }"]).await);
    let want: BTreeSet<String> = fixture
        .iter()
        .filter(|(_, (_, _, err))| *err)
        .map(|(id, _)| id.clone())
        .collect();
    assert_eq!(want.len(), 4);
    assert_eq!(
        listed(&errors).into_iter().collect::<BTreeSet<_>>(),
        want,
        "{errors}"
    );
    for line in errors.lines().filter(|l| !listed(l).is_empty()) {
        assert!(line.contains('✗'), "{line}");
    }

    let slow = stdout(&fleet(&["traces", "--tempo", &url, "--slowest", "3"]).await);
    let mut by_duration: Vec<(&String, u64)> =
        fixture.iter().map(|(id, (s, e, _))| (id, e - s)).collect();
    by_duration.sort_by_key(|d| std::cmp::Reverse(d.1));
    let want: Vec<String> = by_duration[..3]
        .iter()
        .map(|(id, _)| (*id).clone())
        .collect();
    assert_eq!(listed(&slow), want, "{slow}");
    assert!(slow.contains("3 slowest of 10 traces"), "{slow}");

    let bad = fleet(&["traces", "--tempo", &url, "--query", "{ name = \"x\""]).await;
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("400"), "{err}");
    assert!(err.contains("invalid TraceQL query at column"), "{err}");
    assert!(!err.contains("backtrace"), "{err}");

    let none = stdout(&fleet(&["traces", "--tempo", &url, "-q", "{ name = \"nothing\" }"]).await);
    assert_eq!(none, "no traces found\n");

    desk.shutdown().await;

    // The desk is gone: a clear message and a non-zero exit.
    let gone = fleet(&["traces", "--tempo", &url]).await;
    assert!(!gone.status.success());
    let err = String::from_utf8_lossy(&gone.stderr);
    assert!(
        err.contains(&format!("cannot reach Tempo at {url}")),
        "{err}"
    );
}
