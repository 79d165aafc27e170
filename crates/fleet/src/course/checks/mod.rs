//! `fleet course check N [ARGS]`: each step's expected outcome, verified against the running
//! fleet and the trace backend (the desk, or any Tempo: only Tempo's HTTP API is used).
//!
//! Each check is split the same way: the I/O (a checkout, a fetch, a search) in an async
//! function, the verdict in a plain function over what the backend answered, which the unit
//! tests feed with recorded answers (checks/fixtures/).

mod backend;
mod propagation;
mod quizzes;
mod sampling;
mod search;
mod waterfall;

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use serde_json::Value;

use super::{CourseError, progress, text};
use crate::topology;
use crate::traces::model::{self, Span};

/// The quiz puzzles that count towards step `n`.
pub fn puzzles_of(n: u8) -> &'static [&'static str] {
    match n {
        6 => &quizzes::BOTTLENECKS,
        9 => &quizzes::DRILLS,
        10 => &[quizzes::CAPSTONE],
        _ => &[],
    }
}

/// Every bound the checks have, for the docs (docs/course/README.md lists them).
pub mod bounds {
    pub use super::TRACE_WAIT;
    pub use super::quizzes::DRILL_LIMIT_SECS;
    pub use super::sampling::{HEAD_SAMPLE, SIGMAS, TAIL_BASELINE, TAIL_SLOW_MS, TAIL_WAIT};
    pub use super::search::{SEARCH_LIMIT, WINDOW};
}

#[derive(Args, Debug, Clone)]
pub struct CheckArgs {
    #[arg(value_parser = clap::value_parser!(u8).range(1..=10))]
    step: u8,
    /// The step's answers (see the step's Check part); options may come before or after them.
    args: Vec<String>,
    /// Tempo (or trace desk) base URL; default: the desk of the running fleet.
    #[arg(long, env = "FLEET_TEMPO_URL")]
    tempo: Option<String>,
    /// The gateway's base URL; default: the running fleet's.
    #[arg(long, env = "FLEET_GATEWAY_URL")]
    gateway: Option<String>,
    /// Step 8's no-Docker track: questions about recorded traces instead of a live Collector.
    #[arg(long)]
    offline: bool,
    /// The running quiz's state file (step 10), as `fleet quiz --state`.
    #[arg(long, env = "FLEET_QUIZ_FILE", default_value = "fleet-data/quiz.json")]
    quiz_state: PathBuf,
}

/// What a check found when it did not fail.
#[derive(Debug)]
pub struct Outcome {
    pub text: String,
    /// The step is complete (a partial pass, e.g. one exercise of several, is not).
    pub done: bool,
}

impl Outcome {
    fn done(text: impl Into<String>) -> Outcome {
        Outcome {
            text: text.into(),
            done: true,
        }
    }

    fn partial(text: impl Into<String>) -> Outcome {
        Outcome {
            text: text.into(),
            done: false,
        }
    }
}

fn not_yet(text: impl Into<String>) -> CourseError {
    CourseError::NotYet(text.into())
}

fn usage(text: impl Into<String>) -> CourseError {
    CourseError::Usage(text.into())
}

/// What the checks talk to.
pub struct Ctx {
    pub backend: Backend,
    pub gateway: String,
    pub data_dir: PathBuf,
    pub quiz_state: PathBuf,
    pub offline: bool,
}

pub async fn run(args: CheckArgs, data_dir: &Path) -> Result<String, CourseError> {
    let step = text::step(args.step)?;
    let ctx = Ctx {
        backend: Backend::new(
            args.tempo
                .unwrap_or_else(|| super::fleet_url(data_dir, topology::DESK)),
        )?,
        gateway: args
            .gateway
            .unwrap_or_else(|| super::fleet_url(data_dir, topology::GATEWAY))
            .trim_end_matches('/')
            .to_owned(),
        data_dir: data_dir.to_owned(),
        quiz_state: args.quiz_state,
        offline: args.offline,
    };
    let a = &args.args;
    let outcome = match step.number {
        1 => propagation::check(&ctx, a).await,
        2 => backend::check_ready(&ctx).await,
        3 => backend::check_resource(&ctx, a).await,
        4 => search::check(&ctx, a).await,
        5 => waterfall::check(&ctx, a).await,
        6 => quizzes::check_bottlenecks(&ctx),
        7 => sampling::check_head(&ctx, a).await,
        8 => sampling::check_tail(&ctx, a).await,
        9 => quizzes::check_drills(&ctx),
        _ => quizzes::check_capstone(&ctx, a).await,
    };
    let outcome = outcome.map_err(|e| match e {
        CourseError::NotYet(why) => {
            CourseError::NotYet(format!("✗ Step {} not yet: {why}", step.number))
        }
        other => other,
    })?;
    let mut text = outcome.text;
    if !text.ends_with('\n') {
        text.push('\n');
    }
    if outcome.done {
        let p = progress::update(data_dir, |p| p.mark_done(step.number))?;
        text.push_str(&format!(
            "✓ Step {} — {}: passed ({} / 10 completed)\n",
            step.number,
            step.title(),
            p.count()
        ));
    }
    Ok(text)
}

/// Tempo's HTTP API (or the desk's, which is the same).
pub struct Backend {
    client: reqwest::Client,
    pub base: String,
    /// How long [`Backend::wait_trace`] waits ([`TRACE_WAIT`]; shorter in tests).
    pub wait: Duration,
}

/// How long a check waits for a trace's spans to arrive (the SDKs batch for about a second).
pub const TRACE_WAIT: Duration = Duration::from_secs(15);

impl Backend {
    pub fn new(base: String) -> Result<Backend, CourseError> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| usage(format!("cannot build an HTTP client: {e}")))?;
        Ok(Backend {
            client,
            base: base.trim_end_matches('/').to_owned(),
            wait: TRACE_WAIT,
        })
    }

    /// GET `path` (with its query); status and body. Unreachable is an error naming the URL.
    pub async fn get(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<(u16, String), CourseError> {
        let url = format!("{}{path}", self.base);
        let resp = self
            .client
            .get(&url)
            .query(query)
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| {
                usage(format!(
                    "cannot reach the trace backend at {} ({e}); is the fleet up? (`fleet up`, or --tempo URL)",
                    self.base
                ))
            })?;
        let status = resp.status().as_u16();
        let body = resp.text().await.unwrap_or_default();
        Ok((status, body))
    }

    /// A trace by id (`/api/traces/ID`, else `/api/v2/traces/ID`), as the raw JSON answer;
    /// `None` when the backend does not have it.
    pub async fn trace_json(&self, id: &str) -> Result<Option<Value>, CourseError> {
        for path in [format!("/api/traces/{id}"), format!("/api/v2/traces/{id}")] {
            let (status, body) = self.get(&path, &[]).await?;
            if status == 200
                && let Ok(json) = serde_json::from_str::<Value>(&body)
                && !json.get("trace").is_some_and(Value::is_null)
                && model::parse_trace(&json).is_ok_and(|s| !s.is_empty())
            {
                return Ok(Some(json));
            }
        }
        Ok(None)
    }

    /// Waits up to `self.wait` for trace `id`, until its span count stops growing and
    /// `complete` says it has what the check needs.
    pub async fn wait_trace(
        &self,
        id: &str,
        complete: impl Fn(&[Span]) -> bool,
    ) -> Result<Option<Value>, CourseError> {
        let deadline = tokio::time::Instant::now() + self.wait;
        let mut last: Option<(usize, Value)> = None;
        loop {
            if let Some(json) = self.trace_json(id).await? {
                let spans = model::parse_trace(&json).unwrap_or_default();
                let stable = last.as_ref().is_some_and(|(n, _)| *n == spans.len());
                if stable && complete(&spans) {
                    return Ok(Some(json));
                }
                last = Some((spans.len(), json));
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(last.map(|(_, json)| json));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// The trace ids a TraceQL search matches in `[start, end]` (Unix seconds).
    pub async fn search(&self, q: &str, start: u64, end: u64) -> Result<Vec<String>, CourseError> {
        let query = [
            ("q", q.to_owned()),
            ("limit", search::SEARCH_LIMIT.to_string()),
            ("spss", "1".to_owned()),
            ("start", start.to_string()),
            ("end", end.to_string()),
        ];
        let (status, body) = self.get("/api/search", &query).await?;
        if status != 200 {
            return Err(not_yet(format!(
                "the backend rejected the query `{q}` ({status}): {}",
                body.trim()
            )));
        }
        let json: Value = serde_json::from_str(&body).map_err(|e| {
            usage(format!(
                "the search answer from {} is not JSON: {e}",
                self.base
            ))
        })?;
        let found =
            crate::traces::list::parse_search(&json).map_err(|e| usage(format!("{e:#}")))?;
        Ok(found.into_iter().map(|f| f.trace_id).collect())
    }
}

/// A fresh W3C trace context: (trace id, span id, `traceparent` header, sampled).
pub fn new_traceparent() -> (String, String, String) {
    let trace = uuid::Uuid::new_v4().simple().to_string();
    let span = uuid::Uuid::new_v4().simple().to_string()[..16].to_owned();
    let header = format!("00-{trace}-{span}-01");
    (trace, span, header)
}

/// One checkout through the gateway; `card` picks the outcome. Returns the trace id the
/// gateway reported.
pub async fn checkout(
    gateway: &str,
    card: &str,
    headers: &[(&str, &str)],
) -> Result<(u16, Option<String>), CourseError> {
    use order_api::model::{CreateOrder, OrderItemInput};
    let order = CreateOrder {
        customer_email: "learner@example.com".to_owned(),
        items: vec![OrderItemInput {
            sku: "COFFEE-250G".to_owned(),
            quantity: 1,
        }],
        card_number: card.to_owned(),
    };
    let answer = api_gateway::client::GatewayClient::new(gateway)
        .checkout(&order, headers)
        .await
        .map_err(|e| {
            usage(format!(
                "cannot reach the gateway at {gateway} ({e}); is the fleet up? (`fleet up`, or --gateway URL)"
            ))
        })?;
    Ok((answer.status.as_u16(), answer.trace_id))
}

pub const CARD_OK: &str = "4242424242424242";
pub const CARD_DECLINED: &str = "4000000000009995";

/// The four services a whole checkout trace has spans from.
pub const SERVICES: [&str; 4] = [
    topology::GATEWAY,
    topology::ORDER_API,
    topology::PAYMENT_API,
    topology::NOTIFICATION,
];

fn spans_of(json: &Value) -> Vec<Span> {
    model::parse_trace(json).unwrap_or_default()
}

/// The services missing from a trace, of the four a checkout touches.
fn missing_services(spans: &[Span]) -> Vec<&'static str> {
    SERVICES
        .into_iter()
        .filter(|s| !spans.iter().any(|span| span.service == *s))
        .collect()
}

fn now() -> u64 {
    progress::now()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read as _, Write as _};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A backend on 127.0.0.1 that answers every request with `status` and `body`; counts them.
    fn fake_backend(status: u16, body: &'static str) -> (String, Arc<AtomicUsize>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let count = Arc::new(AtomicUsize::new(0));
        let seen = count.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf);
                seen.fetch_add(1, Ordering::SeqCst);
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        (format!("http://{addr}"), count)
    }

    #[tokio::test]
    async fn waiting_for_a_trace_gives_up_at_the_bound_having_polled() {
        let (url, count) = fake_backend(404, "trace not found");
        let mut backend = Backend::new(url).unwrap();
        backend.wait = Duration::from_millis(1200);
        let started = std::time::Instant::now();
        let found = backend.wait_trace("abc", |_| true).await.unwrap();
        assert!(found.is_none());
        assert!(
            started.elapsed() >= backend.wait,
            "gave up before the bound"
        );
        // v1 and v2 per poll, a poll every 500 ms: three polls within 1.2 s.
        assert!(count.load(Ordering::SeqCst) >= 4, "{count:?}");
        assert_eq!(TRACE_WAIT, Duration::from_secs(15));
    }

    #[tokio::test]
    async fn an_unreachable_or_rejecting_backend_is_named() {
        let backend = Backend::new("http://127.0.0.1:1".to_owned()).unwrap();
        let err = backend.get("/ready", &[]).await.unwrap_err().to_string();
        assert!(
            err.contains("cannot reach the trace backend at http://127.0.0.1:1"),
            "{err}"
        );
        let (url, _) = fake_backend(400, "parse error at 3");
        let err = Backend::new(url)
            .unwrap()
            .search("{ x", 0, 1)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("the backend rejected the query `{ x` (400): parse error at 3"),
            "{err}"
        );
    }
}

#[cfg(test)]
pub(crate) mod fixtures {
    use super::*;

    pub const CHECKOUT_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    pub const CHECKOUT_PARENT: &str = "00f067aa0ba902b7";

    /// A checkout sent with `traceparent: 00-4bf9…-00f067aa0ba902b7-01` through a fleet
    /// started with `OTEL_RESOURCE_ATTRIBUTES=deployment.environment.name=course`, as the
    /// desk answered `/api/traces/ID`.
    pub fn checkout_trace() -> Value {
        serde_json::from_str(include_str!("fixtures/checkout.json")).unwrap()
    }

    /// A declined checkout (402), from the same fleet.
    pub fn declined() -> Value {
        serde_json::from_str(include_str!("fixtures/declined.json")).unwrap()
    }

    /// Applies `f` to every span object of a v1 answer.
    pub fn edit_spans(mut json: Value, f: impl Fn(&str, &mut Value)) -> Value {
        for batch in json["batches"].as_array_mut().unwrap() {
            let service = batch["resource"]["attributes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|kv| kv["key"] == "service.name")
                .map(|kv| kv["value"]["stringValue"].as_str().unwrap().to_owned())
                .unwrap();
            for scope in batch["scopeSpans"].as_array_mut().unwrap() {
                for span in scope["spans"].as_array_mut().unwrap() {
                    f(&service, span);
                }
            }
        }
        json
    }

    /// Drops the spans of `service` from a v1 answer.
    pub fn without_service(mut json: Value, service: &str) -> Value {
        json["batches"].as_array_mut().unwrap().retain(|b| {
            !b["resource"]["attributes"]
                .as_array()
                .unwrap()
                .iter()
                .any(|kv| kv["key"] == "service.name" && kv["value"]["stringValue"] == service)
        });
        json
    }
}
