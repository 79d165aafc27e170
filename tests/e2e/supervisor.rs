//! `fleet up` as a supervisor: a crash restarts one component on its address while the others
//! serve; Ctrl-C and SIGTERM stop in reverse dependency order within a bound; the admin API is
//! never left open.

use std::time::{Duration, Instant};

use fleet::supervisor::{CRASH_LIMIT, STOP_BUDGET};
use fleet::topology::{self, COMPONENTS};
use nix::sys::signal::Signal;

use crate::support::*;

fn sigkill(pid: u32) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), Signal::SIGKILL)
        .expect("SIGKILL a component");
}

fn pid_of(fleet: &Fleet, name: &str) -> u32 {
    fleet
        .state()
        .components
        .iter()
        .find(|c| c.name == name)
        .and_then(|c| c.pid)
        .unwrap_or_else(|| panic!("no pid for {name} in the state file"))
}

fn ready_url(fleet: &Fleet, name: &str) -> String {
    let c = topology::component(name).expect("component");
    format!("{}{}", fleet.urls[name], c.ready_path)
}

async fn status_of(client: &reqwest::Client, url: &str) -> Option<u16> {
    client
        .get(url)
        .send()
        .await
        .ok()
        .map(|r| r.status().as_u16())
}

#[tokio::test(flavor = "multi_thread")]
async fn each_killed_component_comes_back_on_its_address_while_the_others_serve() {
    let fleet = Fleet::start(FleetOptions::default()).await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let checkout = format!("{}/checkout", fleet.gateway());
    let products = format!("{}/products", fleet.gateway());
    for c in COMPONENTS {
        let name = c.name;
        let pid = pid_of(&fleet, name);
        let killed_at = Instant::now();
        sigkill(pid);

        tokio::time::sleep(Duration::from_millis(100)).await;
        // While it is down (the first restart waits 0.5 s), its callers answer as they should
        // and everything else still serves.
        match name {
            topology::NOTIFICATION | topology::DESK => {
                let reply = post_json(
                    &checkout,
                    &order_body("crash@example.com", &[("COFFEE-250G", 1)], CARD_OK),
                    &[],
                )
                .await;
                assert_eq!(
                    reply.status, 201,
                    "checkouts go on without {name}: {}",
                    reply.body
                );
            }
            topology::ORDER_API => {
                let started = Instant::now();
                let status = status_of(&client, &products).await;
                assert_eq!(status, Some(503), "the gateway says order-api is down");
                assert!(
                    started.elapsed() < Duration::from_secs(2),
                    "the gateway answered quickly ({:?})",
                    started.elapsed()
                );
            }
            topology::GATEWAY => {}
            _ => assert_eq!(status_of(&client, &products).await, Some(200)),
        }

        for other in COMPONENTS.iter().filter(|o| o.name != name) {
            assert_eq!(
                status_of(&client, &ready_url(&fleet, other.name)).await,
                Some(200),
                "{} kept serving while {name} was down",
                other.name
            );
        }
        fleet
            .wait_for_line(
                &format!("fleet:restarted {name} 1"),
                Duration::from_secs(30),
            )
            .await;
        eprintln!(
            "{name}: restarted and ready {:?} after SIGKILL",
            killed_at.elapsed()
        );
        assert!(
            fleet.output().iter().any(|l| l
                == &format!("fleet: {name} exited (signal 9); restarting in 0.5s (restart 1)")),
            "fleet up said what happened:\n{}",
            fleet.output().join("\n")
        );
        assert_eq!(
            status_of(&client, &ready_url(&fleet, name)).await,
            Some(200),
            "{name} answers again on its address"
        );
        assert_ne!(pid_of(&fleet, name), pid, "{name} is a new process");
        assert!(!alive(pid));
    }
    // Everything works end to end again, and `fleet scenario status` shows the restarts.
    let reply = post_json(
        &checkout,
        &order_body("after@example.com", &[("COFFEE-250G", 1)], CARD_OK),
        &[],
    )
    .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let status = fleet.command(&["scenario", "status"]).await;
    let text = String::from_utf8_lossy(&status.stdout).to_string();
    for c in COMPONENTS {
        assert!(
            text.lines()
                .any(|l| l.starts_with(c.name) && l.contains("restarts 1")),
            "{}: {text}",
            c.name
        );
    }
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_component_that_keeps_crashing_stops_the_fleet() {
    let mut fleet = Fleet::start(FleetOptions::default()).await;
    let name = topology::NOTIFICATION;
    let others: Vec<u32> = fleet
        .state()
        .components
        .iter()
        .filter_map(|c| c.pid)
        .collect();
    for crash in 1..=CRASH_LIMIT {
        sigkill(pid_of(&fleet, name));
        if crash < CRASH_LIMIT {
            fleet
                .wait_for_line(
                    &format!("fleet:restarted {name} {crash}"),
                    Duration::from_secs(30),
                )
                .await;
        }
    }
    let exit = fleet.wait_exit(Duration::from_secs(20)).await;
    assert!(!exit.success(), "giving up is an error: {exit}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        fleet.output().iter().any(|l| l == "fleet:stopped"),
        "{}",
        fleet.output().join("\n")
    );
    let left: Vec<u32> = others.into_iter().filter(|p| alive(*p)).collect();
    assert!(left.is_empty(), "still running: {left:?}");
}

/// Checkouts, as many and as concurrent as the fleet takes, until `stop` says so. Returns the
/// trace ids of those answered 2xx.
fn checkouts_in_flight(
    gateway: &str,
    workers: usize,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<Vec<String>>> {
    (0..workers)
        .map(|w| {
            let checkout = format!("{gateway}/checkout");
            let stop = stop.clone();
            tokio::spawn(async move {
                let client = reqwest::Client::builder()
                    .timeout(Duration::from_secs(15))
                    .build()
                    .unwrap();
                let mut ok = Vec::new();
                let mut i = 0;
                while !*stop.borrow() {
                    i += 1;
                    let sent = client
                        .post(&checkout)
                        .json(&order_body(
                            &format!("w{w}-{i}@example.com"),
                            &[("COFFEE-250G", 1)],
                            CARD_OK,
                        ))
                        .send()
                        .await;
                    match sent {
                        Ok(r) if r.status().is_success() => {
                            let id = r
                                .headers()
                                .get("x-trace-id")
                                .and_then(|v| v.to_str().ok())
                                .expect("x-trace-id")
                                .to_owned();
                            ok.push(id);
                        }
                        // Refused or cut off once the gateway stops: not answered 2xx.
                        _ => tokio::time::sleep(Duration::from_millis(20)).await,
                    }
                }
                ok
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn ctrl_c_under_load_leaves_every_answered_checkout_a_complete_trace_and_its_email() {
    stop_under_load(true).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_under_load_leaves_every_answered_checkout_a_complete_trace_and_its_email() {
    stop_under_load(false).await;
}

/// Checkouts in flight, then the terminal's Ctrl-C (SIGINT to the whole process group) or a
/// SIGTERM to `fleet up` alone: the gateway stops first, so every checkout answered 2xx has its
/// whole trace (its email included) in a desk that outlives the fleet, and nothing is left running.
async fn stop_under_load(ctrl_c: bool) {
    // The desk lives in this test so it outlives the fleet and sees everyone's last spans.
    let desk = trace_desk::start(trace_desk::DeskConfig::ephemeral(200_000))
        .await
        .expect("desk");
    let desk_url = format!("http://{}", desk.api_addr());
    let mut fleet = Fleet::start_with(
        FleetOptions {
            database_url: None,
            env: vec![
                (
                    "OTEL_EXPORTER_OTLP_ENDPOINT".into(),
                    format!("http://{}", desk.otlp_http_addr()),
                ),
                // Slow enough that checkouts are mid-way when the signal arrives.
                ("PROVIDER_LATENCY_MS".into(), "300".into()),
            ],
        },
        ctrl_c,
    )
    .await;
    let pids: Vec<u32> = fleet
        .state()
        .components
        .iter()
        .filter_map(|c| c.pid)
        .collect();
    assert_eq!(
        pids.len(),
        COMPONENTS.len() - 1,
        "every component but the desk"
    );
    // One checkout before the load: its trace, once whole, is what "complete" means.
    let first = post_json(
        &format!("{}/checkout", fleet.gateway()),
        &order_body("first@example.com", &[("COFFEE-250G", 1)], CARD_OK),
        &[],
    )
    .await;
    assert_eq!(first.status, 201, "{}", first.body);
    let complete = wait_for_trace(&desk_url, &first.trace_id(), 1).await.len();

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let workers = checkouts_in_flight(fleet.gateway(), 8, stop_rx);
    tokio::time::sleep(Duration::from_millis(1500)).await;

    if ctrl_c {
        fleet.signal_group(Signal::SIGINT);
    } else {
        fleet.signal(Signal::SIGTERM);
    }
    let exit = fleet.wait_exit(STOP_BUDGET + Duration::from_secs(5)).await;
    let _ = stop_tx.send(true);
    let mut answered = Vec::new();
    for w in workers {
        answered.extend(w.await.expect("join"));
    }
    assert!(exit.success(), "a clean stop: {exit}");
    assert!(
        answered.len() >= 8,
        "checkouts were answered before the signal: {}",
        answered.len()
    );
    for (n, id) in answered.iter().enumerate() {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let reply = get(&format!("{desk_url}/api/traces/{id}")).await;
            let spans = if reply.status == 200 {
                parse_trace(&reply.body)
            } else {
                Vec::new()
            };
            let emailed = spans
                .iter()
                .any(|s| s.service == "notification" && s.name == "sendEmail");
            if emailed && spans.len() == complete {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "checkout {id} ({} of {} answered 2xx) has {} of {complete} spans{}:\n{}",
                n + 1,
                answered.len(),
                spans.len(),
                if emailed { "" } else { ", and no email" },
                describe(&spans)
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    eprintln!(
        "{}: {} checkouts answered 2xx, each with all {complete} spans and its email",
        if ctrl_c { "Ctrl-C" } else { "SIGTERM" },
        answered.len()
    );
    let left: Vec<u32> = pids.into_iter().filter(|p| alive(*p)).collect();
    assert!(left.is_empty(), "still running after the stop: {left:?}");
    desk.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_stops_the_fleet_within_the_bound_when_the_collector_never_answers() {
    // A collector that accepts connections and never reads a byte: every export hangs.
    let black_hole = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let endpoint = format!("http://{}", black_hole.local_addr().expect("addr"));
    let mut fleet = Fleet::start(FleetOptions {
        database_url: None,
        env: vec![("OTEL_EXPORTER_OTLP_ENDPOINT".into(), endpoint)],
    })
    .await;
    let pids: Vec<u32> = fleet
        .state()
        .components
        .iter()
        .filter_map(|c| c.pid)
        .collect();
    // Spans waiting to be exported, so that every service has something to flush.
    for i in 0..5 {
        let reply = post_json(
            &format!("{}/checkout", fleet.gateway()),
            &order_body(
                &format!("bh{i}@example.com"),
                &[("MUG-CERAMIC", 1)],
                CARD_OK,
            ),
            &[],
        )
        .await;
        assert_eq!(reply.status, 201, "{}", reply.body);
    }
    let started = Instant::now();
    fleet.signal(Signal::SIGTERM);
    let exit = fleet.wait_exit(Duration::from_secs(60)).await;
    let took = started.elapsed();
    eprintln!("fleet up stopped {took:?} after SIGTERM with a black-hole collector");
    for line in fleet.output().iter().filter(|l| l.contains("killed it")) {
        eprintln!("  {line}");
    }
    assert!(exit.success(), "{exit}");
    assert!(
        took < STOP_BUDGET + Duration::from_secs(2),
        "stopping took {took:?}, the bound is {STOP_BUDGET:?}"
    );
    let left: Vec<u32> = pids.into_iter().filter(|p| alive(*p)).collect();
    assert!(left.is_empty(), "still running: {left:?}");
    drop(black_hole);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_admin_api_needs_the_token_fleet_up_generated() {
    let fleet = Fleet::start(FleetOptions::default()).await;
    let token_file = fleet.data_dir.join("admin-token");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&token_file)
            .expect("fleet up wrote its admin token")
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600, "only its owner reads the token");
    assert_eq!(fleet.admin_token().len(), 32);
    for (c, _) in topology::admin_targets() {
        let resp = reqwest::Client::new()
            .put(format!("{}/admin/faults", fleet.urls[c.name]))
            .header("content-type", "text/plain")
            .body("order.db:latency=1s")
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status().as_u16(), 401, "{} without a token", c.name);
    }
    let out = fleet.command(&["scenario", "on", "slow-payment"]).await;
    assert!(String::from_utf8_lossy(&out.stdout).contains("slow-payment is on"));
    let mut armed = 0;
    for (c, _) in topology::admin_targets() {
        let listing = fleet.admin_faults(&fleet.urls[c.name]).await;
        assert_eq!(listing.status, 200, "{}: {}", c.name, listing.body);
        armed += listing.body["faults"].as_object().map_or(0, |f| f.len());
    }
    assert!(armed > 0, "the scenario armed its faults with the token");
    fleet.stop().await;
}
