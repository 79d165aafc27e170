#![allow(clippy::unwrap_used, clippy::expect_used)]

//! The deploy files describe the same fleet as `fleet::topology`: the same components, the
//! same ports, the same wiring. Read as plain text (their shapes are simple and fixed), so a
//! renamed component or a changed port in any one of them fails here.
//!
//! What each file must contain, stated once:
//! - Dockerfile: one build target per component, named by its `image`, exposing exactly its
//!   listeners' default ports; plus the `fleet` CLI target. No other final image.
//! - Makefile `IMAGES`: the same image names (every component's image plus `fleet`).
//! - deploy/compose.yaml: every component except the desk, built from the Dockerfile target of
//!   its image, publishing exactly its default port and listening on it (`LISTEN_ADDR`). The
//!   desk's place is taken by Tempo (its API port, 3200) and the Collector (its OTLP ports,
//!   4317/4318). Each dependency is wired with the variable the topology names
//!   (`http://NAME:PORT`).
//! - k8s/base: a Deployment and a Service per component except the desk (same stand-ins as in
//!   compose: Tempo and the Collector, in k8s/base/observability), container and service ports
//!   the default ports, the same wiring variables. PostgreSQL is there too; it is not a fleet
//!   component.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use fleet::topology::{COMPONENTS, Component, DESK, DESK_API, DESK_OTLP_GRPC, DESK_OTLP_HTTP};

/// Build stages of the Dockerfile that are not images of their own.
const DOCKER_STAGES: &[&str] = &["chef", "planner", "builder", "healthprobe", "runtime"];
/// Images that are not topology components: the CLI.
const EXTRA_IMAGES: &[&str] = &["fleet"];
/// Compose services and k8s workloads that are not fleet components.
const COMPOSE_OTHERS: &[&str] = &[
    "healthtools",
    "postgres",
    "otel-collector",
    "otel-sampler",
    "tempo",
    "prometheus",
    "grafana",
    "load",
];
const K8S_OTHERS: &[&str] = &["postgres"];
/// The desk is not deployed; these stand in for its listeners (service, port).
fn desk_stand_ins() -> BTreeMap<&'static str, (&'static str, u16)> {
    let desk = fleet::topology::component(DESK).unwrap();
    let port = |label| desk.listener(label).unwrap().default_port;
    BTreeMap::from([
        (DESK_API, ("tempo", port(DESK_API))),
        (DESK_OTLP_GRPC, ("otel-collector", port(DESK_OTLP_GRPC))),
        (DESK_OTLP_HTTP, ("otel-collector", port(DESK_OTLP_HTTP))),
    ])
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn deployed() -> impl Iterator<Item = &'static Component> {
    COMPONENTS.iter().filter(|c| c.name != DESK)
}

fn ports_of(c: &Component) -> BTreeSet<u16> {
    c.listeners.iter().map(|l| l.default_port).collect()
}

fn image_names() -> BTreeSet<String> {
    COMPONENTS
        .iter()
        .map(|c| c.image.to_owned())
        .chain(EXTRA_IMAGES.iter().map(|s| (*s).to_owned()))
        .collect()
}

/// The Dockerfile's final images: target name -> EXPOSEd ports.
fn dockerfile_targets(text: &str) -> BTreeMap<String, BTreeSet<u16>> {
    let mut targets: BTreeMap<String, BTreeSet<u16>> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["FROM", _, as_, name] if as_.eq_ignore_ascii_case("as") => {
                current = (!DOCKER_STAGES.contains(name)).then(|| (*name).to_owned());
                if let Some(name) = &current {
                    targets.entry(name.clone()).or_default();
                }
            }
            ["EXPOSE", ports @ ..] => {
                if let Some(name) = &current {
                    let set = targets.entry(name.clone()).or_default();
                    set.extend(ports.iter().map(|p| p.parse::<u16>().expect(line)));
                }
            }
            _ => {}
        }
    }
    targets
}

#[test]
fn dockerfile_builds_one_image_per_component_with_its_ports() {
    let targets = dockerfile_targets(&read("Dockerfile"));
    let names: BTreeSet<String> = targets.keys().cloned().collect();
    assert_eq!(names, image_names(), "Dockerfile targets vs the topology");
    for c in COMPONENTS {
        assert_eq!(
            targets[c.image],
            ports_of(c),
            "Dockerfile target {} EXPOSEs other ports than {}'s listeners",
            c.image,
            c.name
        );
    }
}

#[test]
fn makefile_images_are_the_components_images() {
    let text = read("Makefile");
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("IMAGES :="))
        .expect("an `IMAGES :=` line in the Makefile");
    let images: BTreeSet<String> = line.split_whitespace().map(str::to_owned).collect();
    assert_eq!(images, image_names(), "Makefile IMAGES vs the topology");
}

/// One compose service, as far as this test reads it.
#[derive(Default, Debug)]
struct ComposeService {
    target: Option<String>,
    /// Container side of each published port.
    ports: BTreeSet<u16>,
    environment: BTreeMap<String, String>,
}

fn compose_services(text: &str) -> BTreeMap<String, ComposeService> {
    let mut services: BTreeMap<String, ComposeService> = BTreeMap::new();
    let mut in_services = false;
    let mut current: Option<String> = None;
    let mut section = "";
    for line in text.lines() {
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        let trimmed = line.trim();
        if indent == 0 {
            in_services = trimmed == "services:";
            current = None;
            continue;
        }
        if !in_services {
            continue;
        }
        if indent == 2 {
            let name = trimmed.trim_end_matches(':').to_owned();
            services.entry(name.clone()).or_default();
            current = Some(name);
            section = "";
            continue;
        }
        let Some(name) = &current else { continue };
        let service = services.get_mut(name).unwrap();
        if indent == 4 {
            section = match trimmed {
                "ports:" => "ports",
                "environment:" => "environment",
                "build:" => "build",
                _ => "",
            };
            continue;
        }
        match section {
            "ports" => {
                let entry = trimmed.trim_start_matches("- ").trim_matches('"');
                let container = entry.rsplit(':').next().unwrap();
                service
                    .ports
                    .insert(container.parse().unwrap_or_else(|_| panic!("{line}")));
            }
            "environment" => {
                if let Some((k, v)) = trimmed.split_once(':') {
                    service
                        .environment
                        .insert(k.trim().to_owned(), v.trim().to_owned());
                }
            }
            "build" => {
                if let Some(t) = trimmed.strip_prefix("target:") {
                    service.target = Some(t.trim().to_owned());
                }
            }
            _ => {}
        }
    }
    services
}

/// `http://NAME:PORT` for the component a caller finds through `caller_env`.
fn wiring(dep: &Component) -> String {
    format!("http://{}:{}", dep.name, dep.default_port())
}

#[test]
fn compose_runs_every_component_but_the_desk_on_its_ports() {
    let services = compose_services(&read("deploy/compose.yaml"));
    let fleet_services: BTreeSet<&str> = services
        .keys()
        .map(String::as_str)
        .filter(|s| !COMPOSE_OTHERS.contains(s))
        .collect();
    let expected: BTreeSet<&str> = deployed().map(|c| c.name).collect();
    assert_eq!(fleet_services, expected, "compose services vs the topology");
    for c in deployed() {
        let s = &services[c.name];
        assert_eq!(
            s.target.as_deref(),
            Some(c.image),
            "{}: build target",
            c.name
        );
        assert_eq!(s.ports, ports_of(c), "{}: published ports", c.name);
        let listen = c.main_listener();
        assert_eq!(
            s.environment.get(listen.listen_env).map(String::as_str),
            Some(format!("0.0.0.0:{}", listen.default_port).as_str()),
            "{}: {}",
            c.name,
            listen.listen_env
        );
        for dep in c.depends_on.iter().filter(|d| **d != DESK) {
            let dep = fleet::topology::component(dep).unwrap();
            assert_eq!(
                s.environment.get(dep.caller_env),
                Some(&wiring(dep)),
                "{} finds {} through {}",
                c.name,
                dep.name,
                dep.caller_env
            );
        }
    }
    for (label, (service, port)) in desk_stand_ins() {
        assert!(
            services
                .get(service)
                .is_some_and(|s| s.ports.contains(&port)),
            "the desk's {label} port {port} is {service}'s in compose"
        );
    }
}

/// One Kubernetes object: kind, name, ports (containerPort for workloads, port for
/// Services) and `- name: X` / `value: Y` env pairs.
#[derive(Debug)]
struct K8sObject {
    kind: String,
    name: String,
    ports: BTreeSet<u16>,
    env: BTreeMap<String, String>,
}

fn k8s_objects(text: &str) -> Vec<K8sObject> {
    let mut objects = Vec::new();
    for doc in text.split("\n---") {
        let lines: Vec<&str> = doc.lines().collect();
        let Some(kind) = lines.iter().find_map(|l| l.strip_prefix("kind: ")) else {
            continue;
        };
        let name = lines
            .iter()
            .skip_while(|l| !l.starts_with("metadata:"))
            .find_map(|l| l.strip_prefix("  name: "))
            .expect("metadata.name")
            .trim()
            .to_owned();
        let key = if kind.trim() == "Service" {
            "port:"
        } else {
            "containerPort:"
        };
        let ports = lines
            .iter()
            .filter_map(|l| l.trim().trim_start_matches("- ").strip_prefix(key))
            .filter_map(|p| p.trim().parse().ok())
            .collect();
        let mut env = BTreeMap::new();
        for pair in lines.windows(2) {
            if let (Some(k), Some(v)) = (
                pair[0].trim().strip_prefix("- name: "),
                pair[1].trim().strip_prefix("value: "),
            ) {
                env.insert(k.trim().to_owned(), v.trim().to_owned());
            }
        }
        objects.push(K8sObject {
            kind: kind.trim().to_owned(),
            name,
            ports,
            env,
        });
    }
    objects
}

/// The files a kustomization lists under `resources:` (only `.yaml` files, not folders).
fn kustomize_resources(dir: &str) -> Vec<String> {
    read(&format!("{dir}/kustomization.yaml"))
        .lines()
        .skip_while(|l| !l.starts_with("resources:"))
        .skip(1)
        .take_while(|l| l.starts_with("  ") || l.trim().is_empty())
        .filter_map(|l| l.trim().strip_prefix("- "))
        .filter(|f| f.ends_with(".yaml"))
        .map(|f| format!("{dir}/{f}"))
        .collect()
}

#[test]
fn kustomize_base_deploys_every_component_but_the_desk_on_its_ports() {
    let objects: Vec<K8sObject> = kustomize_resources("k8s/base/fleet")
        .iter()
        .flat_map(|f| k8s_objects(&read(f)))
        .collect();
    let named = |kind: &str| -> BTreeSet<&str> {
        objects
            .iter()
            .filter(|o| o.kind == kind && !K8S_OTHERS.contains(&o.name.as_str()))
            .map(|o| o.name.as_str())
            .collect()
    };
    let expected: BTreeSet<&str> = deployed().map(|c| c.name).collect();
    assert_eq!(
        named("Deployment"),
        expected,
        "k8s Deployments vs the topology"
    );
    assert_eq!(named("Service"), expected, "k8s Services vs the topology");
    for c in deployed() {
        let get = |kind: &str| {
            objects
                .iter()
                .find(|o| o.kind == kind && o.name == c.name)
                .unwrap()
        };
        let deployment = get("Deployment");
        assert_eq!(deployment.ports, ports_of(c), "{}: containerPort", c.name);
        assert_eq!(
            get("Service").ports,
            ports_of(c),
            "{}: Service port",
            c.name
        );
        let listen = c.main_listener();
        assert_eq!(
            deployment.env.get(listen.listen_env),
            Some(&format!("0.0.0.0:{}", listen.default_port)),
            "{}: {}",
            c.name,
            listen.listen_env
        );
        for dep in c.depends_on.iter().filter(|d| **d != DESK) {
            let dep = fleet::topology::component(dep).unwrap();
            assert_eq!(
                deployment.env.get(dep.caller_env),
                Some(&wiring(dep)),
                "{} finds {} through {}",
                c.name,
                dep.name,
                dep.caller_env
            );
        }
    }
    let observability: Vec<K8sObject> = kustomize_resources("k8s/base/observability")
        .iter()
        .flat_map(|f| k8s_objects(&read(f)))
        .collect();
    for (label, (service, port)) in desk_stand_ins() {
        assert!(
            observability
                .iter()
                .any(|o| o.kind == "Service" && o.name == service && o.ports.contains(&port)),
            "the desk's {label} port {port} is the {service} Service's in k8s"
        );
    }
}

/// Prometheus scrapes every deployed component's `GET /metrics` on its main port, by the same
/// short name in compose and on Kubernetes (Prometheus's pod searches the fleet namespace).
#[test]
fn prometheus_scrapes_every_component_but_the_desk() {
    let text = read("deploy/config/prometheus/prometheus.yaml");
    let job = text
        .split("- job_name: ")
        .find(|j| j.starts_with("fleet"))
        .expect("prometheus.yaml has a `fleet` job");
    let scraped: BTreeSet<String> = job
        .lines()
        .filter_map(|l| {
            l.trim()
                .strip_prefix("- \"")?
                .strip_suffix('"')
                .map(str::to_owned)
        })
        .collect();
    let expected: BTreeSet<String> = deployed()
        .map(|c| format!("{}:{}", c.name, c.default_port()))
        .collect();
    assert_eq!(scraped, expected, "the `fleet` scrape job's targets");
    let prometheus = read("k8s/base/observability/prometheus.yaml");
    assert!(
        prometheus.contains("- fleet.svc.cluster.local"),
        "Prometheus's pod must search the fleet namespace for the short names"
    );
    // The NetworkPolicies on both sides let the scrape through.
    for (path, policy) in [
        (
            "k8s/base/fleet/networkpolicies.yaml",
            "allow-prometheus-scrape",
        ),
        ("k8s/base/observability/networkpolicies.yaml", "prometheus"),
    ] {
        let text = read(path);
        let block = text
            .split("---")
            .find(|b| b.contains(&format!("  name: {policy}\n")))
            .unwrap_or_else(|| panic!("{path} has NetworkPolicy {policy}"));
        for c in deployed() {
            assert!(
                block.contains(c.name) && block.contains(&format!("port: {}\n", c.default_port())),
                "{path} {policy}: {} on {}",
                c.name,
                c.default_port()
            );
        }
    }
}
