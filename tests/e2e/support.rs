//! Starting fleets, creating throwaway databases, and reading traces back from the desk.

#![allow(dead_code)]

use std::collections::HashMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use fleet::topology;
use fleet::traces::model;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};

pub const CARD_OK: &str = "4242424242424242";
pub const CARD_DECLINED: &str = "4000000000009995";
pub const CARD_PROVIDER_FAULT: &str = "4000000000000119";

/// `fleet up` with every port 0, as a child process; stopped with SIGTERM by [`Fleet::stop`].
pub struct Fleet {
    child: Child,
    pub urls: HashMap<String, String>,
    output: tokio::sync::watch::Receiver<Vec<String>>,
    /// The fleet's data dir (state file, admin token, SQLite file); removed when done.
    pub data_dir: std::path::PathBuf,
}

#[derive(Default)]
pub struct FleetOptions {
    pub database_url: Option<String>,
    pub env: Vec<(String, String)>,
}

impl Fleet {
    pub async fn start(options: FleetOptions) -> Fleet {
        Fleet::start_with(options, false).await
    }

    /// Like [`Fleet::start`]; with `own_process_group`, `fleet up` leads a process group of its
    /// own, as a shell starts a job, so the test can signal the group as a terminal's Ctrl-C
    /// does. Not by default: in the test's group, a runner that kills the group takes the fleet
    /// with it.
    pub async fn start_with(options: FleetOptions, own_process_group: bool) -> Fleet {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_fleet"));
        cmd.arg("up");
        cmd.arg("--any-ports");
        let data_dir =
            std::env::temp_dir().join(format!("fleet-e2e-{}", uuid::Uuid::new_v4().simple()));
        cmd.env_remove("DATABASE_URL");
        cmd.env_remove("FLEET_ADMIN_TOKEN");
        cmd.env("FLEET_DATA_DIR", &data_dir);
        for var in [
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "OTEL_EXPORTER_OTLP_PROTOCOL",
            "OTEL_SDK_DISABLED",
            "OTEL_TRACES_SAMPLER",
            "OTEL_TRACES_SAMPLER_ARG",
        ] {
            cmd.env_remove(var);
        }
        match &options.database_url {
            Some(url) => {
                cmd.args(["--database-url", url]);
            }
            None => {
                cmd.args([
                    "--sqlite-path",
                    &data_dir.join("orders.sqlite").to_string_lossy(),
                ]);
            }
        }
        cmd.env("OTEL_BSP_SCHEDULE_DELAY", "100")
            .env("LOG_FORMAT", "text");
        for (k, v) in &options.env {
            cmd.env(k, v);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        if own_process_group {
            cmd.process_group(0);
        }
        let mut child = cmd.spawn().expect("cannot start the fleet binary");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, output) = tokio::sync::watch::channel(Vec::<String>::new());
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                tx.send_modify(|all| all.push(line));
            }
        });
        let mut fleet = Fleet {
            child,
            urls: HashMap::new(),
            output,
            data_dir,
        };
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let lines = fleet.output.borrow().clone();
            if lines.iter().any(|l| l == "fleet:up") {
                for line in &lines {
                    if let Some((name, url)) = line
                        .strip_prefix("fleet:ready ")
                        .and_then(|r| r.split_once(' '))
                    {
                        fleet.urls.insert(name.to_owned(), url.to_owned());
                    }
                }
                return fleet;
            }
            if let Ok(Some(status)) = fleet.child.try_wait() {
                panic!(
                    "fleet up exited before it was up ({status}):\n{}",
                    lines.join("\n")
                );
            }
            assert!(
                Instant::now() < deadline,
                "fleet up not ready in 90 s:\n{}",
                lines.join("\n")
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A fleet whose order-api uses the test's own PostgreSQL database.
    pub async fn on_postgres(db: &TestDb) -> Fleet {
        Fleet::start(FleetOptions {
            database_url: Some(db.url.clone()),
            ..Default::default()
        })
        .await
    }

    pub fn gateway(&self) -> &str {
        &self.urls[topology::GATEWAY]
    }

    pub fn desk(&self) -> &str {
        self.urls
            .get(topology::DESK)
            .map(String::as_str)
            .expect("this fleet runs no desk")
    }

    /// The fleet's process id (also its process group id with `own_process_group`).
    pub fn pid(&self) -> u32 {
        self.child.id().expect("fleet still running")
    }

    /// The admin token: the one `fleet up` generated into its data dir, unless the test set
    /// `FLEET_ADMIN_TOKEN` itself.
    pub fn admin_token(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("admin-token"))
            .expect("fleet up wrote its admin token")
            .trim()
            .to_owned()
    }

    /// `GET {url}/admin/faults` with the fleet's admin token.
    pub async fn admin_faults(&self, url: &str) -> Reply {
        let resp = reqwest::Client::new()
            .get(format!("{url}/admin/faults"))
            .bearer_auth(self.admin_token())
            .send()
            .await
            .expect("request");
        into_reply(resp).await
    }

    pub fn output(&self) -> Vec<String> {
        self.output.borrow().clone()
    }

    /// Process ids of the components `fleet up` started.
    pub fn component_pids(&self) -> Vec<u32> {
        let Some(pid) = self.child.id() else {
            return Vec::new();
        };
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect()
    }

    /// Sends `signal` to `fleet up`'s whole process group, as a terminal does on Ctrl-C
    /// (needs `own_process_group`).
    pub fn signal_group(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::killpg(nix::unistd::Pid::from_raw(self.pid() as i32), signal)
            .expect("signal the fleet's process group");
    }

    /// Sends `signal` to `fleet up` alone.
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid() as i32), signal)
            .expect("signal the fleet");
    }

    /// Waits (at most `limit`) for `fleet up` to exit.
    pub async fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        tokio::time::timeout(limit, self.child.wait())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "fleet up still running after {limit:?}:\n{}",
                    self.output().join("\n")
                )
            })
            .expect("wait for fleet")
    }

    /// Waits (bounded) until `fleet up` printed a line `line`.
    pub async fn wait_for_line(&self, line: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        while !self.output().iter().any(|l| l == line) {
            assert!(
                Instant::now() < deadline,
                "no line {line:?} within {limit:?}:\n{}",
                self.output().join("\n")
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// What the supervisor's state file says (pids, restarts).
    pub fn state(&self) -> fleet::supervisor::FleetState {
        fleet::supervisor::FleetState::read(&self.data_dir).expect("fleet up wrote its state file")
    }

    /// SIGKILL `fleet up` itself: it gets no chance to stop its components.
    pub async fn kill_hard(&mut self) {
        let _ = self.child.kill().await;
    }

    /// SIGTERM, then insist that the fleet stops cleanly and promptly.
    pub async fn stop(mut self) {
        let pid = self.child.id().expect("fleet still running") as i32;
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
        let exit = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("fleet did not stop within 30 s of SIGTERM")
            .expect("wait for fleet");
        assert!(
            exit.success(),
            "fleet exited with {exit}:\n{}",
            self.output().join("\n")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            self.output().iter().any(|l| l == "fleet:stopped"),
            "no fleet:stopped line"
        );
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        // A failed test: show what the fleet said (its stdout is captured, not shown).
        if std::thread::panicking() {
            eprintln!("fleet up's output:\n{}", self.output().join("\n"));
        }
        // A test that failed never called stop(): ask the fleet to stop, as a person would,
        // rather than SIGKILL it (its services also exit when their parent is gone).
        if let Ok(None) = self.child.try_wait()
            && let Some(pid) = self.child.id()
        {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
            for _ in 0..100 {
                if !matches!(self.child.try_wait(), Ok(None)) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// True while process `pid` exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit(')')
            .next()
            .and_then(|rest| rest.split_whitespace().next())
            .is_none_or(|state| state != "Z")
    })
}

/// A PostgreSQL database of its own for one test, dropped afterwards. Fails (never skips) when
/// PostgreSQL is not there: these tests exist to run against the real thing.
pub struct TestDb {
    pub url: String,
    name: String,
    admin_url: String,
}

impl TestDb {
    pub async fn create() -> TestDb {
        let admin_url = std::env::var("FLEET_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
        let name = format!("fleet_e2e_{}", uuid::Uuid::new_v4().simple());
        let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&admin_url)
            .await
            .unwrap_or_else(|e| {
                panic!("PostgreSQL is required at {admin_url} (set FLEET_TEST_POSTGRES_URL): {e}")
            });
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .expect("create test database");
        let base = admin_url
            .rsplit_once('/')
            .map(|(b, _)| b.to_owned())
            .unwrap_or(admin_url.clone());
        TestDb {
            url: format!("{base}/{name}"),
            name,
            admin_url,
        }
    }

    pub async fn count(&self, sql: &'static str) -> i64 {
        let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&self.url)
            .await
            .expect("connect test db");
        sqlx::query_scalar::<_, i64>(sql)
            .fetch_one(&mut conn)
            .await
            .expect(sql)
    }

    pub async fn status_of(&self, order_id: &str) -> Option<String> {
        let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&self.url)
            .await
            .expect("connect test db");
        sqlx::query_scalar::<_, String>("SELECT status FROM orders WHERE id = $1")
            .bind(order_id)
            .fetch_optional(&mut conn)
            .await
            .expect("select order status")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        // Drop runs inside the test's runtime; a thread with its own runtime can block.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                if let Ok(mut conn) =
                    <sqlx::PgConnection as sqlx::Connection>::connect(&admin_url).await
                {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )))
                    .execute(&mut conn)
                    .await;
                }
            });
        })
        .join();
    }
}

pub fn order_body(email: &str, items: &[(&str, i64)], card: &str) -> Value {
    serde_json::json!({
        "customer_email": email,
        "items": items.iter().map(|(sku, q)| serde_json::json!({"sku": sku, "quantity": q})).collect::<Vec<_>>(),
        "card_number": card,
    })
}

/// What a test needs of one answer.
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Reply {
    pub fn trace_id(&self) -> String {
        self.headers
            .get("x-trace-id")
            .and_then(|v| v.to_str().ok())
            .expect("x-trace-id header")
            .to_owned()
    }
}

pub async fn post_json(url: &str, body: &Value, headers: &[(&str, &str)]) -> Reply {
    let mut req = reqwest::Client::new().post(url).json(body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    into_reply(req.send().await.expect("request")).await
}

pub async fn post_raw(url: &str, content_type: &str, body: Vec<u8>) -> Reply {
    let resp = reqwest::Client::new()
        .post(url)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .expect("request");
    into_reply(resp).await
}

pub async fn get(url: &str) -> Reply {
    into_reply(reqwest::get(url).await.expect("request")).await
}

async fn into_reply(resp: reqwest::Response) -> Reply {
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = resp.bytes().await.expect("body");
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    Reply {
        status,
        headers,
        body,
    }
}

/// One span as the tests read it: `fleet::traces::model`'s span (the one parser of Tempo's
/// JSON), with kind and status spelled as in OTLP (`SPAN_KIND_CLIENT`, `STATUS_CODE_ERROR`).
#[derive(Debug, Clone)]
pub struct Span {
    pub service: String,
    pub name: String,
    pub kind: String,
    pub trace_id: String,
    pub span_id: String,
    pub parent_span_id: Option<String>,
    pub status: String,
    pub events: Vec<String>,
    pub start: u64,
    pub end: u64,
    /// The span as `fleet trace` sees it.
    pub model: model::Span,
}

impl Span {
    pub fn attr(&self, key: &str) -> Option<String> {
        self.model.attr(key).map(str::to_owned)
    }
}

impl From<model::Span> for Span {
    fn from(s: model::Span) -> Span {
        let kind = match s.kind {
            model::Kind::Unspecified => "SPAN_KIND_UNSPECIFIED",
            model::Kind::Internal => "SPAN_KIND_INTERNAL",
            model::Kind::Server => "SPAN_KIND_SERVER",
            model::Kind::Client => "SPAN_KIND_CLIENT",
            model::Kind::Producer => "SPAN_KIND_PRODUCER",
            model::Kind::Consumer => "SPAN_KIND_CONSUMER",
        };
        Span {
            service: s.service.clone(),
            name: s.name.clone(),
            kind: kind.to_owned(),
            trace_id: s.trace_id.clone(),
            span_id: s.span_id.clone(),
            parent_span_id: s.parent_id.clone(),
            status: if s.error {
                "STATUS_CODE_ERROR"
            } else {
                "STATUS_CODE_UNSET"
            }
            .to_owned(),
            events: s.events.iter().map(|e| e.name.clone()).collect(),
            start: s.start,
            end: s.end,
            model: s,
        }
    }
}

pub fn parse_trace(json: &Value) -> Vec<Span> {
    model::parse_trace(json)
        .expect("a trace in Tempo's JSON")
        .into_iter()
        .map(Span::from)
        .collect()
}

/// Polls the desk until the trace holds at least `min_spans` and has stopped growing.
pub async fn wait_for_trace(desk: &str, trace_id: &str, min_spans: usize) -> Vec<Span> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = 0;
    loop {
        let reply = get(&format!("{desk}/api/traces/{trace_id}")).await;
        if reply.status == 200 {
            let spans = parse_trace(&reply.body);
            if spans.len() >= min_spans && spans.len() == last {
                return spans;
            }
            last = spans.len();
        }
        assert!(
            Instant::now() < deadline,
            "trace {trace_id} did not reach {min_spans} spans in 30 s (last status {}, {last} spans)",
            reply.status
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Trace ids the desk holds (search results trim leading zeros, as Tempo does: pad back).
pub async fn desk_trace_ids(desk: &str) -> Vec<String> {
    let reply = get(&format!("{desk}/api/search?limit=1000")).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    reply.body["traces"]
        .as_array()
        .expect("traces")
        .iter()
        .map(|t| format!("{:0>32}", t["traceID"].as_str().expect("traceID")))
        .collect()
}

pub fn find<'a>(spans: &'a [Span], service: &str, name: &str) -> &'a Span {
    spans
        .iter()
        .find(|s| s.service == service && s.name == name)
        .unwrap_or_else(|| panic!("no span {service}: {name} in\n{}", describe(spans)))
}

pub fn describe(spans: &[Span]) -> String {
    spans
        .iter()
        .map(|s| {
            format!(
                "{} {} {} {} parent={:?}",
                s.service, s.name, s.kind, s.span_id, s.parent_span_id
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

pub fn child_of(spans: &[Span], parent: &Span, service: &str, name: &str) -> Span {
    spans
        .iter()
        .find(|s| {
            s.parent_span_id.as_deref() == Some(parent.span_id.as_str())
                && s.service == service
                && s.name == name
        })
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "no {service}: {name} under {}: {}\n{}",
                parent.service,
                parent.name,
                describe(spans)
            )
        })
}

impl Span {
    pub fn duration_ms(&self) -> f64 {
        (self.end.saturating_sub(self.start)) as f64 / 1e6
    }
}

impl Fleet {
    /// Runs `fleet ARGS…` against this fleet (scenario and load commands get its URLs).
    pub async fn command(&self, args: &[&str]) -> std::process::Output {
        let out = self.command_unchecked(args).await;
        assert!(
            out.status.success(),
            "fleet {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Like [`Fleet::command`], whatever the exit status.
    pub async fn command_unchecked(&self, args: &[&str]) -> std::process::Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_fleet"));
        cmd.args(args);
        // The admin token and the state file are found in the fleet's data dir.
        cmd.env("FLEET_DATA_DIR", &self.data_dir)
            .env_remove("FLEET_ADMIN_TOKEN");
        if args.first() == Some(&"quiz") {
            cmd.args(["--tempo", self.desk()]);
        }
        if matches!(args.first(), Some(&"scenario") | Some(&"quiz")) {
            for (c, admin) in topology::admin_targets() {
                cmd.arg(format!("--{}", admin.flag)).arg(&self.urls[c.name]);
            }
        }
        cmd.stdin(Stdio::null()).output().await.expect("run fleet")
    }

    /// `requests` checkouts through `fleet load` (closed model, two workers, no declines).
    pub async fn load_checkouts(&self, requests: usize) {
        let n = requests.to_string();
        self.command(&[
            "load",
            "--url",
            self.gateway(),
            "--concurrency",
            "2",
            "--requests",
            &n,
            "--mix",
            "checkout=100",
            "--decline-rate",
            "0",
            "--quiet",
        ])
        .await;
    }

    /// Every trace in the desk, each as its spans (waits for `expected` traces to be there).
    pub async fn all_traces(&self, expected: usize) -> Vec<Vec<Span>> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let ids = loop {
            let ids = desk_trace_ids(self.desk()).await;
            if ids.len() >= expected {
                break ids;
            }
            assert!(
                Instant::now() < deadline,
                "only {} of {expected} traces arrived",
                ids.len()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        // Let late spans (background email, orphaned work) land before reading.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let mut traces = Vec::new();
        for id in ids {
            let reply = get(&format!("{}/api/traces/{id}", self.desk())).await;
            traces.push(parse_trace(&reply.body));
        }
        traces
    }
}

/// The span whose own time (its duration less its children's) is largest: what a learner
/// finds first when hunting the bottleneck (the same self time `fleet trace` marks).
pub fn largest_self_time(spans: &[Span]) -> &Span {
    let models: Vec<model::Span> = spans.iter().map(|s| s.model.clone()).collect();
    let self_times = fleet::traces::tree::self_times(&models);
    let slowest = (0..spans.len())
        .max_by_key(|&i| self_times[i])
        .expect("spans");
    &spans[slowest]
}

/// The trace whose root is `root_name` (the checkout, not `GET /products`).
pub fn roots_named<'a>(traces: &'a [Vec<Span>], root_name: &str) -> Vec<&'a Vec<Span>> {
    traces
        .iter()
        .filter(|t| {
            t.iter()
                .any(|s| s.parent_span_id.is_none() && s.name == root_name)
        })
        .collect()
}
