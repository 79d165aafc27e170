#![allow(clippy::unwrap_used, clippy::expect_used)]

//! The layering rule of docs/architecture.md, checked against what Cargo and the source say:
//! services depend on kit crates (`crates/`), never sideways on another service's server; kit
//! crates never depend on services; no module imports form a cycle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// The binaries that assemble the fleet: the only crates under `crates/` allowed to name services.
const ASSEMBLERS: &[&str] = &["fleet", "fleet-bench"];

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn cargo() -> Command {
    let mut command = Command::new(env!("CARGO"));
    command.current_dir(workspace_root());
    command
}

fn metadata() -> Value {
    let out = cargo()
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("cargo metadata prints JSON")
}

struct Package {
    name: String,
    dir: PathBuf,
    deps: Vec<Value>,
}

fn packages() -> Vec<Package> {
    let meta = metadata();
    meta["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .map(|p| Package {
            name: p["name"].as_str().expect("name").to_owned(),
            dir: Path::new(p["manifest_path"].as_str().expect("manifest_path"))
                .parent()
                .expect("manifest dir")
                .to_path_buf(),
            deps: p["dependencies"].as_array().cloned().unwrap_or_default(),
        })
        .collect()
}

fn layer(dir: &Path) -> &'static str {
    let parent = dir
        .parent()
        .and_then(Path::file_name)
        .and_then(|n| n.to_str());
    match parent {
        Some("services") => "services",
        Some("crates") => "crates",
        other => panic!(
            "package at {} is in neither services/ nor crates/ ({other:?})",
            dir.display()
        ),
    }
}

#[test]
fn kit_crates_never_depend_on_services_and_services_only_use_each_others_clients() {
    let packages = packages();
    let services: BTreeSet<&str> = packages
        .iter()
        .filter(|p| layer(&p.dir) == "services")
        .map(|p| p.name.as_str())
        .collect();
    assert!(services.len() >= 5, "services found: {services:?}");
    let mut violations = Vec::new();
    for package in &packages {
        for dep in &package.deps {
            let name = dep["name"].as_str().unwrap_or_default();
            if !services.contains(name) {
                continue;
            }
            let kind = dep["kind"].as_str().unwrap_or("normal");
            match layer(&package.dir) {
                "crates" if !ASSEMBLERS.contains(&package.name.as_str()) => violations.push(format!(
                    "kit crate {} depends on service {name} ({kind}): kit crates serve services, not the other way",
                    package.name
                )),
                "services" if kind == "normal" => {
                    let defaults = dep["uses_default_features"].as_bool().unwrap_or(true);
                    let server = dep["features"]
                        .as_array()
                        .is_some_and(|f| f.iter().any(|f| f == "server"));
                    if defaults || server {
                        violations.push(format!(
                            "service {} depends on {name} with its server: use `default-features = false` (client and wire model only)",
                            package.name
                        ));
                    }
                }
                _ => {}
            }
        }
    }
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}

/// What a service compiles into its binary: its callers' clients must not drag a database driver
/// (or any other server dependency) along.
fn normal_tree(package: &str) -> String {
    let out = cargo()
        .args([
            "tree",
            "-p",
            package,
            "-e",
            "normal",
            "--prefix",
            "none",
            "--offline",
        ])
        .output()
        .expect("cargo tree runs");
    assert!(
        out.status.success(),
        "cargo tree -p {package}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn only_order_api_links_a_database_driver() {
    for (service, expect_sqlx) in [
        ("api-gateway", false),
        ("order-api", true),
        ("payment-api", false),
        ("notification", false),
        ("payment-provider", false),
    ] {
        let tree = normal_tree(service);
        assert!(
            tree.contains(service),
            "cargo tree -p {service} is empty: {tree}"
        );
        let has_sqlx = tree.lines().any(|l| l.starts_with("sqlx "));
        assert_eq!(
            has_sqlx,
            expect_sqlx,
            "`cargo tree -p {service} -e normal` {} sqlx",
            if has_sqlx { "shows" } else { "lacks" }
        );
    }
}

/// Top-level modules of one crate and the top-level modules each one names through `crate::`.
fn module_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read src dir") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let relative = path.strip_prefix(src).expect("under src");
            let first = relative
                .components()
                .next()
                .and_then(|c| c.as_os_str().to_str())
                .expect("a component");
            let module = first.trim_end_matches(".rs").to_owned();
            if module == "lib" || module == "main" {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("read source");
            let uses = graph.entry(module.clone()).or_default();
            for (i, _) in text.match_indices("crate::") {
                // Skip doc links and comments: only code lines count.
                let line_start = text[..i].rfind('\n').map_or(0, |n| n + 1);
                if text[line_start..i].trim_start().starts_with("//") {
                    continue;
                }
                let rest = &text[i + "crate::".len()..];
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty()
                    && name != module
                    && name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
                {
                    uses.insert(name);
                }
            }
        }
    }
    graph
}

fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(node.to_owned(), 1);
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if !graph.contains_key(next) {
                continue; // an item of lib.rs, not a module
            }
            match state.get(next.as_str()) {
                Some(1) => {
                    let from = path.iter().position(|n| n == next).unwrap_or(0);
                    let mut cycle = path[from..].to_vec();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                Some(_) => {}
                None => {
                    if let Some(cycle) = visit(next, graph, state, path) {
                        return Some(cycle);
                    }
                }
            }
        }
        path.pop();
        state.insert(node.to_owned(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for node in graph.keys() {
        if !state.contains_key(node)
            && let Some(cycle) = visit(node, graph, &mut state, &mut Vec::new())
        {
            return Some(cycle);
        }
    }
    None
}

#[test]
fn no_crate_has_an_import_cycle_between_its_modules() {
    let mut cycles = Vec::new();
    for package in packages() {
        let src = package.dir.join("src");
        if !src.is_dir() {
            continue;
        }
        if let Some(cycle) = find_cycle(&module_graph(&src)) {
            cycles.push(format!("{}: {}", package.name, cycle.join(" -> ")));
        }
    }
    assert!(
        cycles.is_empty(),
        "module import cycles (modules should depend one way):\n{}",
        cycles.join("\n")
    );
}

#[test]
fn the_cycle_finder_finds_a_cycle() {
    let graph: BTreeMap<String, BTreeSet<String>> = [
        ("a", vec!["b"]),
        ("b", vec!["c"]),
        ("c", vec!["a"]),
        ("d", vec!["a"]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.into_iter().map(str::to_owned).collect()))
    .collect();
    assert_eq!(
        find_cycle(&graph),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
}

const ARCHITECTURE_DOC: &str = "docs/architecture.md";

/// The picture in docs/architecture.md is the one the topology draws. `UPDATE_DOCS=1` rewrites
/// it from the topology.
#[test]
fn the_architecture_picture_is_drawn_from_the_topology() {
    let path = workspace_root().join(ARCHITECTURE_DOC);
    let doc = std::fs::read_to_string(&path).expect("docs/architecture.md exists");
    let open = "```mermaid\n";
    let start = doc
        .find(open)
        .expect("docs/architecture.md has a mermaid block")
        + open.len();
    let end = start + doc[start..].find("```").expect("the mermaid block ends");
    let drawn = fleet::topology::mermaid();
    if doc[start..end] == drawn {
        return;
    }
    if std::env::var_os("UPDATE_DOCS").is_some() {
        std::fs::write(&path, format!("{}{drawn}{}", &doc[..start], &doc[end..])).expect("write");
        return;
    }
    panic!(
        "{ARCHITECTURE_DOC}'s picture differs from fleet::topology (run `UPDATE_DOCS=1 cargo nextest run -p fleet --test architecture`):\n--- doc\n{}\n--- topology\n{drawn}",
        &doc[start..end]
    );
}
