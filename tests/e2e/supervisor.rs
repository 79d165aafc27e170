//! `fleet up` as a supervisor: a crash restarts one component on its address while the others
//! serve.

use std::time::{Duration, Instant};

use fleet::supervisor::CRASH_LIMIT;
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

        // While it is down (the first restart waits 0.5 s), everything else still answers.
        tokio::time::sleep(Duration::from_millis(100)).await;
        for other in COMPONENTS.iter().filter(|o| o.name != name) {
            assert_eq!(
                status_of(&client, &ready_url(&fleet, other.name)).await,
                Some(200),
                "{} kept serving while {name} was down",
                other.name
            );
        }
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
