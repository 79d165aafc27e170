//! Chaos: the trace backend fails while checkouts flow. Three whole fleets side by side under
//! the same interleaved load: a baseline exporting to its own healthy desk, one exporting to a
//! black hole (a port that accepts connections and never answers, over OTLP/HTTP), and one
//! exporting over OTLP/gRPC to a desk the test stops and starts again on the same port.
//! Asserted: no checkout fails; p99 stays within 10% of the baseline's; the services' memory
//! stays bounded; spans flow again once the desk is back; SIGTERM stops the black-holed fleet
//! within the stop budget.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use fleet::supervisor::STOP_BUDGET;
use nix::sys::signal::Signal;
use trace_desk::{DeskConfig, RunningDesk};

use crate::support::*;

const RATE_PER_SECOND: u64 = 10;
const RUN: Duration = Duration::from_secs(20);
const DESK_DOWN_AT: Duration = Duration::from_secs(5);
const DESK_DOWN_FOR: Duration = Duration::from_secs(4);
/// The exporter's connection backs off after failures; spans of checkouts sent this long after
/// the desk returns must all arrive.
const RECOVERY: Duration = Duration::from_secs(3);
/// p99 may exceed the baseline's by this fraction, or by the floor when that is larger. The p99
/// of 201 checkouts is their second-slowest, so one scheduling stall of a 2-core machine running
/// 18 processes moves it: runs of the full suite saw +16 ms and +53 ms with nothing wrong. An SDK
/// that blocked a request on a hung export would cost seconds (the exporter's 10 s timeout), far
/// past 50 ms.
const P99_FRACTION: f64 = 0.10;
const P99_FLOOR_MS: f64 = 50.0;
/// A service's queue of unexported spans is bounded (OTEL_BSP_MAX_QUEUE_SIZE, 2048); its memory
/// may grow by the queue and the hung connections, not without bound.
const RSS_SLACK_KIB: u64 = 32 * 1024;

/// Accepts connections and never reads or answers: every export hangs until its timeout.
async fn black_hole() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    (addr, task)
}

fn desk_config(template: &DeskConfig) -> DeskConfig {
    DeskConfig {
        api_addr: template.api_addr,
        otlp_grpc_addr: template.otlp_grpc_addr,
        otlp_http_addr: template.otlp_http_addr,
        ..DeskConfig::ephemeral(200_000)
    }
}

/// Starts a desk on fixed addresses (its previous ones), retrying while the old sockets linger.
async fn start_desk_on(config: &DeskConfig) -> RunningDesk {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match trace_desk::start(desk_config(config)).await {
            Ok(desk) => return desk,
            Err(e) => {
                assert!(Instant::now() < deadline, "desk did not restart: {e:#}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

/// Resident memory of each service (every component but the desk), by name.
fn service_rss(fleet: &Fleet) -> Vec<(String, u64)> {
    fleet
        .state()
        .components
        .iter()
        .filter(|c| c.name != fleet::topology::DESK)
        .filter_map(|c| Some((c.name.clone(), rss_kib(c.pid?))))
        .collect()
}

fn p99(latencies: &mut [f64]) -> f64 {
    latencies.sort_by(f64::total_cmp);
    let rank = ((latencies.len() as f64) * 0.99).ceil() as usize;
    latencies[rank.clamp(1, latencies.len()) - 1]
}

struct Sent {
    fleet: usize,
    at: Duration,
    status: u16,
    millis: f64,
    trace_id: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hung_or_restarting_trace_backend_costs_the_checkouts_nothing() {
    let (hole, hole_task) = black_hole().await;
    let first = trace_desk::start(DeskConfig::ephemeral(200_000))
        .await
        .unwrap();
    let restart_config = DeskConfig {
        api_addr: first.api_addr(),
        otlp_grpc_addr: first.otlp_grpc_addr(),
        otlp_http_addr: first.otlp_http_addr(),
        ..DeskConfig::ephemeral(200_000)
    };
    let desk_url = format!("http://{}", first.api_addr());

    let baseline = Fleet::start(FleetOptions::default()).await;
    let mut holed = Fleet::start(FleetOptions {
        env: vec![(
            "OTEL_EXPORTER_OTLP_ENDPOINT".into(),
            format!("http://{hole}"),
        )],
        ..Default::default()
    })
    .await;
    let restarting = Fleet::start(FleetOptions {
        env: vec![
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT".into(),
                format!("http://{}", first.otlp_grpc_addr()),
            ),
            ("OTEL_EXPORTER_OTLP_PROTOCOL".into(), "grpc".into()),
        ],
        ..Default::default()
    })
    .await;
    let gateways = [
        baseline.gateway().to_owned(),
        holed.gateway().to_owned(),
        restarting.gateway().to_owned(),
    ];
    let rss_before = service_rss(&holed);

    // The same load on each fleet, interleaved tick by tick so that the machine's noise falls
    // on all three alike.
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap();
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(1000 / RATE_PER_SECOND));
    let mut tasks = Vec::new();
    let mut desk = Some(first);
    let mut down_since = None;
    let mut n = 0;
    while started.elapsed() < RUN {
        tick.tick().await;
        if desk.is_some() && down_since.is_none() && started.elapsed() >= DESK_DOWN_AT {
            desk.take().unwrap().shutdown().await;
            down_since = Some(started.elapsed());
        }
        if let Some(since) = down_since
            && desk.is_none()
            && started.elapsed() >= since + DESK_DOWN_FOR
        {
            desk = Some(start_desk_on(&restart_config).await);
        }
        for (i, gateway) in gateways.iter().enumerate() {
            n += 1;
            let (client, url) = (client.clone(), format!("{gateway}/checkout"));
            let body = order_body(&format!("c{n}@example.com"), &[("COFFEE-250G", 1)], CARD_OK);
            tasks.push(tokio::spawn(async move {
                let at = started.elapsed();
                let t = Instant::now();
                let resp = client.post(url).json(&body).send().await;
                let millis = t.elapsed().as_secs_f64() * 1000.0;
                let (status, trace_id) = match resp {
                    Ok(r) => (
                        r.status().as_u16(),
                        r.headers()
                            .get("x-trace-id")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_owned(),
                    ),
                    Err(_) => (0, String::new()),
                };
                Sent {
                    fleet: i,
                    at,
                    status,
                    millis,
                    trace_id,
                }
            }));
        }
    }
    let restarted_at = started.elapsed() - (RUN - DESK_DOWN_AT - DESK_DOWN_FOR);
    let mut sent = Vec::new();
    for t in tasks {
        sent.push(t.await.unwrap());
    }
    let desk = desk.expect("the desk was restarted");
    let rss_after = service_rss(&holed);
    let rss_baseline = service_rss(&baseline);

    // No checkout failed, whatever the backend did.
    let failed: Vec<(usize, u16)> = sent
        .iter()
        .filter(|s| s.status != 201)
        .map(|s| (s.fleet, s.status))
        .collect();
    assert!(
        failed.is_empty(),
        "failed checkouts (fleet, status): {failed:?}"
    );

    // p99 side by side.
    let mut p = [0.0; 3];
    for (i, slot) in p.iter_mut().enumerate() {
        let mut l: Vec<f64> = sent
            .iter()
            .filter(|s| s.fleet == i)
            .map(|s| s.millis)
            .collect();
        *slot = p99(&mut l);
    }
    for i in 0..3 {
        let mut l: Vec<f64> = sent
            .iter()
            .filter(|s| s.fleet == i)
            .map(|s| s.millis)
            .collect();
        l.sort_by(f64::total_cmp);
        eprintln!(
            "fleet {i}: p50 {:.1} p90 {:.1} p99 {:.1} max {:.1}",
            l[l.len() / 2],
            l[l.len() * 9 / 10],
            l[l.len() * 99 / 100],
            l[l.len() - 1]
        );
    }
    eprintln!(
        "checkout p99: baseline {:.1} ms, black hole {:.1} ms ({:.2}x), desk restarted {:.1} ms ({:.2}x); {} checkouts each",
        p[0],
        p[1],
        p[1] / p[0],
        p[2],
        p[2] / p[0],
        sent.len() / 3
    );
    let allowed = (p[0] * (1.0 + P99_FRACTION)).max(p[0] + P99_FLOOR_MS);
    assert!(
        p[1] <= allowed,
        "black hole: p99 {:.1} ms > {allowed:.1} ms",
        p[1]
    );
    assert!(
        p[2] <= allowed,
        "desk restart: p99 {:.1} ms > {allowed:.1} ms",
        p[2]
    );

    // Memory stays bounded while every export hangs.
    eprintln!("RSS KiB before {rss_before:?}, after {rss_after:?}, baseline {rss_baseline:?}");
    for (name, after) in &rss_after {
        let base = rss_baseline
            .iter()
            .find(|(n, _)| n == name)
            .map_or(0, |(_, k)| *k);
        assert!(
            *after <= base + RSS_SLACK_KIB,
            "{name}: {after} KiB with a black-hole collector, {base} KiB in the baseline"
        );
    }

    // Spans flow again once the desk is back: every checkout sent after recovery has its whole
    // trace (as many spans as a baseline checkout) in the restarted desk.
    let baseline_spans = wait_for_trace(
        baseline.desk(),
        &sent.iter().find(|s| s.fleet == 0).unwrap().trace_id,
        1,
    )
    .await
    .len();
    let after: Vec<&Sent> = sent
        .iter()
        .filter(|s| s.fleet == 2 && s.at >= restarted_at + RECOVERY)
        .collect();
    assert!(
        after.len() >= 20,
        "too few checkouts after recovery: {}",
        after.len()
    );
    for s in &after {
        let spans = wait_for_trace(&desk_url, &s.trace_id, baseline_spans).await;
        assert_eq!(spans.len(), baseline_spans, "{}", describe(&spans));
    }
    eprintln!(
        "desk restarted at {restarted_at:?}: {} checkouts after recovery, each with all {baseline_spans} spans",
        after.len()
    );

    // SIGTERM stops the black-holed fleet within the budget.
    let t = Instant::now();
    holed.signal(Signal::SIGTERM);
    let exit = holed.wait_exit(STOP_BUDGET + Duration::from_secs(5)).await;
    let took = t.elapsed();
    eprintln!("black-holed fleet stopped in {took:?}");
    assert!(exit.success(), "{exit}");
    assert!(
        took < STOP_BUDGET + Duration::from_secs(2),
        "stopping took {took:?}"
    );

    restarting.stop().await;
    baseline.stop().await;
    desk.shutdown().await;
    hole_task.abort();
}
