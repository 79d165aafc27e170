//! Shared helpers for the trace desk's integration tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Av;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use prost::Message as _;
use serde_json::Value;
use trace_desk::{DeskConfig, RunningDesk};

pub const T0: u64 = 1_700_000_000_000_000_000;
pub const MS: u64 = 1_000_000;

pub async fn desk(max_spans: usize) -> RunningDesk {
    trace_desk::start(DeskConfig::ephemeral(max_spans))
        .await
        .expect("desk starts")
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

pub fn kv(key: &str, value: Av) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

pub fn s(v: &str) -> Av {
    Av::StringValue(v.to_string())
}

pub fn trace_id(n: u64) -> Vec<u8> {
    let mut id = vec![0xa0; 8];
    id.extend_from_slice(&n.to_be_bytes());
    id
}

pub fn span_id(n: u64) -> Vec<u8> {
    (0x1000_0000_0000_0000u64 + n).to_be_bytes().to_vec()
}

/// A span description for hand-made exports.
#[derive(Clone)]
pub struct Sp {
    pub trace: u64,
    pub id: u64,
    pub parent: Option<u64>,
    pub name: &'static str,
    pub kind: i32,
    pub start_ms: u64,
    pub dur_ms: u64,
    pub attrs: Vec<KeyValue>,
    pub error: bool,
}

impl Sp {
    pub fn new(trace: u64, id: u64, name: &'static str) -> Self {
        Self {
            trace,
            id,
            parent: None,
            name,
            kind: 2,
            start_ms: 0,
            dur_ms: 10,
            attrs: vec![],
            error: false,
        }
    }
    pub fn parent(mut self, p: u64) -> Self {
        self.parent = Some(p);
        self
    }
    pub fn at(mut self, start_ms: u64, dur_ms: u64) -> Self {
        self.start_ms = start_ms;
        self.dur_ms = dur_ms;
        self
    }
    pub fn attr(mut self, k: &str, v: Av) -> Self {
        self.attrs.push(kv(k, v));
        self
    }
    pub fn error(mut self) -> Self {
        self.error = true;
        self
    }
    pub fn kind(mut self, k: i32) -> Self {
        self.kind = k;
        self
    }
    pub fn to_span(&self) -> Span {
        Span {
            trace_id: trace_id(self.trace),
            span_id: span_id(self.id),
            parent_span_id: self.parent.map(span_id).unwrap_or_default(),
            name: self.name.to_string(),
            kind: self.kind,
            start_time_unix_nano: T0 + self.start_ms * MS,
            end_time_unix_nano: T0 + (self.start_ms + self.dur_ms) * MS,
            attributes: self.attrs.clone(),
            status: Some(Status {
                message: if self.error {
                    "boom".into()
                } else {
                    String::new()
                },
                code: if self.error { 2 } else { 0 },
            }),
            ..Default::default()
        }
    }
}

pub fn request(service: &str, spans: &[Sp]) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    kv("service.name", s(service)),
                    kv("deployment.environment.name", s("test")),
                ],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "hand-made".into(),
                    version: "1.0".into(),
                    ..Default::default()
                }),
                spans: spans.iter().map(Sp::to_span).collect(),
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

pub async fn post_protobuf(desk: &RunningDesk, req: &ExportTraceServiceRequest) {
    let resp = client()
        .post(format!("http://{}/v1/traces", desk.otlp_http_addr()))
        .header("content-type", "application/x-protobuf")
        .body(req.encode_to_vec())
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status(), 200, "{:?}", resp.text().await);
}

pub async fn get(desk: &RunningDesk, path_and_query: &str) -> reqwest::Response {
    client()
        .get(format!("http://{}{}", desk.api_addr(), path_and_query))
        .send()
        .await
        .expect("get")
}

pub async fn get_json(desk: &RunningDesk, path_and_query: &str) -> Value {
    let resp = get(desk, path_and_query).await;
    let status = resp.status();
    let body = resp.text().await.expect("body");
    assert_eq!(status, 200, "GET {path_and_query}: {body}");
    serde_json::from_str(&body).expect("json body")
}

pub fn hex_trace(n: u64) -> String {
    hex::encode(trace_id(n))
}

pub fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Polls `/api/traces/{id}` until it answers 200 with `want_spans` spans.
pub async fn wait_for_trace(desk: &RunningDesk, hex_id: &str, want_spans: usize) -> Value {
    for _ in 0..100 {
        let resp = get(desk, &format!("/api/traces/{hex_id}")).await;
        if resp.status() == 200 {
            let v: Value = resp.json().await.expect("json");
            if all_spans(&v["batches"]).len() >= want_spans {
                return v;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("trace {hex_id} did not arrive with {want_spans} spans");
}

/// All span objects of a `batches` / `resourceSpans` array.
pub fn all_spans(batches: &Value) -> Vec<Value> {
    let mut out = vec![];
    for rs in batches.as_array().cloned().unwrap_or_default() {
        for ss in rs["scopeSpans"].as_array().cloned().unwrap_or_default() {
            out.extend(ss["spans"].as_array().cloned().unwrap_or_default());
        }
    }
    out
}

pub fn resource_attr(rs: &Value, key: &str) -> Option<Value> {
    rs["resource"]["attributes"]
        .as_array()?
        .iter()
        .find(|kv| kv["key"] == key)
        .map(|kv| kv["value"].clone())
}

/// Percent-encodes a query parameter value.
pub fn url_enc(q: &str) -> String {
    let mut out = String::new();
    for b in q.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The value of an unlabelled (or exactly labelled) sample in Prometheus text.
pub fn metric_value(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

/// `traces` traces of a five-span chain each ("work" spans of 5 ms, starting 0..5 ms after T0
/// plus the trace's number in ms), stored directly (the intake is not under test).
pub fn fill_chains(desk: &trace_desk::RunningDesk, traces: u64) {
    let store = desk.store();
    for t in 0..traces {
        let spans: Vec<Sp> = (0..5u64)
            .map(|i| {
                let sp = Sp::new(t + 1, t * 10 + i + 1, "work").at(t + i, 5);
                if i == 0 { sp } else { sp.parent(t * 10 + i) }
            })
            .collect();
        store.ingest(request("budget", &spans).resource_spans);
    }
}

/// A `trace-desk` binary of its own, for tests that need the process (RSS, SIGKILL); killed when
/// dropped.
pub struct DeskProcess {
    pub child: std::process::Child,
    pub api: std::net::SocketAddr,
    pub otlp_http: std::net::SocketAddr,
    pub otlp_grpc: std::net::SocketAddr,
}

impl Drop for DeskProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `cmd` (the `trace-desk` binary, or a wrapper that execs it) set to listen on free ports and
/// announce them.
pub fn on_free_ports(mut cmd: std::process::Command) -> std::process::Command {
    cmd.env("DESK_API_ADDR", "127.0.0.1:0")
        .env("DESK_OTLP_GRPC_ADDR", "127.0.0.1:0")
        .env("DESK_OTLP_HTTP_ADDR", "127.0.0.1:0")
        .env("FLEET_ANNOUNCE", "1")
        .env("RUST_LOG", "warn");
    cmd
}

/// Starts `cmd` (see [`on_free_ports`]) and reads the three addresses it announces.
pub fn spawn_desk(mut cmd: std::process::Command) -> DeskProcess {
    use std::io::BufRead as _;
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut addrs = std::collections::BTreeMap::new();
    for line in stdout.lines().take(3) {
        let line = line.unwrap();
        let mut parts = line.split_whitespace().skip(1);
        let name = parts.next().unwrap().to_string();
        let addr: std::net::SocketAddr = parts.next().unwrap().parse().unwrap();
        addrs.insert(name, addr);
    }
    DeskProcess {
        child,
        api: addrs["api"],
        otlp_http: addrs["otlp-http"],
        otlp_grpc: addrs["otlp-grpc"],
    }
}

/// The desk process's `/metrics` text.
pub async fn process_metrics(desk: &DeskProcess) -> String {
    client()
        .get(format!("http://{}/metrics", desk.api))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}
