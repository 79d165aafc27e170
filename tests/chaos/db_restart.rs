//! Chaos: the database restarts under load. A throwaway PostgreSQL cluster of the test's own
//! (the machine's `initdb`/`pg_ctl` on a free port; the shared server is never touched), the
//! gateway, order-api, payment-api, notification and the provider in-process, checkouts at a
//! fixed rate, and a restart mid-run. Asserted: every 201 order exists and is `paid`; no order
//! is `pending` once the reconciler's bound has passed; no order was charged twice (the
//! provider counts charges per key); failures during the restart are 503 with `Retry-After`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use fleet_server_kit::Running;

/// A PostgreSQL cluster in a temp dir, run as the `postgres` user when the test runs as root
/// (PostgreSQL refuses to run as root).
struct Cluster {
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
}

fn pg_bin() -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL binaries under /usr/lib/postgresql")
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").exists())
        .collect();
    dirs.sort();
    dirs.pop()
        .expect("an initdb under /usr/lib/postgresql/*/bin")
}

fn as_postgres(bin: &Path, tool: &str, args: &[&str]) -> Command {
    let root = std::env::var("USER").is_ok_and(|u| u == "root")
        || Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.starts_with(b"0"));
    let exe = bin.join(tool);
    if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(exe).args(args);
        c
    } else {
        let mut c = Command::new(exe);
        c.args(args);
        c
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Cluster {
    fn create() -> Cluster {
        let bin = pg_bin();
        let dir =
            std::env::temp_dir().join(format!("fleet-chaos-pg-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        // The postgres user must own the data directory.
        let _ = Command::new("chown")
            .args(["postgres:postgres"])
            .arg(&dir)
            .status();
        let data = dir.join("data");
        let out = as_postgres(
            &bin,
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
            ],
        )
        .output()
        .unwrap();
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let cluster = Cluster {
            dir,
            bin,
            port: free_port(),
        };
        cluster.start();
        cluster
    }

    fn data(&self) -> String {
        self.dir.join("data").to_string_lossy().into_owned()
    }

    fn start(&self) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("log").to_string_lossy().into_owned();
        let out = as_postgres(
            &self.bin,
            "pg_ctl",
            &["-D", &self.data(), "-o", &opts, "-l", &log, "-w", "start"],
        )
        .output()
        .unwrap();
        assert!(
            out.status.success(),
            "pg_ctl start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// An immediate stop: what a crash or a failover looks like to the clients.
    fn stop(&self) {
        let _ = as_postgres(
            &self.bin,
            "pg_ctl",
            &["-D", &self.data(), "-m", "immediate", "-w", "stop"],
        )
        .output();
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

struct Fleet {
    services: Vec<Running>,
    gateway: String,
    provider: String,
}

async fn start_fleet(database_url: String) -> Fleet {
    let none = |s, points| fleet_faults::Faults::new(s, points, false, false, None);
    let provider = payment_provider::start(
        payment_provider::Config {
            listen_addr: "127.0.0.1:0".into(),
            latency: Duration::from_millis(20),
            max_in_flight: fleet_server_kit::DEFAULT_MAX_IN_FLIGHT,
        },
        none("payment-provider", payment_provider::server::FAULT_POINTS),
    )
    .await
    .unwrap();
    let payments = payment_api::start(
        payment_api::Config {
            listen_addr: "127.0.0.1:0".into(),
            provider_url: provider.url(),
            provider_timeout: Duration::from_secs(5),
            max_in_flight: fleet_server_kit::DEFAULT_MAX_IN_FLIGHT,
        },
        none("payment-api", payment_api::server::FAULT_POINTS),
    )
    .await
    .unwrap();
    let notification = notification::start(
        notification::Config {
            listen_addr: "127.0.0.1:0".into(),
            outbox_capacity: 1000,
            outbox_max_bytes: 4 << 20,
            max_in_flight: fleet_server_kit::DEFAULT_MAX_IN_FLIGHT,
        },
        none("notification", notification::server::FAULT_POINTS),
    )
    .await
    .unwrap();
    let orders = order_api::start(
        order_api::Config {
            listen_addr: "127.0.0.1:0".into(),
            database_url: Some(database_url),
            database_max_connections: 5,
            sqlite_path: "unused".into(),
            payment_api_addr: payments.url(),
            payment_timeout: Duration::from_secs(5),
            pending_bound: PENDING_BOUND,
            reconcile_interval: Duration::from_millis(500),
            max_in_flight: fleet_server_kit::DEFAULT_MAX_IN_FLIGHT,
        },
        none("order-api", order_api::server::FAULT_POINTS),
    )
    .await
    .unwrap();
    let gateway = api_gateway::start(
        api_gateway::Config {
            listen_addr: "127.0.0.1:0".into(),
            order_api_url: orders.url(),
            order_api_timeout: Duration::from_secs(10),
            notification_addr: notification.url(),
            notification_timeout: Duration::from_secs(3),
            max_in_flight: fleet_server_kit::DEFAULT_MAX_IN_FLIGHT,
        },
        none("api-gateway", api_gateway::server::FAULT_POINTS),
    )
    .await
    .unwrap();
    Fleet {
        gateway: gateway.url(),
        provider: provider.url(),
        services: vec![gateway, orders, notification, payments, provider],
    }
}

const PENDING_BOUND: Duration = Duration::from_secs(3);
const RATE_PER_SECOND: u64 = 20;
const RUN: Duration = Duration::from_secs(12);
// Longer than the pool's 5 s acquire timeout, so some requests must fail.
const DOWN_FOR: Duration = Duration::from_secs(7);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_database_restart_under_load_loses_no_order_and_charges_no_card_twice() {
    let cluster = std::sync::Arc::new(Cluster::create());
    let fleet = start_fleet(cluster.url()).await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap();
    let body = serde_json::json!({
        "customer_email": "chaos@example.com",
        "items": [{"sku": "COFFEE-250G", "quantity": 1}],
        "card_number": "4242424242424242",
    });

    // Checkouts at a fixed rate, each in its own task; the database goes away 2 s in.
    let started = Instant::now();
    let mut tasks = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(1000 / RATE_PER_SECOND));
    let mut restarted = false;
    while started.elapsed() < RUN {
        tick.tick().await;
        if !restarted && started.elapsed() > Duration::from_secs(2) {
            restarted = true;
            cluster.stop();
            let cluster = std::sync::Arc::clone(&cluster);
            tokio::spawn(async move {
                tokio::time::sleep(DOWN_FOR).await;
                let _ = tokio::task::spawn_blocking(move || cluster.start()).await;
            });
        }
        let (client, gateway, body) = (client.clone(), fleet.gateway.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            let resp = client
                .post(format!("{gateway}/checkout"))
                .json(&body)
                .send()
                .await
                .expect("the gateway answers");
            let status = resp.status().as_u16();
            let retry_after = resp.headers().contains_key("retry-after");
            let json: serde_json::Value = resp.json().await.unwrap_or_default();
            (status, retry_after, json)
        }));
    }
    let mut created = Vec::new();
    let mut unavailable = 0;
    let mut other = Vec::new();
    for task in tasks {
        let (status, retry_after, json) = task.await.unwrap();
        match status {
            201 => created.push(json["order_id"].as_str().unwrap().to_owned()),
            503 => {
                assert!(retry_after, "a 503 without Retry-After: {json}");
                unavailable += 1;
            }
            _ => other.push((status, json)),
        }
    }
    assert!(other.is_empty(), "answers other than 201/503: {other:?}");
    assert!(
        !created.is_empty() && unavailable > 0,
        "{} created, {unavailable} unavailable: the restart did not bite",
        created.len()
    );

    // Past the reconciler's bound, nothing is pending, every 201 is paid.
    tokio::time::sleep(PENDING_BOUND + Duration::from_secs(2)).await;
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&cluster.url())
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let pending: i64 =
            sqlx::query_scalar("SELECT count(*) FROM orders WHERE status = 'pending'")
                .fetch_one(&mut conn)
                .await
                .unwrap();
        if pending == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{pending} orders still pending");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for id in &created {
        let status: String = sqlx::query_scalar("SELECT status FROM orders WHERE id = $1")
            .bind(id)
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(status, "paid", "order {id} answered 201");
    }
    // One charge per order: every charge's description names its order, none twice, and the
    // provider created no more charges than there are paid orders.
    let charges: serde_json::Value = reqwest::get(format!("{}/v1/charges", fleet.provider))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let paid: i64 = sqlx::query_scalar("SELECT count(*) FROM orders WHERE status = 'paid'")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(charges["charges_created"].as_i64(), Some(paid), "{charges}");
    let mut described: Vec<&str> = charges["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["description"].as_str())
        .collect();
    let total = described.len();
    described.sort();
    described.dedup();
    assert_eq!(described.len(), total, "an order was charged twice");
    eprintln!(
        "db restart: {} created, {unavailable} answered 503, {paid} paid, {} charges",
        created.len(),
        charges["charges_created"]
    );
    for running in fleet.services {
        running.shutdown().await.unwrap();
    }
}
