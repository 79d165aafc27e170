//! The web UI (crates/desk-ui) in headless Chromium, driven over WebDriver
//! (chromedriver + fantoccini), against a real desk holding the committed fleet
//! fixture. Needs Debian's `chromium` and `chromium-driver` (or `CHROMIUM_BIN` /
//! `CHROMEDRIVER_BIN`): without them these tests fail, they never skip.
//! Screenshots go to `target/ui-screenshots/`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use tokio::process::{Child, Command};
use trace_desk::{DeskConfig, RunningDesk};

const FIXTURE: &str = include_str!("fixtures/fleet-traces.otlp.json");
const WAIT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------
// Browser and desk plumbing

struct Browser {
    client: Client,
    driver: Child,
    profile: PathBuf,
}

fn binary(var: &str, default: &str, package: &str) -> PathBuf {
    let path = std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(default));
    assert!(
        path.exists(),
        "{} not found: the UI browser tests need Debian's {package} \
         (apt-get install chromium chromium-driver) or {var} pointing at it",
        path.display()
    );
    path
}

impl Browser {
    async fn start(name: &str) -> Browser {
        let chromium = binary("CHROMIUM_BIN", "/usr/bin/chromium", "chromium");
        let chromedriver = binary(
            "CHROMEDRIVER_BIN",
            "/usr/bin/chromedriver",
            "chromium-driver",
        );
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let profile = std::env::temp_dir().join(format!(
            "desk-ui-{name}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        let _ = std::fs::remove_dir_all(&profile);
        std::fs::create_dir_all(&profile).unwrap();
        let driver = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", chromedriver.display()));
        let began = Instant::now();
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                began.elapsed() < WAIT,
                "chromedriver did not listen on {port}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", "--window-size=1400,900",
                    "--force-device-scale-factor=1",
                    format!("--user-data-dir={}", profile.display()),
                ],
            },
        });
        let caps = caps.as_object().unwrap().clone();
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .unwrap_or_else(|e| panic!("starting headless {}: {e}", chromium.display()));
        Browser {
            client,
            driver,
            profile,
        }
    }

    async fn close(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill().await;
    }

    async fn js(&self, script: &str) -> Value {
        self.client
            .execute(script, vec![])
            .await
            .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// Polls a JS expression until it is truthy.
    async fn wait_js(&self, expr: &str, what: &str) -> Value {
        let began = Instant::now();
        loop {
            let v = self.js(&format!("return ({expr});")).await;
            if !(v.is_null() || v == json!(false) || v == json!(0) || v == json!("")) {
                return v;
            }
            assert!(
                began.elapsed() < WAIT,
                "timed out waiting for {what}: {expr}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn click(&self, css: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no element {css}: {e}"))
            .click()
            .await
            .unwrap_or_else(|e| panic!("clicking {css}: {e}"));
    }

    async fn screenshot(&self, name: &str) {
        let png = self.client.screenshot().await.unwrap();
        assert!(png.starts_with(b"\x89PNG"), "screenshot is a PNG");
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), png).unwrap();
    }
}

/// A failed test unwinds past `close`: end the browser processes of this
/// test's own profile (found by its unique `--user-data-dir`), by pid.
impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.start_kill();
        let marker = format!("--user-data-dir={}", self.profile.display());
        let pids: Vec<String> = std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let pid = e.file_name().to_str()?.parse::<u32>().ok()?;
                let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
                String::from_utf8_lossy(&cmdline)
                    .split('\0')
                    .any(|arg| arg == marker)
                    .then(|| pid.to_string())
            })
            .collect();
        if !pids.is_empty() {
            let _ = std::process::Command::new("kill")
                .arg("-KILL")
                .args(&pids)
                .status();
        }
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    target.join("ui-screenshots")
}

async fn desk_with(body: &str) -> RunningDesk {
    let desk = trace_desk::start(DeskConfig::ephemeral(100_000))
        .await
        .expect("desk starts");
    post_otlp(&desk, body).await;
    desk
}

async fn post_otlp(desk: &RunningDesk, body: &str) {
    let r = reqwest::Client::new()
        .post(format!("http://{}/v1/traces", desk.otlp_http_addr()))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
}

fn base(desk: &RunningDesk) -> String {
    format!("http://{}", desk.api_addr())
}

// ---------------------------------------------------------------------------
// The expected picture, computed from the OTLP/JSON independently of the UI

#[derive(Debug, Clone)]
struct Sp {
    trace: String,
    id: String,
    parent: String,
    name: String,
    service: String,
    start: u64,
    end: u64,
    error: bool,
    attrs: Vec<(String, String)>,
    status_message: String,
    events: Vec<String>,
}

fn value_text(v: &Value) -> String {
    if let Some(s) = v.get("stringValue").and_then(Value::as_str) {
        return s.to_string();
    }
    if let Some(i) = v.get("intValue") {
        return i
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| i.to_string());
    }
    if let Some(b) = v.get("boolValue") {
        return b.to_string();
    }
    v.to_string()
}

fn parse_spans(body: &str) -> Vec<Sp> {
    let v: Value = serde_json::from_str(body).unwrap();
    let mut out = Vec::new();
    for rs in v["resourceSpans"].as_array().unwrap() {
        let service = rs["resource"]["attributes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|kv| kv["key"] == "service.name")
            .map(|kv| value_text(&kv["value"]))
            .unwrap();
        for ss in rs["scopeSpans"].as_array().unwrap() {
            for s in ss["spans"].as_array().unwrap() {
                let num = |k: &str| s[k].as_str().unwrap().parse::<u64>().unwrap();
                out.push(Sp {
                    trace: s["traceId"].as_str().unwrap().to_lowercase(),
                    id: s["spanId"].as_str().unwrap().to_lowercase(),
                    parent: s["parentSpanId"]
                        .as_str()
                        .unwrap_or_default()
                        .to_lowercase(),
                    name: s["name"].as_str().unwrap().to_string(),
                    service: service.clone(),
                    start: num("startTimeUnixNano"),
                    end: num("endTimeUnixNano"),
                    error: s["status"]["code"] == 2,
                    attrs: s["attributes"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .map(|kv| {
                                    (
                                        kv["key"].as_str().unwrap().to_string(),
                                        value_text(&kv["value"]),
                                    )
                                })
                                .collect()
                        })
                        .unwrap_or_default(),
                    status_message: s["status"]["message"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    events: s["events"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .map(|e| e["name"].as_str().unwrap().to_string())
                                .collect()
                        })
                        .unwrap_or_default(),
                });
            }
        }
    }
    out
}

/// One trace as the waterfall must show it.
struct Expected {
    spans: Vec<Sp>,
    /// Depth-first order, children by start time (then longest first).
    order: Vec<(usize, usize)>,
    start: u64,
    end: u64,
    critical: HashSet<usize>,
}

impl Expected {
    fn new(spans: Vec<Sp>) -> Expected {
        let ids: HashMap<&str, usize> = spans
            .iter()
            .enumerate()
            .map(|(i, s)| (s.id.as_str(), i))
            .collect();
        let mut children: Vec<Vec<usize>> = vec![vec![]; spans.len()];
        let mut roots = vec![];
        for (i, s) in spans.iter().enumerate() {
            match ids.get(s.parent.as_str()) {
                Some(&p) if !s.parent.is_empty() => children[p].push(i),
                _ => roots.push(i),
            }
        }
        let key = |&i: &usize| (spans[i].start, std::cmp::Reverse(spans[i].end));
        roots.sort_by_key(key);
        for c in &mut children {
            c.sort_by_key(key);
        }
        let mut order = vec![];
        let mut stack: Vec<(usize, usize)> = roots.iter().rev().map(|&r| (r, 0)).collect();
        while let Some((i, d)) = stack.pop() {
            order.push((i, d));
            stack.extend(children[i].iter().rev().map(|&c| (c, d + 1)));
        }
        // Critical path: from the root, the child ending last before a cursor
        // that walks back from the span's end (see model.js).
        let mut critical = HashSet::new();
        fn walk(
            i: usize,
            cursor: u64,
            spans: &[Sp],
            children: &[Vec<usize>],
            out: &mut HashSet<usize>,
        ) {
            out.insert(i);
            let mut cursor = cursor;
            loop {
                let next = children[i]
                    .iter()
                    .filter(|&&c| !out.contains(&c) && spans[c].start < cursor)
                    .map(|&c| (spans[c].end.min(cursor), spans[c].start, c))
                    .max_by_key(|&(end, start, _)| (end, start));
                let Some((end, start, c)) = next else { break };
                walk(c, end, spans, children, out);
                cursor = start.max(spans[i].start);
                if cursor <= spans[i].start {
                    break;
                }
            }
        }
        walk(
            roots[0],
            spans[roots[0]].end,
            &spans,
            &children,
            &mut critical,
        );
        let start = spans.iter().map(|s| s.start).min().unwrap();
        let end = spans.iter().map(|s| s.end).max().unwrap();
        Expected {
            spans,
            order,
            start,
            end,
            critical,
        }
    }

    fn root(&self) -> &Sp {
        &self.spans[self.order[0].0]
    }
}

fn traces(spans: Vec<Sp>) -> BTreeMap<String, Expected> {
    let mut by: BTreeMap<String, Vec<Sp>> = BTreeMap::new();
    for s in spans {
        by.entry(s.trace.clone()).or_default().push(s);
    }
    by.into_iter().map(|(k, v)| (k, Expected::new(v))).collect()
}

// ---------------------------------------------------------------------------
// Reading the page

const READ_ROWS: &str = r#"
return [...document.querySelectorAll('#waterfall .row')].map((r) => {
  const t = r.querySelector('.track').getBoundingClientRect();
  const b = r.querySelector('.bar').getBoundingClientRect();
  const toggle = r.querySelector('.toggle');
  return {
    id: r.dataset.spanId, parent: r.dataset.parentId, depth: Number(r.dataset.depth),
    indent: parseFloat(getComputedStyle(r.querySelector('.name-cell')).paddingLeft),
    left: t.width ? (b.left - t.left) / t.width : -1, widthPx: b.width, trackPx: t.width,
    name: r.querySelector('.op').textContent, service: r.dataset.service, label: r.querySelector('.svc').textContent,
    error: r.classList.contains('error'), errIcon: !!r.querySelector('.span-btn .err-icon'),
    critical: r.classList.contains('critical'),
    visible: !r.hidden && r.offsetParent !== null,
    expanded: toggle.getAttribute('aria-expanded'),
  };
});"#;

#[derive(Debug, serde::Deserialize)]
struct Row {
    id: String,
    parent: String,
    depth: usize,
    indent: f64,
    left: f64,
    #[serde(rename = "widthPx")]
    width_px: f64,
    #[serde(rename = "trackPx")]
    track_px: f64,
    name: String,
    service: String,
    label: String,
    error: bool,
    #[serde(rename = "errIcon")]
    err_icon: bool,
    critical: bool,
    visible: bool,
    expanded: Option<String>,
}

async fn rows(b: &Browser) -> Vec<Row> {
    serde_json::from_value(b.js(READ_ROWS).await).unwrap()
}

/// Order, nesting, indentation, bar geometry, error and critical-path marks.
fn check_waterfall(rows: &[Row], exp: &Expected) {
    assert_eq!(rows.len(), exp.spans.len(), "one row per span");
    let dur = (exp.end - exp.start) as f64;
    let step = rows
        .iter()
        .find(|r| r.depth == 1)
        .map(|r| r.indent - rows[0].indent)
        .unwrap_or(0.0);
    assert!(
        exp.spans.len() == 1 || step >= 8.0,
        "visible indentation per level: {step}px"
    );
    let depth_of: HashMap<&str, usize> = rows.iter().map(|r| (r.id.as_str(), r.depth)).collect();
    let service_of: HashMap<&str, &str> = exp
        .spans
        .iter()
        .map(|s| (s.id.as_str(), s.service.as_str()))
        .collect();
    for (row, &(i, depth)) in rows.iter().zip(&exp.order) {
        let s = &exp.spans[i];
        let what = format!("row {} {}", s.service, s.name);
        assert_eq!(row.id, s.id, "order: {what}");
        assert_eq!((&row.name, &row.service), (&s.name, &s.service), "{what}");
        // The service is named where it changes from the parent's.
        let named = if service_of.get(s.parent.as_str()) == Some(&s.service.as_str()) {
            ""
        } else {
            s.service.as_str()
        };
        assert_eq!(row.label, named, "service label: {what}");
        assert_eq!(row.depth, depth, "depth: {what}");
        if row.depth > 0 {
            assert_eq!(row.parent, s.parent, "parent: {what}");
            assert_eq!(
                depth_of[row.parent.as_str()] + 1,
                row.depth,
                "nesting: {what}"
            );
        }
        assert!(
            (row.indent - (rows[0].indent + step * depth as f64)).abs() < 0.5,
            "indent {} at depth {depth}: {what}",
            row.indent
        );
        let px = 1.5 / row.track_px;
        let left = (s.start - exp.start) as f64 / dur;
        assert!(
            (row.left - left).abs() <= px + 1e-3,
            "bar offset {} vs {left}: {what}",
            row.left
        );
        let width = ((s.end - s.start) as f64 / dur * row.track_px).max(2.0);
        assert!(
            (row.width_px - width).abs() <= 1.5,
            "bar width {}px vs {width}px: {what}",
            row.width_px
        );
        assert_eq!(row.error, s.error, "error mark: {what}");
        assert_eq!(row.err_icon, s.error, "error icon: {what}");
        assert_eq!(
            row.critical,
            exp.critical.contains(&i),
            "critical path: {what}"
        );
    }
    // Children are sorted by start time.
    for w in exp.order.windows(2) {
        let (a, b) = (&exp.spans[w[0].0], &exp.spans[w[1].0]);
        if b.parent == a.parent && !a.parent.is_empty() {
            assert!(
                a.start <= b.start,
                "siblings by start: {} then {}",
                a.name,
                b.name
            );
        }
    }
}

fn fixture() -> BTreeMap<String, Expected> {
    traces(parse_spans(FIXTURE))
}

// ---------------------------------------------------------------------------
// Tests

#[tokio::test(flavor = "multi_thread")]
async fn search_page_lists_filters_and_reports_errors() {
    let expected = fixture();
    assert_eq!(expected.len(), 10, "the fixture's ten traces");
    let desk = desk_with(FIXTURE).await;
    let b = Browser::start("search").await;
    b.client.goto(&format!("{}/", base(&desk))).await.unwrap();
    b.wait_js(
        "document.querySelectorAll('#results tbody tr[data-trace-id]').length === 10",
        "ten traces listed",
    )
    .await;
    let read = r#"return [...document.querySelectorAll('#results tbody tr[data-trace-id]')].map((r) => ({
        id: r.dataset.traceId,
        service: r.querySelector('.root-service').textContent,
        name: r.querySelector('.root-name').textContent,
        spans: Number(r.querySelector('.span-count').textContent),
        errors: r.querySelector('.err-mark') ? Number(r.querySelector('.err-mark').textContent.replace(/\D/g, '')) : 0,
        services: [...r.querySelectorAll('.svc-chip')].map((c) => c.textContent),
        href: r.querySelector('a.trace-link').getAttribute('href'),
    }));"#;
    let listed = b.js(read).await;
    let listed = listed.as_array().unwrap();
    for row in listed {
        let id = row["id"].as_str().unwrap();
        let exp = &expected[id];
        let root = exp.root();
        assert_eq!(row["service"], root.service.as_str(), "{id}");
        assert_eq!(row["name"], root.name.as_str(), "{id}");
        assert_eq!(row["spans"], exp.spans.len(), "{id}");
        let errors = exp.spans.iter().filter(|s| s.error).count();
        assert_eq!(row["errors"], errors, "error mark of {id}");
        assert_eq!(row["href"], format!("/trace/{id}"));
        let services: std::collections::BTreeSet<&str> =
            exp.spans.iter().map(|s| s.service.as_str()).collect();
        assert_eq!(row["services"], json!(services), "{id}");
    }
    let failing = listed.iter().filter(|r| r["errors"] != 0).count();
    assert_eq!(
        failing, 4,
        "declined, provider fault, unknown sku, order not found"
    );
    b.screenshot("search.png").await;

    // Filter by service through the UI: the legacy `tags` parameter.
    b.wait_js(
        "document.querySelectorAll('#service option[value=notification]').length === 1",
        "service names loaded",
    )
    .await;
    b.client
        .find(Locator::Css("#service"))
        .await
        .unwrap()
        .select_by_value("notification")
        .await
        .unwrap();
    let with_notification = expected
        .values()
        .filter(|e| e.spans.iter().any(|s| s.service == "notification"))
        .count();
    b.wait_js(
        &format!(
            "document.getElementById('app').dataset.state === 'done' && \
             document.querySelectorAll('#results tbody tr[data-trace-id]').length === {with_notification}"
        ),
        "traces with notification spans",
    )
    .await;
    let chips = b
        .js("return [...document.querySelectorAll('#results tbody tr')].every((r) => r.textContent.includes('notification'));")
        .await;
    assert_eq!(chips, json!(true));
    let url = b.client.current_url().await.unwrap();
    assert!(url.as_str().contains("service=notification"), "{url}");

    // Duration filter together with the service.
    let slow = expected
        .values()
        .filter(|e| e.spans.iter().any(|s| s.service == "notification"))
        .filter(|e| e.end - e.start >= 59_000_000)
        .count();
    let min = b.client.find(Locator::Css("#min-duration")).await.unwrap();
    min.send_keys("59ms").await.unwrap();
    b.click("#search-btn").await;
    b.wait_js(
        &format!(
            "document.getElementById('app').dataset.state === 'done' && \
             location.search.includes('minDuration=59ms') && \
             document.querySelectorAll('#results tbody tr[data-trace-id]').length === {slow}"
        ),
        "traces of at least 59ms",
    )
    .await;

    // A TraceQL example: the desk answers 400 until TraceQL lands; the UI shows
    // the server's message. Once it lands, the results show instead.
    let q = "{ status = error }";
    let api = reqwest::Client::new()
        .get(format!(
            "{}/api/search?q=%7B%20status%20%3D%20error%20%7D&limit=20",
            base(&desk)
        ))
        .send()
        .await
        .unwrap();
    let status = api.status();
    let text = api.text().await.unwrap();
    b.click(&format!(".examples .chip[data-q='{q}']")).await;
    if status == 400 {
        let shown = b
            .wait_js(
                "!document.getElementById('search-error').hidden && document.getElementById('search-error').textContent",
                "the error box",
            )
            .await;
        let shown = shown.as_str().unwrap();
        assert!(shown.contains("400"), "{shown}");
        assert!(
            shown.contains(text.trim()),
            "server message {text:?} in {shown:?}"
        );
        assert_eq!(
            b.js("return document.querySelectorAll('#results tbody tr').length;")
                .await,
            json!(0)
        );
        b.screenshot("search-traceql-error.png").await;
    } else {
        assert_eq!(status, 200, "{text}");
        let n = serde_json::from_str::<Value>(&text).unwrap()["traces"]
            .as_array()
            .map_or(0, Vec::len);
        b.wait_js(
            &format!("document.getElementById('app').dataset.state === 'done' && document.getElementById('search-error').hidden && document.querySelectorAll('#results tbody tr[data-trace-id]').length === {n}"),
            "TraceQL results",
        )
        .await;
    }
    b.close().await;
    desk.shutdown().await;
}

/// A search that ran out of its time budget answers partial results; the page says so, and a
/// complete answer shows no notice.
#[tokio::test(flavor = "multi_thread")]
async fn search_page_shows_partial_results() {
    let config =
        DeskConfig::ephemeral(100_000).with_query_timeout(std::time::Duration::from_nanos(1));
    let desk = trace_desk::start(config).await.expect("desk starts");
    post_otlp(&desk, FIXTURE).await;
    let b = Browser::start("partial").await;
    b.client
        .goto(&format!(
            "{}/?q={}",
            base(&desk),
            "%7B%20%7D%20%3E%3E%20%7B%20%7D"
        ))
        .await
        .unwrap();
    let shown = b
        .wait_js(
            "document.getElementById('app').dataset.state === 'done' && !document.getElementById('partial-notice').hidden && document.getElementById('partial-notice').textContent",
            "the partial-results notice",
        )
        .await;
    let shown = shown.as_str().unwrap();
    assert!(shown.contains("Partial results"), "{shown}");
    assert!(shown.contains("of 10 jobs done"), "{shown}");
    assert!(shown.contains("DESK_QUERY_TIMEOUT"), "{shown}");
    b.screenshot("search-partial.png").await;
    b.close().await;
    desk.shutdown().await;

    // The same search with the default budget: complete, no notice.
    let desk = desk_with(FIXTURE).await;
    let b = Browser::start("complete").await;
    b.client
        .goto(&format!(
            "{}/?q={}",
            base(&desk),
            "%7B%20%7D%20%3E%3E%20%7B%20%7D"
        ))
        .await
        .unwrap();
    b.wait_js(
        "document.getElementById('app').dataset.state === 'done' && document.querySelectorAll('#results tbody tr[data-trace-id]').length === 10",
        "ten traces",
    )
    .await;
    assert_eq!(
        b.js("return document.getElementById('partial-notice').hidden;")
            .await,
        json!(true)
    );
    b.close().await;
    desk.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn trace_page_waterfall_matches_the_fixture() {
    let expected = fixture();
    let desk = desk_with(FIXTURE).await;
    let b = Browser::start("trace").await;
    let declined = expected
        .iter()
        .find(|(_, e)| {
            e.spans
                .iter()
                .any(|s| s.status_message.contains("card declined"))
        })
        .map(|(id, _)| id.clone())
        .unwrap();

    // Open a trace from the search page.
    b.client.goto(&format!("{}/", base(&desk))).await.unwrap();
    b.wait_js(
        "document.querySelectorAll('#results tbody tr[data-trace-id]').length === 10",
        "results",
    )
    .await;
    b.click(&format!(
        "#results tr[data-trace-id='{declined}'] a.trace-link"
    ))
    .await;
    b.wait_js(
        "document.querySelector('#waterfall[data-rendered]')",
        "waterfall",
    )
    .await;
    let url = b.client.current_url().await.unwrap();
    assert_eq!(url.path(), format!("/trace/{declined}"));
    let exp = &expected[&declined];
    check_waterfall(&rows(&b).await, exp);
    let title = b
        .js("return document.getElementById('trace-title').textContent;")
        .await;
    assert_eq!(title, format!("{} {}", exp.root().service, exp.root().name));
    assert_eq!(
        b.js("return document.getElementById('trace-span-count').textContent;")
            .await,
        exp.spans.len().to_string()
    );
    // The time ruler has labelled ticks.
    let ticks = b
        .js("return [...document.querySelectorAll('.wf-ruler .tick-label')].map((t) => t.textContent);")
        .await;
    assert!(ticks.as_array().unwrap().len() >= 3, "{ticks}");
    assert_eq!(ticks[0], "0");
    // The legend names every service.
    let legend = b
        .js("return [...document.querySelectorAll('.legend li[data-service]')].map((l) => l.dataset.service);")
        .await;
    let services: std::collections::BTreeSet<&str> =
        exp.spans.iter().map(|s| s.service.as_str()).collect();
    assert_eq!(legend, json!(services));

    // Span details: the payment call that failed, with its status message.
    let charge_client = exp
        .spans
        .iter()
        .find(|s| s.service == "order-api" && s.status_message.contains("card declined"))
        .unwrap();
    b.click(&format!(
        ".row[data-span-id='{}'] .span-btn",
        charge_client.id
    ))
    .await;
    b.wait_js("!document.getElementById('detail').hidden", "detail panel")
        .await;
    let detail = b
        .js(r#"const d = document.getElementById('detail');
        return {
          name: d.querySelector('#detail-name').textContent,
          status: d.querySelector('#detail-status').textContent,
          kind: d.querySelector('#detail-kind').textContent,
          spanId: d.querySelector('#detail-span-id').textContent,
          attrs: Object.fromEntries([...d.querySelectorAll('#detail-attributes tr')].map((r) => [r.dataset.key, [r.dataset.type, r.querySelector('.value').textContent]])),
          resource: Object.fromEntries([...d.querySelectorAll('#detail-resource tr')].map((r) => [r.dataset.key, r.querySelector('.value').textContent])),
          hash: location.hash,
        };"#)
        .await;
    assert!(
        detail["name"]
            .as_str()
            .unwrap()
            .ends_with(&charge_client.name)
    );
    let status = detail["status"].as_str().unwrap();
    assert!(status.starts_with("ERROR"), "{status}");
    assert!(status.contains(&charge_client.status_message), "{status}");
    assert_eq!(detail["kind"], "client");
    assert_eq!(detail["spanId"], charge_client.id.as_str());
    assert_eq!(detail["hash"], format!("#span={}", charge_client.id));
    assert_eq!(
        detail["attrs"].as_object().unwrap().len(),
        charge_client.attrs.len()
    );
    for (k, v) in &charge_client.attrs {
        assert_eq!(detail["attrs"][k][1], v.as_str(), "attribute {k}");
    }
    assert_eq!(detail["resource"]["service.name"], "order-api");
    b.screenshot("waterfall-error.png").await;

    // Events, relative to the span's start.
    let charge = exp
        .spans
        .iter()
        .find(|s| s.service == "payment-api" && !s.events.is_empty())
        .unwrap();
    b.click(&format!(".row[data-span-id='{}'] .span-btn", charge.id))
        .await;
    let events = b
        .wait_js(
            &format!(
                "document.getElementById('detail-span-id').textContent === '{}' && \
                 [...document.querySelectorAll('#detail-events .event')].map((e) => [e.querySelector('.event-time').textContent, e.querySelector('.event-name').textContent])",
                charge.id
            ),
            "events",
        )
        .await;
    assert_eq!(events[0][1], charge.events[0].as_str());
    assert!(events[0][0].as_str().unwrap().starts_with('+'), "{events}");

    // Collapse a subtree: its rows hide, the rest stay.
    let create_order = exp.spans.iter().find(|s| s.name == "createOrder").unwrap();
    let below: HashSet<String> = {
        let mut set = HashSet::new();
        let mut frontier = vec![create_order.id.clone()];
        while let Some(p) = frontier.pop() {
            for s in exp.spans.iter().filter(|s| s.parent == p) {
                set.insert(s.id.clone());
                frontier.push(s.id.clone());
            }
        }
        set
    };
    assert!(below.len() >= 4);
    let toggle = format!(".row[data-span-id='{}'] .toggle", create_order.id);
    b.click(&toggle).await;
    let after = rows(&b).await;
    for r in &after {
        assert_eq!(
            r.visible,
            !below.contains(&r.id),
            "{} after collapse",
            r.name
        );
        if r.id == create_order.id {
            assert_eq!(r.expanded.as_deref(), Some("false"));
        }
    }
    b.screenshot("waterfall-collapsed.png").await;
    b.click(&toggle).await;
    assert!(rows(&b).await.iter().all(|r| r.visible), "expanded again");
    b.click("#collapse-all").await;
    let visible: Vec<String> = rows(&b)
        .await
        .into_iter()
        .filter(|r| r.visible)
        .map(|r| r.id)
        .collect();
    assert_eq!(
        visible,
        vec![exp.root().id.clone()],
        "collapse all leaves the root"
    );
    b.click("#expand-all").await;
    assert!(rows(&b).await.iter().all(|r| r.visible), "expand all");

    // Keyboard: arrows move between rows, Left collapses.
    b.js("document.querySelector('#waterfall .row .span-btn').focus();")
        .await;
    let focused = "document.activeElement.closest('.row') && document.activeElement.closest('.row').dataset.index";
    b.client
        .active_element()
        .await
        .unwrap()
        .send_keys("\u{E015}")
        .await
        .unwrap();
    assert_eq!(b.js(&format!("return {focused};")).await, "1");
    b.client
        .active_element()
        .await
        .unwrap()
        .send_keys("\u{E012}")
        .await
        .unwrap();
    assert_eq!(
        b.js("return document.activeElement.closest('.row').querySelector('.toggle').getAttribute('aria-expanded');")
            .await,
        "false"
    );

    // Every trace, loaded by its shareable URL.
    for (id, exp) in &expected {
        b.client
            .goto(&format!("{}/trace/{id}", base(&desk)))
            .await
            .unwrap();
        b.wait_js(
            &format!("document.querySelector('#waterfall[data-rendered]') && document.getElementById('trace-id').textContent === '{id}'"),
            "waterfall",
        )
        .await;
        check_waterfall(&rows(&b).await, exp);
    }
    // A span in the URL opens its details (a paid checkout's email, with its
    // event); unknown traces say so.
    let (paid, email) = expected
        .iter()
        .find_map(|(id, e)| {
            let email = e
                .spans
                .iter()
                .find(|s| s.name == "sendEmail" && !s.events.is_empty())?;
            (e.spans.len() == 18).then(|| (id.clone(), email.clone()))
        })
        .unwrap();
    b.client
        .goto(&format!("{}/trace/{paid}#span={}", base(&desk), email.id))
        .await
        .unwrap();
    b.wait_js(
        &format!(
            "document.getElementById('detail-span-id') && \
             document.getElementById('detail-span-id').textContent === '{}' && \
             document.querySelectorAll('#detail-events .event').length === 1",
            email.id
        ),
        "span from the URL",
    )
    .await;
    b.screenshot("waterfall.png").await;
    b.client
        .goto(&format!(
            "{}/trace/00000000000000000000000000000abc",
            base(&desk)
        ))
        .await
        .unwrap();
    let err = b
        .wait_js("document.getElementById('trace-error') && document.getElementById('trace-error').textContent", "not found")
        .await;
    assert!(err.as_str().unwrap().contains("not found"), "{err}");
    b.close().await;
    desk.shutdown().await;
}

/// OTLP/JSON for one trace of `n` spans over five services: a four-way tree,
/// every child inside its parent, every 97th span an error, some links.
fn synthetic(n: usize) -> (String, String) {
    let trace = "00c0ffee00c0ffee00c0ffee00000001".to_string();
    let services = ["edge", "cart", "stock", "pricing", "ledger"];
    let t0: u64 = 1_800_000_000_000_000_000;
    let mut times: Vec<(u64, u64)> = Vec::with_capacity(n);
    let mut by_service: Vec<Vec<Value>> = vec![vec![]; services.len()];
    for i in 0..n {
        let (start, dur, parent) = if i == 0 {
            (t0, 2_000_000_000u64, None)
        } else {
            let p = (i - 1) / 4;
            let (ps, pd) = times[p];
            let off = pd * ((i * 37) % 40) as u64 / 100;
            let dur = pd * (30 + ((i * 13) % 30) as u64) / 100;
            (ps + off, dur.max(1_000), Some(p))
        };
        times.push((start, dur));
        let mut span = json!({
            "traceId": trace,
            "spanId": format!("{:016x}", 0x5000_0000_0000_0000u64 + i as u64),
            "name": format!("op-{}", i % 23),
            "kind": 1 + (i % 5),
            "startTimeUnixNano": start.to_string(),
            "endTimeUnixNano": (start + dur).to_string(),
            "attributes": [
                {"key": "span.index", "value": {"intValue": i.to_string()}},
                {"key": "label", "value": {"stringValue": format!("span-{i}")}},
                {"key": "ratio", "value": {"doubleValue": i as f64 / 8.0}},
                {"key": "even", "value": {"boolValue": i % 2 == 0}},
            ],
            "status": {"code": if i % 97 == 5 { 2 } else { 0 }, "message": if i % 97 == 5 { "synthetic failure" } else { "" }},
        });
        if let Some(p) = parent {
            span["parentSpanId"] = json!(format!("{:016x}", 0x5000_0000_0000_0000u64 + p as u64));
        }
        if i % 50 == 7 {
            span["events"] = json!([{"timeUnixNano": (start + dur / 2).to_string(), "name": "checkpoint",
                "attributes": [{"key": "step", "value": {"intValue": "2"}}]}]);
            span["links"] = json!([
                {"traceId": trace, "spanId": format!("{:016x}", 0x5000_0000_0000_0000u64 + 1)},
                {"traceId": "00c0ffee00c0ffee00c0ffee00000002", "spanId": "00000000000000aa",
                 "attributes": [{"key": "link.kind", "value": {"stringValue": "follows"}}]},
            ]);
        }
        by_service[i % services.len()].push(span);
    }
    let resource_spans: Vec<Value> = services
        .iter()
        .zip(by_service)
        .map(|(svc, spans)| {
            json!({
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": svc}}]},
                "scopeSpans": [{"scope": {"name": "synthetic", "version": "1.0"}, "spans": spans}],
            })
        })
        .collect();
    (
        trace,
        json!({ "resourceSpans": resource_spans }).to_string(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn two_thousand_span_trace_renders_and_stays_interactive() {
    const N: usize = 2_000;
    let (trace, body) = synthetic(N);
    let exp = traces(parse_spans(&body)).remove(&trace).unwrap();
    assert_eq!(exp.spans.len(), N);
    let desk = desk_with(&body).await;
    let b = Browser::start("big").await;
    let began = Instant::now();
    b.client
        .goto(&format!("{}/trace/{trace}", base(&desk)))
        .await
        .unwrap();
    b.wait_js(
        "document.querySelector('#waterfall[data-rendered]')",
        "waterfall",
    )
    .await;
    let loaded = began.elapsed();
    let render_ms = b
        .js("return Number(document.getElementById('app').dataset.renderMs);")
        .await;
    let count = b
        .js("return document.querySelectorAll('#waterfall .row').length;")
        .await;
    assert_eq!(count, N);
    println!(
        "2,000 spans: page loaded and rendered in {loaded:?}; model + DOM build {render_ms} ms"
    );

    // Order and nesting of every row; geometry of the ones on screen.
    let all = rows(&b).await;
    check_waterfall(&all, &exp);

    // Interactive: collapse all, expand all, a deep row's details, find.
    let t = Instant::now();
    b.click("#collapse-all").await;
    let shown = b
        .js("return [...document.querySelectorAll('#waterfall .row')].filter((r) => !r.hidden).length;")
        .await;
    assert_eq!(shown, 1);
    b.click("#expand-all").await;
    let shown = b
        .js("return [...document.querySelectorAll('#waterfall .row')].filter((r) => !r.hidden).length;")
        .await;
    assert_eq!(shown, N);
    println!("collapse all + expand all round trip: {:?}", t.elapsed());

    let deep = &exp.spans[exp.order[N - 3].0];
    let sel = format!(".row[data-span-id='{}'] .span-btn", deep.id);
    b.js(&format!(
        "document.querySelector(\"{sel}\").scrollIntoView({{block: 'center'}});"
    ))
    .await;
    b.click(&sel).await;
    b.wait_js(
        &format!("document.getElementById('detail-span-id') && document.getElementById('detail-span-id').textContent === '{}'", deep.id),
        "deep span details",
    )
    .await;
    let types = b
        .js("return Object.fromEntries([...document.querySelectorAll('#detail-attributes tr')].map((r) => [r.dataset.key, r.dataset.type]));")
        .await;
    assert_eq!(
        types,
        json!({"span.index": "int", "label": "string", "ratio": "double", "even": "bool"})
    );
    b.screenshot("big-trace.png").await;

    // Links: one inside the trace (a button), one to another trace (a link).
    let linked = &exp.spans.iter().find(|s| s.attrs[0].1 == "57").unwrap().id;
    let sel = format!(".row[data-span-id='{linked}'] .span-btn");
    b.js(&format!(
        "document.querySelector(\"{sel}\").scrollIntoView({{block: 'center'}});"
    ))
    .await;
    b.click(&sel).await;
    let links = b
        .wait_js(
            &format!("document.getElementById('detail-span-id').textContent === '{linked}' && \
                [...document.querySelectorAll('#detail-links li')].map((l) => l.firstElementChild.tagName + ' ' + l.textContent)"),
            "links",
        )
        .await;
    let links: Vec<String> = serde_json::from_value(links).unwrap();
    assert_eq!(links.len(), 2, "{links:?}");
    assert!(
        links[0].starts_with("BUTTON span 5000000000000001"),
        "{links:?}"
    );
    assert!(
        links[1].starts_with("A 00c0ffee00c0ffee00c0ffee00000002"),
        "{links:?}"
    );
    assert!(links[1].contains("link.kind"), "{links:?}");

    b.client
        .find(Locator::Css("#span-find"))
        .await
        .unwrap()
        .send_keys("span-1999")
        .await
        .unwrap();
    b.wait_js(
        "document.getElementById('find-count').textContent === '1 match'",
        "find",
    )
    .await;
    b.close().await;
    desk.shutdown().await;
}

// ---------------------------------------------------------------------------
// Services overview (TraceQL metrics)

/// Two services with known timing, relative to now so the page's default window
/// (the last 15 minutes) holds them. Trace `i` (0..30) starts 800 s − 26·i s ago
/// with a SERVER span in `shop`: `POST /checkout` (120 ms) when i % 3 == 2, else
/// `GET /cart` (40 ms); the first six checkouts fail. When i % 5 == 0 the shop
/// span calls `stock` (a CLIENT span in shop, a SERVER `GET /stock` of 10 ms in
/// stock). One more `GET /cart` trace started 20 minutes ago: inside 1 h, not
/// inside 15 min.
///
/// By hand, over 15 min (900 s): shop 30 requests = 0.0333 req/s, 6 errors = 20.0 %;
/// GET /cart 20 (0.0222 req/s, 0 %), POST /checkout 10 (0.0111 req/s, 60.0 %);
/// stock 6 = 0.00667 req/s, 0 %. Over 1 h (3600 s): shop 31 = 0.00861 req/s,
/// 6/31 = 19.4 %.
fn two_services(now_ns: u64) -> (String, Vec<String>) {
    const S: u64 = 1_000_000_000;
    const MS: u64 = 1_000_000;
    let mut shop = vec![];
    let mut stock = vec![];
    let mut ids = vec![];
    let span = |trace: &str,
                id: u64,
                parent: Option<u64>,
                name: &str,
                kind: u8,
                start: u64,
                dur: u64,
                error: bool| {
        let mut s = json!({
            "traceId": trace,
            "spanId": format!("{id:016x}"),
            "name": name,
            "kind": kind,
            "startTimeUnixNano": start.to_string(),
            "endTimeUnixNano": (start + dur).to_string(),
            "status": {"code": if error { 2 } else { 0 }},
        });
        if let Some(p) = parent {
            s["parentSpanId"] = json!(format!("{p:016x}"));
        }
        s
    };
    for i in 0..31u64 {
        let trace = format!("{:032x}", 0x5e_0000 + i);
        let start = if i == 30 {
            now_ns - 1_200 * S
        } else {
            now_ns - 800 * S + 26 * i * S
        };
        let checkout = i % 3 == 2 && i < 30;
        let error = checkout && i / 3 < 6;
        let (name, dur) = if checkout {
            ("POST /checkout", 120 * MS)
        } else {
            ("GET /cart", 40 * MS)
        };
        let root = 0x1000 + i * 16;
        shop.push(span(&trace, root, None, name, 2, start, dur, error));
        if i % 5 == 0 && i < 30 {
            shop.push(span(
                &trace,
                root + 1,
                Some(root),
                "GET",
                3,
                start + MS,
                12 * MS,
                false,
            ));
            stock.push(span(
                &trace,
                root + 2,
                Some(root + 1),
                "GET /stock",
                2,
                start + 2 * MS,
                10 * MS,
                false,
            ));
        }
        ids.push(trace);
    }
    let rs = |svc: &str, spans: Vec<Value>| {
        json!({
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": svc}}]},
            "scopeSpans": [{"scope": {"name": "test"}, "spans": spans}],
        })
    };
    (
        json!({"resourceSpans": [rs("shop", shop), rs("stock", stock)]}).to_string(),
        ids,
    )
}

const READ_SERVICE_ROWS: &str = r#"
return Object.fromEntries([...document.querySelectorAll('#services tbody tr[data-service]')].map((r) => [
  r.dataset.op ? r.dataset.service + ' ' + r.dataset.op : r.dataset.service,
  {
    rate: r.querySelector('.rate').textContent, rateValue: Number(r.querySelector('.rate').dataset.value),
    errors: r.querySelector('.errors').textContent, errorPct: Number(r.querySelector('.errors').dataset.value),
    p50: Number(r.querySelector('.p50').dataset.value), p95: Number(r.querySelector('.p95').dataset.value),
    p99: Number(r.querySelector('.p99').dataset.value),
  },
]));"#;

#[tokio::test(flavor = "multi_thread")]
async fn services_overview_shows_red_metrics_with_sparklines() {
    let now_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let (body, trace_ids) = two_services(now_ns);
    let desk = desk_with(&body).await;
    let b = Browser::start("services").await;

    // Reached from the top bar.
    b.client.goto(&format!("{}/", base(&desk))).await.unwrap();
    b.click("#nav-services").await;
    b.wait_js(
        "location.pathname === '/services' && document.getElementById('app').dataset.state === 'done'",
        "services overview",
    )
    .await;
    let rows: Value = b.js(READ_SERVICE_ROWS).await;
    let keys: Vec<&String> = rows.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["shop", "stock"], "{rows}");
    let close = |got: &Value, want: f64| {
        let g = got.as_f64().unwrap();
        assert!((g - want).abs() < 1e-9, "{g} vs {want}");
    };
    close(&rows["shop"]["rateValue"], 30.0 / 900.0);
    assert_eq!(rows["shop"]["rate"], "0.0333");
    close(&rows["shop"]["errorPct"], 20.0);
    assert_eq!(rows["shop"]["errors"], "20.0%");
    close(&rows["stock"]["rateValue"], 6.0 / 900.0);
    assert_eq!(rows["stock"]["rate"], "0.00667");
    assert_eq!(rows["stock"]["errors"], "0%");
    // Quantiles: ordered, and within the log2 bucket of the slowest span
    // (shop's 120 ms checkouts: ≤ 2^27 ns; stock's 10 ms: ≤ 2^24 ns).
    for (svc, bound) in [("shop", 0.134_217_728), ("stock", 0.016_777_216)] {
        let r = &rows[svc];
        let (p50, p95, p99) = (
            r["p50"].as_f64().unwrap(),
            r["p95"].as_f64().unwrap(),
            r["p99"].as_f64().unwrap(),
        );
        assert!(
            0.0 < p50 && p50 <= p95 && p95 <= p99 && p99 <= bound,
            "{svc}: {r}"
        );
    }

    // Sparklines: a line with one point per step (15 s over 15 min, plus Tempo's
    // leading step), and exemplar dots linking to traces we sent.
    let spark = b
        .js("const s = document.querySelector('tr[data-service=shop] svg.spark[data-what=rate]'); \
             return {points: s.querySelector('polyline').getAttribute('points').trim().split(/\\s+/).length, \
                     data: Number(s.dataset.points), \
                     exemplars: [...s.querySelectorAll('a.exemplar')].map((a) => a.getAttribute('href'))};")
        .await;
    let points = spark["points"].as_u64().unwrap();
    assert_eq!(points, spark["data"].as_u64().unwrap(), "{spark}");
    assert!((60..=62).contains(&points), "{spark}");
    let exemplars: Vec<String> = serde_json::from_value(spark["exemplars"].clone()).unwrap();
    assert!(!exemplars.is_empty(), "{spark}");
    for href in &exemplars {
        let id = href
            .strip_prefix("/trace/")
            .and_then(|r| r.split('#').next())
            .unwrap_or_else(|| panic!("exemplar link {href}"));
        assert!(trace_ids.iter().any(|t| t == id), "{href}");
    }
    let p95_dots = b
        .js("return document.querySelectorAll('tr[data-service=shop] svg.spark[data-what=p95] a.exemplar').length;")
        .await;
    assert!(p95_dots.as_u64().unwrap() > 0, "p95 exemplars");
    // stock's spans come second in their traces, yet its row has dots of its own
    // (one range query per service): the traces that called stock.
    let stock_dots: Vec<String> = serde_json::from_value(
        b.js("return [...document.querySelectorAll('tr[data-service=stock] svg.spark a.exemplar')].map((a) => a.dataset.traceId);")
            .await,
    )
    .unwrap();
    let called_stock: HashSet<&String> = trace_ids.iter().step_by(5).take(6).collect();
    assert_eq!(
        stock_dots.iter().collect::<HashSet<_>>(),
        called_stock,
        "{stock_dots:?}"
    );

    // Expanding a service lists its operations (span names of its server spans).
    b.click("tr[data-service=shop] .svc-toggle").await;
    b.wait_js(
        "document.querySelector('tr.svc-row[data-service=shop]').dataset.ops === '2'",
        "shop's operations",
    )
    .await;
    let rows: Value = b.js(READ_SERVICE_ROWS).await;
    close(&rows["shop GET /cart"]["rateValue"], 20.0 / 900.0);
    assert_eq!(rows["shop GET /cart"]["errors"], "0%");
    close(&rows["shop POST /checkout"]["rateValue"], 10.0 / 900.0);
    assert_eq!(rows["shop POST /checkout"]["errors"], "60.0%");
    let order = b
        .js("return [...document.querySelectorAll('#services tbody tr')].map((r) => r.dataset.op || r.dataset.service);")
        .await;
    assert_eq!(
        order,
        json!(["shop", "GET /cart", "POST /checkout", "stock"])
    );
    b.screenshot("services.png").await;
    // A second click folds them away.
    b.click("tr[data-service=shop] .svc-toggle").await;
    assert_eq!(
        b.js("return [document.querySelectorAll('tr.op-row').length, \
              document.querySelector('tr[data-service=shop] .svc-toggle').getAttribute('aria-expanded')];")
            .await,
        json!([0, "false"])
    );

    // An exemplar dot opens its trace page.
    let href = &exemplars[0];
    b.js("document.querySelector('tr.svc-row[data-service=shop] svg.spark[data-what=rate] a.exemplar') \
          .dispatchEvent(new MouseEvent('click', {bubbles: true, cancelable: true}));")
        .await;
    let id = href
        .trim_start_matches("/trace/")
        .split('#')
        .next()
        .unwrap();
    b.wait_js(
        &format!(
            "location.pathname === '/trace/{id}' && document.getElementById('trace-id') && \
             document.getElementById('trace-id').textContent === '{id}'"
        ),
        "the exemplar's trace",
    )
    .await;

    // The 1 h window takes in the older trace: 31 requests over 3600 s.
    b.client
        .goto(&format!("{}/services", base(&desk)))
        .await
        .unwrap();
    b.wait_js(
        "document.getElementById('app').dataset.state === 'done'",
        "overview",
    )
    .await;
    b.click("button.seg[data-range='1h']").await;
    b.wait_js(
        "document.getElementById('app').dataset.state === 'done' && location.search.includes('range=1h') && \
         document.querySelector('tr[data-service=shop] .rate').textContent === '0.00861'",
        "1 h window",
    )
    .await;
    let rows: Value = b.js(READ_SERVICE_ROWS).await;
    close(&rows["shop"]["rateValue"], 31.0 / 3600.0);
    assert_eq!(rows["shop"]["errors"], "19.4%");

    // Clicking a row's sparkline searches its spans with TraceQL.
    b.js(
        "document.querySelector('tr.svc-row[data-service=stock] svg.spark[data-what=p95]') \
          .dispatchEvent(new MouseEvent('click', {bubbles: true, cancelable: true}));",
    )
    .await;
    let want = r#"{ resource.service.name = "stock" && kind = server }"#;
    let got = b
        .wait_js(
            "location.pathname === '/' && document.getElementById('app').dataset.state === 'done' && \
             [new URLSearchParams(location.search).get('q'), document.getElementById('q').value, \
              document.querySelectorAll('#results tbody tr[data-trace-id]').length]",
            "search of stock's server spans",
        )
        .await;
    assert_eq!(got, json!([want, want, 6]));
    b.close().await;
    desk.shutdown().await;
}

/// A metrics answer cut short by the time budget shows the partial notice; a
/// window the API refuses (an `end` past year 2262) shows the server's 400
/// message in the red box, as the search page does.
#[tokio::test(flavor = "multi_thread")]
async fn services_overview_reports_partial_answers_and_errors() {
    let now_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let config =
        DeskConfig::ephemeral(100_000).with_query_timeout(std::time::Duration::from_nanos(1));
    let desk = trace_desk::start(config).await.expect("desk starts");
    post_otlp(&desk, &two_services(now_ns).0).await;
    let b = Browser::start("services-partial").await;
    b.client
        .goto(&format!("{}/services", base(&desk)))
        .await
        .unwrap();
    let shown = b
        .wait_js(
            "document.getElementById('app').dataset.state === 'done' && \
             !document.getElementById('services-partial').hidden && \
             document.getElementById('services-partial').textContent",
            "the partial notice",
        )
        .await;
    assert!(
        shown.as_str().unwrap().contains("Partial results"),
        "{shown}"
    );
    assert_eq!(
        b.js("return document.getElementById('services-error').hidden;")
            .await,
        json!(true)
    );

    b.client
        .goto(&format!("{}/services?end=9999999999", base(&desk)))
        .await
        .unwrap();
    let shown = b
        .wait_js(
            "document.getElementById('app').dataset.state === 'error' && \
             !document.getElementById('services-error').hidden && \
             document.getElementById('services-error').textContent",
            "the error box",
        )
        .await;
    let shown = shown.as_str().unwrap();
    assert!(
        shown.contains("The server rejected the metrics query (400)"),
        "{shown}"
    );
    let api = reqwest::Client::new()
        .get(format!(
            "{}/api/metrics/query?q=%7B%7D%20%7C%20rate()&start={}&end=9999999999",
            base(&desk),
            9_999_999_999u64 - 900
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), 400);
    let message = api.text().await.unwrap();
    assert!(shown.contains(message.trim()), "{shown} vs {message}");
    b.screenshot("services-error.png").await;
    b.close().await;
    desk.shutdown().await;
}

/// The fleet fixture, with the window pinned after it (`end=`): every service of
/// the fleet has a row, not just the gateway that starts the traces (which is
/// what counting root spans would give). Rates and error shares are counted
/// from the fixture's SERVER spans.
#[tokio::test(flavor = "multi_thread")]
async fn services_overview_lists_every_fleet_service() {
    let v: Value = serde_json::from_str(FIXTURE).unwrap();
    let mut want: BTreeMap<String, (u32, u32)> = BTreeMap::new();
    let mut last_start = 0u64;
    for rs in v["resourceSpans"].as_array().unwrap() {
        let service = rs["resource"]["attributes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|kv| kv["key"] == "service.name")
            .map(|kv| value_text(&kv["value"]))
            .unwrap();
        for ss in rs["scopeSpans"].as_array().unwrap() {
            for s in ss["spans"].as_array().unwrap() {
                let start: u64 = s["startTimeUnixNano"].as_str().unwrap().parse().unwrap();
                last_start = last_start.max(start);
                if s["kind"] == 2 {
                    let e = want.entry(service.clone()).or_default();
                    e.0 += 1;
                    e.1 += u32::from(s["status"]["code"] == 2);
                }
            }
        }
    }
    assert_eq!(
        want.keys().collect::<Vec<_>>(),
        ["api-gateway", "notification", "order-api", "payment-api"]
    );
    let end = last_start / 1_000_000_000 + 60;
    let desk = desk_with(FIXTURE).await;
    let b = Browser::start("services-fleet").await;
    b.client
        .goto(&format!("{}/services?range=15m&end={end}", base(&desk)))
        .await
        .unwrap();
    b.wait_js(
        "document.getElementById('app').dataset.state === 'done'",
        "services overview",
    )
    .await;
    let rows: Value = b.js(READ_SERVICE_ROWS).await;
    assert_eq!(
        rows.as_object().unwrap().keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "{rows}"
    );
    for (svc, (n, errors)) in &want {
        let r = &rows[svc];
        let rate = r["rateValue"].as_f64().unwrap();
        assert!((rate - f64::from(*n) / 900.0).abs() < 1e-9, "{svc}: {r}");
        let pct = 100.0 * f64::from(*errors) / f64::from(*n);
        assert!(
            (r["errorPct"].as_f64().unwrap() - pct).abs() < 1e-9,
            "{svc}: {r}"
        );
        let text = if *errors == 0 {
            "0%".to_string()
        } else {
            format!("{pct:.1}%")
        };
        assert_eq!(r["errors"], text.as_str(), "{svc}: {r}");
    }
    b.screenshot("services-fleet.png").await;
    b.close().await;
    desk.shutdown().await;
}
