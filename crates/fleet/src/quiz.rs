//! `fleet quiz`: a hidden fault, some traffic, and one question — which service and which
//! operation is to blame? `fleet quiz answer SERVICE OPERATION` checks, and shows the evidence.

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use rand::seq::IndexedRandom as _;
use serde::{Deserialize, Serialize};

use crate::scenario::Targets;

/// One puzzle: the fault to arm (hidden), the answer, and the TraceQL that proves it.
struct Puzzle {
    id: &'static str,
    faults: &'static [&'static str],
    service: &'static str,
    operation: &'static str,
    traceql: &'static str,
    explanation: &'static str,
}

const PUZZLES: &[Puzzle] = &[
    Puzzle {
        id: "provider-latency",
        faults: &["payment.provider:latency=700ms,jitter=100ms"],
        service: "payment-api",
        operation: "POST /v1/charges",
        traceql: r#"{ resource.service.name = "payment-api" && kind = client && duration > 500ms }"#,
        explanation: "payment-api's call to the external provider takes ~700 ms; the provider sends no spans, so its client span is the evidence",
    },
    Puzzle {
        id: "slow-insert",
        faults: &["order.db:latency=500ms"],
        service: "order-api",
        operation: "INSERT orders",
        traceql: r#"{ span.db.operation.name = "INSERT" && duration > 300ms }"#,
        explanation: "the INSERT into orders is a slow query (look at its db.query.text)",
    },
    Puzzle {
        id: "locked-table",
        faults: &["order.db.lock:latency=500ms"],
        service: "order-api",
        operation: "INSERT orders",
        traceql: r#"{ span.db.operation.name = "INSERT" && duration > 300ms }"#,
        explanation: "the INSERT waits on a lock another session holds on orders; the query text itself is ordinary",
    },
    Puzzle {
        id: "pool-exhaustion",
        faults: &["order.db.pool:latency=400ms"],
        service: "order-api",
        operation: "sqlx.pool.acquire",
        traceql: r#"{ name = "sqlx.pool.acquire" && duration > 200ms }"#,
        explanation: "requests wait for a database connection: the pool is exhausted",
    },
    Puzzle {
        id: "n-plus-one",
        faults: &["order.lookup:mode=n_plus_one"],
        service: "order-api",
        operation: "SELECT order_items",
        traceql: r#"{ name = "createOrder" } > { name = "SELECT order_items" } | count() > 2"#,
        explanation: "reading an order queries order_items once per item: an N+1",
    },
    Puzzle {
        id: "slow-email",
        faults: &[
            "gateway.notification:mode=sequential",
            "notification.send:latency=500ms",
        ],
        service: "notification",
        operation: "sendEmail",
        traceql: r#"{ name = "sendEmail" && duration > 300ms }"#,
        explanation: "sending the email is slow, and the gateway waits for it before replying",
    },
    Puzzle {
        id: "timeout-cascade",
        faults: &[
            "payment.provider:latency=2500ms",
            "gateway.orders:timeout=1500ms",
        ],
        service: "payment-api",
        operation: "POST /v1/charges",
        traceql: r#"{ name = "POST /checkout" && span.http.response.status_code = 504 }"#,
        explanation: "the provider takes 2.5 s; the gateway gives up on order-api after 1.5 s (504) while the charge runs on: blame the slow dependency, then fix the timeouts",
    },
    Puzzle {
        id: "broken-propagation",
        faults: &["order.payment:mode=drop_context"],
        service: "order-api",
        operation: "payment.v1.PaymentService/Charge",
        traceql: r#"{ trace:rootService = "payment-api" }"#,
        explanation: "order-api calls payment-api without the trace context: payment-api's spans start traces of their own",
    },
    Puzzle {
        id: "charge-errors",
        faults: &["payment.charge:error=503,p=0.5"],
        service: "payment-api",
        operation: "payment.v1.PaymentService/Charge",
        traceql: r#"{ resource.service.name = "payment-api" && status = error }"#,
        explanation: "payment-api fails half of its charges with UNAVAILABLE",
    },
];

#[derive(Args, Debug, Clone)]
pub struct QuizArgs {
    #[command(subcommand)]
    action: Action,
    #[command(flatten)]
    targets: Targets,
    /// The desk (or Tempo) to read evidence from.
    #[arg(
        long,
        global = true,
        env = "FLEET_TEMPO_URL",
        default_value = "http://127.0.0.1:3200"
    )]
    tempo: String,
    /// Where the running quiz is remembered.
    #[arg(
        long,
        global = true,
        env = "FLEET_QUIZ_FILE",
        default_value = "fleet-data/quiz.json"
    )]
    state: PathBuf,
}

#[derive(Subcommand, Debug, Clone)]
enum Action {
    /// Arm a random hidden fault and send traffic.
    Start {
        /// Checkouts to send.
        #[arg(long, default_value_t = 20)]
        requests: usize,
        /// Pick a given puzzle instead of a random one (for workshops and tests).
        #[arg(long)]
        puzzle: Option<String>,
    },
    /// Name the culprit: SERVICE OPERATION (span name), e.g. `order-api "INSERT orders"`.
    Answer { service: String, operation: String },
    /// Give up: show the answer and the evidence.
    Reveal,
}

#[derive(Serialize, Deserialize)]
struct State {
    puzzle: String,
    started_unix: u64,
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// What a solved puzzle is reported to: (data dir, puzzle id, seconds it took). The course
/// records it (steps 6 and 9); the quiz itself knows nothing of the course.
pub type OnSolved = fn(&std::path::Path, &str, u64);

pub async fn run(args: QuizArgs, on_solved: OnSolved) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()?;
    match args.action.clone() {
        Action::Start { requests, puzzle } => {
            let puzzle = match puzzle {
                Some(id) => PUZZLES.iter().find(|p| p.id == id).with_context(|| {
                    format!(
                        "no puzzle {id:?}; puzzles: {}",
                        PUZZLES.iter().map(|p| p.id).collect::<Vec<_>>().join(", ")
                    )
                })?,
                None => PUZZLES.choose(&mut rand::rng()).context("no puzzles")?,
            };
            args.targets.clear_all(&client).await?;
            for fault in puzzle.faults {
                args.targets.arm(&client, fault, true).await?;
            }
            if let Some(dir) = args.state.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)?;
            }
            let state = State {
                puzzle: puzzle.id.to_owned(),
                started_unix: now().saturating_sub(5),
            };
            std::fs::write(&args.state, serde_json::to_vec_pretty(&state)?)?;
            let sent = send_checkouts(&args.targets, requests).await?;
            println!("A fault is hidden somewhere in the fleet. {sent} checkouts went through it.");
            println!("Find it from the traces alone:");
            println!("  fleet traces --slowest 5        then  fleet trace <id>");
            println!(
                "  or the desk's UI at {}/",
                args.tempo.trim_end_matches('/')
            );
            println!(
                "Then answer:  fleet quiz answer SERVICE \"OPERATION\"   (the span's service and name)"
            );
        }
        Action::Answer { service, operation } => {
            let (state, puzzle) = load(&args)?;
            let right = service.eq_ignore_ascii_case(puzzle.service)
                && operation.trim().eq_ignore_ascii_case(puzzle.operation);
            if right {
                println!("Correct: {} / {}.", puzzle.service, puzzle.operation);
            } else {
                println!("Not quite: you said {service} / {operation}.");
            }
            if right {
                let took = now().saturating_sub(state.started_unix);
                on_solved(args.targets.data_dir(), puzzle.id, took);
                evidence(&client, &args, &state, puzzle).await;
                args.targets.clear_all(&client).await?;
                let _ = std::fs::remove_file(&args.state);
            } else {
                println!("Look again, or `fleet quiz reveal`.");
                std::process::exit(1);
            }
        }
        Action::Reveal => {
            let (state, puzzle) = load(&args)?;
            println!("The culprit: {} / {}.", puzzle.service, puzzle.operation);
            evidence(&client, &args, &state, puzzle).await;
            args.targets.clear_all(&client).await?;
            let _ = std::fs::remove_file(&args.state);
        }
    }
    Ok(())
}

/// The quiz running per the state file `path`, for the course's capstone (step 10).
pub struct Running {
    pub puzzle: &'static str,
    pub started_unix: u64,
    pub traceql: &'static str,
    service: &'static str,
    operation: &'static str,
}

impl Running {
    pub fn read(path: &std::path::Path) -> anyhow::Result<Running> {
        let bytes = std::fs::read(path).with_context(|| {
            format!(
                "no quiz is running ({} not found): start one with `fleet quiz start`",
                path.display()
            )
        })?;
        let state: State = serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is not a quiz state file", path.display()))?;
        let p = PUZZLES
            .iter()
            .find(|p| p.id == state.puzzle)
            .with_context(|| format!("unknown puzzle {} in {}", state.puzzle, path.display()))?;
        Ok(Running {
            puzzle: p.id,
            started_unix: state.started_unix,
            traceql: p.traceql,
            service: p.service,
            operation: p.operation,
        })
    }

    /// Whether SERVICE / OPERATION names the culprit (as `fleet quiz answer` judges it).
    pub fn is_culprit(&self, service: &str, operation: &str) -> bool {
        service.trim().eq_ignore_ascii_case(self.service)
            && operation.trim().eq_ignore_ascii_case(self.operation)
    }
}

fn load(args: &QuizArgs) -> anyhow::Result<(State, &'static Puzzle)> {
    let bytes = std::fs::read(&args.state).with_context(|| {
        format!(
            "no quiz is running ({} not found): start one with `fleet quiz start`",
            args.state.display()
        )
    })?;
    let state: State = serde_json::from_slice(&bytes)?;
    let puzzle = PUZZLES
        .iter()
        .find(|p| p.id == state.puzzle)
        .with_context(|| {
            format!(
                "unknown puzzle {} in {}",
                state.puzzle,
                args.state.display()
            )
        })?;
    Ok((state, puzzle))
}

/// The explanation, the TraceQL that finds it, and one matching span from the desk.
async fn evidence(client: &reqwest::Client, args: &QuizArgs, state: &State, puzzle: &Puzzle) {
    println!("Why: {}.", puzzle.explanation);
    println!("TraceQL: {}", puzzle.traceql);
    let url = format!("{}/api/search", args.tempo.trim_end_matches('/'));
    let query = [
        ("q", puzzle.traceql.to_owned()),
        ("limit", "5".to_owned()),
        ("start", state.started_unix.to_string()),
        ("end", (now() + 60).to_string()),
    ];
    match client.get(&url).query(&query).send().await {
        Ok(resp) if resp.status().is_success() => {
            let json: serde_json::Value = resp.json().await.unwrap_or_default();
            let traces = json["traces"].as_array().cloned().unwrap_or_default();
            println!("It matches {} trace(s) since the quiz began.", traces.len());
            if let Some(t) = traces.first() {
                let id = format!("{:0>32}", t["traceID"].as_str().unwrap_or_default());
                let span = &t["spanSets"][0]["spans"][0];
                let ms = span["durationNanos"]
                    .as_str()
                    .and_then(|d| d.parse::<f64>().ok())
                    .unwrap_or(0.0)
                    / 1e6;
                println!(
                    "For example trace {id}: span \"{}\" ({ms:.0} ms). See it with: fleet trace {id}",
                    span["name"].as_str().unwrap_or("?")
                );
            }
        }
        Ok(resp) => println!("(the desk answered {} to the query)", resp.status()),
        Err(e) => println!("(could not reach {url}: {e})"),
    }
}

/// `n` checkouts through the gateway's own typed client; returns how many were answered.
async fn send_checkouts(targets: &Targets, n: usize) -> anyhow::Result<usize> {
    use order_api::model::{CreateOrder, OrderItemInput};
    let gateway = api_gateway::client::GatewayClient::new(&targets.gateway_url());
    let skus = [
        "COFFEE-250G",
        "MUG-CERAMIC",
        "FILTER-V60",
        "TEA-SENCHA",
        "DRIPPER-V60",
    ];
    let item = |sku: &str, quantity| OrderItemInput {
        sku: sku.to_owned(),
        quantity,
    };
    for i in 0..n {
        let order = CreateOrder {
            customer_email: format!("learner{i}@example.com"),
            items: vec![
                item(skus[i % skus.len()], 1),
                item(skus[(i + 2) % skus.len()], 2),
            ],
            card_number: "4242424242424242".to_owned(),
        };
        if let Err(e) = gateway.checkout(&order, &[]).await {
            bail!("the gateway is unreachable: {e}");
        }
    }
    Ok(n)
}
