//! `fleet up`: every component as its own process on loopback, started in dependency order,
//! each waited for until ready, all stopped together.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use clap::Args;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use crate::Service;

const READY_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Args, Debug, Clone)]
pub struct UpArgs {
    /// Pick a free port for every component (as if every port flag were 0); the addresses are
    /// printed as `fleet:ready NAME URL` lines. For tests, benchmarks and a second fleet.
    #[arg(long)]
    any_ports: bool,
    /// Address every component listens on.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// api-gateway's HTTP port (0 picks a free one, for this and every port below).
    #[arg(long, default_value_t = 8080)]
    gateway_port: u16,
    #[arg(long, default_value_t = 8081)]
    order_api_port: u16,
    #[arg(long, default_value_t = 50051)]
    payment_api_port: u16,
    #[arg(long, default_value_t = 50052)]
    notification_port: u16,
    #[arg(long, default_value_t = 8090)]
    provider_port: u16,
    /// The trace desk's Tempo-compatible API.
    #[arg(long, default_value_t = 3200)]
    desk_port: u16,
    /// The trace desk's OTLP/gRPC receiver.
    #[arg(long, default_value_t = 4317)]
    otlp_grpc_port: u16,
    /// The trace desk's OTLP/HTTP receiver.
    #[arg(long, default_value_t = 4318)]
    otlp_http_port: u16,
    /// PostgreSQL for order-api; without it order-api uses an embedded SQLite file.
    #[arg(long, env = "DATABASE_URL")]
    database_url: Option<String>,
    /// order-api's SQLite file when there is no database URL.
    #[arg(long, default_value = "fleet-data/orders.sqlite")]
    sqlite_path: String,
}

struct Running {
    name: &'static str,
    child: Child,
    listening: HashMap<String, SocketAddr>,
}

fn env(pairs: &[(&str, String)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

/// Starts `fleet run SERVICE`, relays its output with a name prefix, and returns once it has
/// announced every listener in `labels`.
async fn start(
    service: Service,
    vars: Vec<(String, String)>,
    labels: &[&str],
) -> anyhow::Result<Running> {
    let name = service.name();
    let exe = std::env::current_exe().context("cannot find the fleet executable")?;
    let mut cmd = Command::new(exe);
    cmd.arg("run")
        .arg(name)
        .env("FLEET_ANNOUNCE", "1")
        .env("FLEET_EXIT_WITH_PARENT", "1")
        .envs(vars)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if std::env::var_os("LOG_FORMAT").is_none() {
        cmd.env("LOG_FORMAT", "text");
    }
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start {name}"))?;
    let (tx, mut rx) = mpsc::unbounded_channel::<(String, SocketAddr)>();
    if let Some(stdout) = child.stdout.take() {
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                match parse_announce(&line) {
                    Some(announce) => {
                        let _ = tx.send(announce);
                    }
                    None => println!("{name:>16} | {line}"),
                }
            }
        });
    }
    if let Some(stderr) = child.stderr.take() {
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                eprintln!("{name:>16} | {line}");
            }
        });
    }
    let mut listening = HashMap::new();
    let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
    while labels.iter().any(|l| !listening.contains_key(*l)) {
        tokio::select! {
            msg = rx.recv() => match msg {
                Some((label, addr)) => { listening.insert(label, addr); }
                None => {
                    let status = child.wait().await?;
                    bail!("{name} exited before it was listening ({status})");
                }
            },
            () = tokio::time::sleep_until(deadline) => bail!("{name} did not start listening within {READY_TIMEOUT:?}"),
        }
    }
    Ok(Running {
        name,
        child,
        listening,
    })
}

/// `fleet:listening <label> <addr>`, as printed by `fleet_server_kit::bind` and the desk.
fn parse_announce(line: &str) -> Option<(String, SocketAddr)> {
    let rest = line.strip_prefix("fleet:listening ")?;
    let (label, addr) = rest.split_once(' ')?;
    Some((label.to_owned(), addr.trim().parse().ok()?))
}

async fn wait_ready(running: &mut Running, url: &str) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    let started = Instant::now();
    loop {
        if let Some(status) = running.child.try_wait()? {
            bail!("{} exited while starting ({status})", running.name);
        }
        if let Ok(r) = client.get(url).send().await
            && r.status().is_success()
        {
            return Ok(());
        }
        if started.elapsed() > READY_TIMEOUT {
            bail!(
                "{} was not ready at {url} within {READY_TIMEOUT:?}",
                running.name
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn addr(running: &Running, label: &str) -> anyhow::Result<SocketAddr> {
    running
        .listening
        .get(label)
        .copied()
        .ok_or_else(|| anyhow!("{} did not announce {label}", running.name))
}

async fn stop_all(started: &mut [Running]) {
    // Front door first, so nothing new arrives while the back ends drain.
    for running in started.iter_mut().rev() {
        if let Some(id) = running.child.id() {
            let _ = kill(Pid::from_raw(id as i32), Signal::SIGTERM);
        }
        match tokio::time::timeout(STOP_TIMEOUT, running.child.wait()).await {
            Ok(_) => {}
            Err(_) => {
                eprintln!(
                    "{} did not stop within {STOP_TIMEOUT:?}; killing it",
                    running.name
                );
                let _ = running.child.kill().await;
            }
        }
    }
}

pub async fn up(mut args: UpArgs) -> anyhow::Result<()> {
    if args.any_ports {
        for port in [
            &mut args.gateway_port,
            &mut args.order_api_port,
            &mut args.payment_api_port,
            &mut args.notification_port,
            &mut args.provider_port,
            &mut args.desk_port,
            &mut args.otlp_grpc_port,
            &mut args.otlp_http_port,
        ] {
            *port = 0;
        }
    }
    let mut started: Vec<Running> = Vec::new();
    let result = start_everything(&args, &mut started).await;
    let outcome = match result {
        Ok(()) => watch(&mut started).await,
        Err(e) => Err(e),
    };
    stop_all(&mut started).await;
    println!("fleet:stopped");
    outcome
}

/// Waits for Ctrl-C/SIGTERM, or for a component to die (then everything stops).
async fn watch(started: &mut [Running]) -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            _ = term.recv() => return Ok(()),
            () = tokio::time::sleep(Duration::from_millis(250)) => {
                for running in started.iter_mut() {
                    if let Some(status) = running.child.try_wait()? {
                        bail!("{} exited unexpectedly ({status}); stopping the fleet", running.name);
                    }
                }
            }
        }
    }
}

async fn start_everything(args: &UpArgs, started: &mut Vec<Running>) -> anyhow::Result<()> {
    let host = &args.host;
    let at = |port: u16| format!("{host}:{port}");

    // Telemetry goes to the desk unless the caller points it elsewhere (a Collector, Tempo).
    let mut otel: Vec<(&str, String)> = Vec::new();
    let external = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT")
        .ok()
        .filter(|v| !v.is_empty());
    let mut desk_api = None;
    if external.is_none() {
        let mut desk = start(
            Service::Desk,
            env(&[
                ("DESK_API_ADDR", at(args.desk_port)),
                ("DESK_OTLP_GRPC_ADDR", at(args.otlp_grpc_port)),
                ("DESK_OTLP_HTTP_ADDR", at(args.otlp_http_port)),
            ]),
            &["api", "otlp-grpc", "otlp-http"],
        )
        .await?;
        let api = addr(&desk, "api")?;
        wait_ready(&mut desk, &format!("http://{api}/ready")).await?;
        let grpc = std::env::var("OTEL_EXPORTER_OTLP_PROTOCOL").is_ok_and(|p| p.trim() == "grpc");
        let endpoint = if grpc {
            addr(&desk, "otlp-grpc")?
        } else {
            addr(&desk, "otlp-http")?
        };
        otel.push(("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{endpoint}")));
        desk_api = Some(api);
        started.push(desk);
    }
    if std::env::var_os("OTEL_BSP_SCHEDULE_DELAY").is_none() {
        // Traces reach the desk within a second instead of the SDK's default five.
        otel.push(("OTEL_BSP_SCHEDULE_DELAY", "1000".into()));
    }
    let with = |service: &str, extra: &[(&str, String)]| {
        let mut vars = env(&otel);
        vars.push(("OTEL_SERVICE_NAME".into(), service.to_owned()));
        vars.extend(env(extra));
        vars
    };

    let mut provider = start(
        Service::PaymentProvider,
        with(
            "payment-provider",
            &[("LISTEN_ADDR", at(args.provider_port))],
        ),
        &["payment-provider"],
    )
    .await?;
    let provider_addr = addr(&provider, "payment-provider")?;
    wait_ready(&mut provider, &format!("http://{provider_addr}/readyz")).await?;
    started.push(provider);

    let mut payment = start(
        Service::PaymentApi,
        with(
            "payment-api",
            &[
                ("LISTEN_ADDR", at(args.payment_api_port)),
                ("PAYMENT_PROVIDER_URL", format!("http://{provider_addr}")),
            ],
        ),
        &["payment-api"],
    )
    .await?;
    let payment_addr = addr(&payment, "payment-api")?;
    wait_ready(&mut payment, &format!("http://{payment_addr}/readyz")).await?;
    started.push(payment);

    let mut notification = start(
        Service::Notification,
        with(
            "notification",
            &[("LISTEN_ADDR", at(args.notification_port))],
        ),
        &["notification"],
    )
    .await?;
    let notification_addr = addr(&notification, "notification")?;
    wait_ready(
        &mut notification,
        &format!("http://{notification_addr}/readyz"),
    )
    .await?;
    started.push(notification);

    let mut order_vars = vec![
        ("LISTEN_ADDR", at(args.order_api_port)),
        ("PAYMENT_API_ADDR", format!("http://{payment_addr}")),
    ];
    match &args.database_url {
        Some(url) => order_vars.push(("DATABASE_URL", url.clone())),
        None => order_vars.push(("SQLITE_PATH", args.sqlite_path.clone())),
    }
    let mut orders = start(
        Service::OrderApi,
        with("order-api", &order_vars),
        &["order-api"],
    )
    .await?;
    let order_addr = addr(&orders, "order-api")?;
    wait_ready(&mut orders, &format!("http://{order_addr}/readyz")).await?;
    started.push(orders);

    let mut gateway = start(
        Service::ApiGateway,
        with(
            "api-gateway",
            &[
                ("LISTEN_ADDR", at(args.gateway_port)),
                ("ORDER_API_URL", format!("http://{order_addr}")),
                ("NOTIFICATION_ADDR", format!("http://{notification_addr}")),
            ],
        ),
        &["api-gateway"],
    )
    .await?;
    let gateway_addr = addr(&gateway, "api-gateway")?;
    wait_ready(&mut gateway, &format!("http://{gateway_addr}/readyz")).await?;
    started.push(gateway);

    // Machine-readable lines first (tests and scripts read them), then the human summary.
    println!("fleet:ready api-gateway http://{gateway_addr}");
    println!("fleet:ready order-api http://{order_addr}");
    println!("fleet:ready payment-api http://{payment_addr}");
    println!("fleet:ready notification http://{notification_addr}");
    println!("fleet:ready payment-provider http://{provider_addr}");
    if let Some(api) = desk_api {
        println!("fleet:ready desk http://{api}");
    }
    let database = match &args.database_url {
        Some(_) => "PostgreSQL (DATABASE_URL)".to_owned(),
        None => format!("SQLite file {}", args.sqlite_path),
    };
    println!();
    println!("The fleet is up:");
    println!(
        "  api-gateway       http://{gateway_addr}   POST /checkout, GET /orders/{{id}}, GET /products"
    );
    println!("  order-api         http://{order_addr}   {database}");
    println!("  payment-api       grpc://{payment_addr}   payment.v1.PaymentService");
    println!(
        "  notification      grpc://{notification_addr}   notification.v1.NotificationService, GET /outbox"
    );
    println!(
        "  payment-provider  http://{provider_addr}   the external provider (sends no telemetry)"
    );
    match (desk_api, &external) {
        (Some(api), _) => {
            println!(
                "  trace desk        http://{api}   web UI and Tempo API; traces arrive over OTLP"
            )
        }
        (None, Some(endpoint)) => {
            println!("  telemetry         {endpoint}   (OTEL_EXPORTER_OTLP_ENDPOINT)")
        }
        (None, None) => {}
    }
    println!();
    println!("Place an order:");
    println!(
        "  curl -si http://{gateway_addr}/checkout -H 'content-type: application/json' \\\n    -d '{{\"customer_email\":\"ada@example.com\",\"items\":[{{\"sku\":\"COFFEE-250G\",\"quantity\":2}}],\"card_number\":\"4242424242424242\"}}'"
    );
    if let Some(api) = desk_api {
        println!("Then read its trace (the x-trace-id header):");
        println!(
            "  open http://{api}/trace/TRACE_ID   or   fleet trace TRACE_ID --tempo http://{api}"
        );
        println!("Break it on purpose: fleet scenario list; fleet quiz start");
    }
    println!("Ctrl-C stops everything.");
    println!("fleet:up");
    Ok(())
}
