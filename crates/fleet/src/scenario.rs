//! `fleet scenario list|on NAME|off|status`: named, coherent sets of faults across the fleet.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context as _, bail};
use clap::{Arg, ArgMatches, Args, FromArgMatches, Subcommand};

use crate::supervisor::FleetState;
use crate::topology;

/// One scenario: the faults it arms (per fault-point grammar), and what a learner should find.
pub struct Scenario {
    pub name: &'static str,
    pub breaks: &'static str,
    /// Each fault in the `FLEET_FAULTS` grammar; sent to the service that owns its point.
    pub faults: &'static [&'static str],
    pub waterfall: &'static str,
    pub traceql: &'static str,
}

pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "slow-payment",
        breaks: "the payment provider answers in about a second",
        faults: &["payment.provider:latency=800ms,jitter=200ms"],
        waterfall: "POST /v1/charges under stripe-sdk.request fills most of the checkout",
        traceql: r#"{ resource.service.name = "payment-api" && kind = client && duration > 500ms }"#,
    },
    Scenario {
        name: "slow-database",
        breaks: "INSERT orders becomes a slow query (pg_sleep inside the statement on PostgreSQL)",
        faults: &["order.db:latency=600ms"],
        waterfall: "INSERT orders under createOrder is the long bar; its db.query.text shows why",
        traceql: r#"{ span.db.operation.name = "INSERT" && duration > 300ms }"#,
    },
    Scenario {
        name: "n-plus-one",
        breaks: "reading an order fetches each item with its own query",
        faults: &["order.lookup:mode=n_plus_one"],
        waterfall: "a staircase of identical SELECT order_items spans, one per line item",
        traceql: r#"{ name = "createOrder" } > { span.db.collection.name = "order_items" && span.db.operation.name = "SELECT" } | count() > 2"#,
    },
    Scenario {
        name: "sequential-calls",
        breaks: "the gateway waits for a slow confirmation email before it replies",
        faults: &[
            "gateway.notification:mode=sequential",
            "notification.send:latency=400ms",
        ],
        waterfall: "the SendEmail spans now sit inside POST /checkout and stretch it",
        traceql: r#"{ name = "POST /checkout" && duration > 400ms } >> { name = "sendEmail" }"#,
    },
    Scenario {
        name: "retry-storm",
        breaks: "the provider fails most calls and payment-api retries with backoff",
        faults: &[
            "payment.provider:error=503,p=0.6",
            "payment.retry:mode=retry,retries=4,backoff=50ms",
        ],
        waterfall: "several POST /v1/charges attempts under one stripe-sdk.request, the failed ones red, gaps of growing backoff",
        traceql: r#"{ name = "stripe-sdk.request" } > { span.http.request.resend_count > 0 }"#,
    },
    Scenario {
        name: "timeout-cascade",
        breaks: "the gateway gives up on order-api before order-api gives up on payment",
        faults: &[
            "payment.provider:latency=2500ms",
            "gateway.orders:timeout=1500ms",
        ],
        waterfall: "POST /checkout ends 504 at 1.5 s while order-api's spans run on past it and the order still gets paid",
        traceql: r#"{ name = "POST /checkout" && span.http.response.status_code = 504 }"#,
    },
    Scenario {
        name: "pool-exhaustion",
        breaks: "database connections are held elsewhere, so requests queue for one",
        faults: &["order.db.pool:latency=500ms,p=0.5"],
        waterfall: "sqlx.pool.acquire before INSERT orders grows to hundreds of milliseconds",
        traceql: r#"{ name = "sqlx.pool.acquire" && duration > 100ms }"#,
    },
    Scenario {
        name: "broken-propagation",
        breaks: "order-api stops sending traceparent to payment-api",
        faults: &["order.payment:mode=drop_context"],
        waterfall: "the checkout trace ends at order-api's Charge CLIENT span; payment-api's spans form a second trace of their own",
        traceql: r#"{ trace:rootService = "payment-api" }"#,
    },
    Scenario {
        name: "error-burst",
        breaks: "payment-api fails half of its charges with INTERNAL",
        faults: &["payment.charge:error=500,p=0.5"],
        waterfall: "red Charge spans (INTERNAL) in payment-api; the checkout answers 502",
        traceql: r#"{ status = error && resource.service.name = "payment-api" }"#,
    },
    Scenario {
        name: "noisy-neighbour",
        breaks: "another session keeps locking the orders table",
        faults: &["order.db.lock:latency=400ms,p=0.5"],
        waterfall: "INSERT orders waits on the lock: long, yet its query text is the ordinary one",
        traceql: r#"{ span.db.operation.name = "INSERT" && duration > 200ms }"#,
    },
    Scenario {
        name: "overloaded-orders",
        breaks: "order-api serves at most two orders at once while each waits on a slow provider, and refuses the rest at once (load shedding)",
        faults: &[
            "order.shed:max_in_flight=2",
            "payment.provider:latency=300ms",
        ],
        waterfall: "a short red POST /orders SERVER span in order-api with no children (503, error.type=overloaded, Retry-After) under the gateway's red POST /checkout",
        traceql: r#"{ name = "POST /checkout" && status = error } >> { span.error.type = "overloaded" }"#,
    },
];

#[derive(Args, Debug, Clone)]
pub struct ScenarioArgs {
    #[command(subcommand)]
    action: Action,
    #[command(flatten)]
    targets: Targets,
}

#[derive(Subcommand, Debug, Clone)]
enum Action {
    /// The scenarios, what each breaks and the TraceQL that finds it.
    List,
    /// Turn one scenario on (any other is turned off first).
    On { name: String },
    /// Turn every fault off.
    Off,
    /// What is armed on each service.
    Status,
}

/// Where each service's `/admin/faults` lives: one `--NAME URL` flag (or `FLEET_…_URL`
/// variable) per component of the topology with an admin API, defaulting to `fleet up`'s
/// default port; the token from `--token`/`FLEET_ADMIN_TOKEN`, else the one `fleet up` wrote
/// into its data dir.
#[derive(Debug, Clone)]
pub struct Targets {
    urls: BTreeMap<&'static str, String>,
    token: Option<String>,
    data_dir: PathBuf,
}

const TOKEN: &str = "token";
const DATA_DIR: &str = "data-dir";

impl FromArgMatches for Targets {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let mut targets = Targets {
            urls: BTreeMap::new(),
            token: None,
            data_dir: PathBuf::from("fleet-data"),
        };
        targets.update_from_arg_matches(matches)?;
        Ok(targets)
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        for (c, admin) in topology::admin_targets() {
            if let Some(url) = matches.get_one::<String>(admin.flag) {
                self.urls.insert(c.name, url.clone());
            }
        }
        if let Some(token) = matches.get_one::<String>(TOKEN) {
            self.token = Some(token.clone());
        }
        if let Some(dir) = matches.get_one::<PathBuf>(DATA_DIR) {
            self.data_dir = dir.clone();
        }
        Ok(())
    }
}

impl Args for Targets {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        let cmd = topology::admin_targets().fold(cmd, |cmd, (c, admin)| {
            cmd.arg(
                Arg::new(admin.flag)
                    .long(admin.flag)
                    .global(true)
                    .env(admin.env)
                    .value_name("URL")
                    .help(format!(
                        "{}'s base URL (default http://127.0.0.1:{})",
                        c.name,
                        c.default_port()
                    )),
            )
        });
        cmd.arg(
            Arg::new(TOKEN)
                .long(TOKEN)
                .global(true)
                .env("FLEET_ADMIN_TOKEN")
                .hide_env_values(true)
                .value_name("TOKEN")
                .help("Bearer token for /admin/faults (default: the one `fleet up` wrote to DATA_DIR/admin-token)"),
        )
        .arg(
            Arg::new(DATA_DIR)
                .long(DATA_DIR)
                .global(true)
                .env("FLEET_DATA_DIR")
                .value_name("DIR")
                .value_parser(clap::value_parser!(PathBuf))
                .default_value("fleet-data")
                .help("`fleet up`'s data dir (its admin token and state file)"),
        )
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_args(cmd)
    }
}

impl Targets {
    /// `fleet up`'s data dir (admin token, state file, the course's progress).
    pub fn data_dir(&self) -> &std::path::Path {
        &self.data_dir
    }

    pub fn gateway_url(&self) -> String {
        self.url_of(topology::GATEWAY)
            .unwrap_or_default()
            .trim_end_matches('/')
            .to_owned()
    }

    /// The token to send: given, or the one the running `fleet up` generated.
    fn token(&self) -> Option<String> {
        self.token.clone().or_else(|| {
            std::fs::read_to_string(crate::supervisor::token_path(&self.data_dir))
                .ok()
                .map(|t| t.trim().to_owned())
                .filter(|t| !t.is_empty())
        })
    }

    /// Arms one fault (grammar) on the service that owns its point.
    pub async fn arm(
        &self,
        client: &reqwest::Client,
        fault: &str,
        quiz: bool,
    ) -> anyhow::Result<()> {
        let service = owner(fault)?;
        let current = admin(client, self, reqwest::Method::GET, service, None).await?;
        let mut text: Vec<String> = current["faults"]
            .as_object()
            .map(|m| {
                m.iter()
                    .filter_map(|(p, spec)| spec_to_grammar(p, spec))
                    .collect()
            })
            .unwrap_or_default();
        text.push(fault.to_owned());
        let path = if quiz { "?quiz=true" } else { "" };
        admin_at(
            client,
            self,
            reqwest::Method::PUT,
            service,
            path,
            Some(text.join(";")),
        )
        .await?;
        Ok(())
    }

    pub async fn clear_all(&self, client: &reqwest::Client) -> anyhow::Result<()> {
        for service in self.services() {
            admin(client, self, reqwest::Method::DELETE, service, None).await?;
        }
        Ok(())
    }

    /// The components `fleet scenario` talks to, in topology order.
    fn services(&self) -> Vec<&'static str> {
        topology::admin_targets().map(|(c, _)| c.name).collect()
    }

    fn url_of(&self, service: &str) -> anyhow::Result<String> {
        let component = topology::component(service)
            .filter(|c| c.admin.is_some())
            .with_context(|| format!("no admin API on {service}"))?;
        Ok(self
            .urls
            .get(component.name)
            .cloned()
            .unwrap_or_else(|| format!("http://127.0.0.1:{}", component.default_port())))
    }
}

fn owner(fault: &str) -> anyhow::Result<&'static str> {
    let point = fault.split(':').next().unwrap_or_default();
    crate::topology::fault_point_owner(point)
        .map(|c| c.name)
        .with_context(|| format!("unknown fault point in {fault}"))
}

/// A fault as `GET /admin/faults` lists it, back in the grammar.
fn spec_to_grammar(point: &str, spec: &serde_json::Value) -> Option<String> {
    let map = spec.as_object()?;
    let settings: Vec<String> = map
        .iter()
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => format!("{k}={s}"),
            other => format!("{k}={other}"),
        })
        .collect();
    Some(format!("{point}:{}", settings.join(",")))
}

async fn admin(
    client: &reqwest::Client,
    targets: &Targets,
    method: reqwest::Method,
    service: &str,
    body: Option<String>,
) -> anyhow::Result<serde_json::Value> {
    admin_at(client, targets, method, service, "", body).await
}

async fn admin_at(
    client: &reqwest::Client,
    targets: &Targets,
    method: reqwest::Method,
    service: &str,
    query: &str,
    body: Option<String>,
) -> anyhow::Result<serde_json::Value> {
    let url = format!(
        "{}/admin/faults{query}",
        targets.url_of(service)?.trim_end_matches('/')
    );
    let mut req = client.request(method, &url);
    if let Some(token) = targets.token() {
        req = req.bearer_auth(token);
    }
    if let Some(body) = body {
        req = req.header("content-type", "text/plain").body(body);
    }
    let resp = req
        .send()
        .await
        .with_context(|| format!("{service} at {url} is unreachable"))?;
    let status = resp.status();
    let json: serde_json::Value = resp.json().await.unwrap_or_default();
    if !status.is_success() {
        bail!(
            "{service} refused ({status}): {}",
            json["error"]["message"].as_str().unwrap_or("no message")
        );
    }
    Ok(json)
}

pub async fn run(args: ScenarioArgs) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(5))
        .build()?;
    let targets = &args.targets;
    match args.action {
        Action::List => {
            for s in SCENARIOS {
                println!("{:<20} {}", s.name, s.breaks);
                println!("{:<20} see:     {}", "", s.waterfall);
                println!("{:<20} TraceQL: {}", "", s.traceql);
                println!();
            }
        }
        Action::Off => {
            targets.clear_all(&client).await?;
            println!("all faults off");
        }
        Action::On { name } => {
            let scenario = SCENARIOS.iter().find(|s| s.name == name).with_context(|| {
                format!(
                    "no scenario {name:?}; try one of: {}",
                    SCENARIOS
                        .iter()
                        .map(|s| s.name)
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })?;
            let mut per_service: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
            for fault in scenario.faults {
                per_service.entry(owner(fault)?).or_default().push(fault);
            }
            for service in targets.services() {
                match per_service.get(service) {
                    Some(faults) => {
                        admin(
                            &client,
                            targets,
                            reqwest::Method::PUT,
                            service,
                            Some(faults.join(";")),
                        )
                        .await?;
                    }
                    None => {
                        admin(&client, targets, reqwest::Method::DELETE, service, None).await?;
                    }
                }
            }
            println!("{} is on: {}", scenario.name, scenario.breaks);
            println!("look for: {}", scenario.waterfall);
            println!("TraceQL:  {}", scenario.traceql);
        }
        Action::Status => {
            for service in targets.services() {
                let json = admin(&client, targets, reqwest::Method::GET, service, None).await?;
                let faults = json["faults"].as_object().cloned().unwrap_or_default();
                if faults.is_empty() {
                    println!("{service:<18} healthy");
                }
                for (point, spec) in faults {
                    println!("{service:<18} {point} {spec}");
                }
            }
            // What the supervisor saw (when `fleet up` runs with this data dir).
            // (A state file left by a `fleet up` that was SIGKILLed names a pid that is gone.)
            if let Some(state) = FleetState::read(&targets.data_dir).filter(|s| {
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(s.pid as i32), None).is_ok()
            }) {
                println!();
                println!("fleet up (pid {}):", state.pid);
                for c in state.components {
                    let pid = c
                        .pid
                        .map_or("restarting".to_owned(), |p| format!("pid {p}"));
                    println!(
                        "{:<18} {pid:<12} restarts {:<3} {}",
                        c.name, c.restarts, c.url
                    );
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scenario_parses_and_names_points_that_exist() {
        assert_eq!(SCENARIOS.len(), 11);
        for s in SCENARIOS {
            for fault in s.faults {
                let parsed =
                    fleet_faults::parse_faults(fault).unwrap_or_else(|e| panic!("{}: {e}", s.name));
                assert_eq!(parsed.len(), 1);
                owner(fault).unwrap();
            }
        }
    }
}
