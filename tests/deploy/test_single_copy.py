"""Each config file exists once (deploy/config) and both compose and kustomize use that copy."""

import hashlib

import yaml

from conftest import CONFIG, DEPLOY, K8S, ROOT, compose, load_yaml

CONFIG_FILES = sorted(p for p in CONFIG.rglob("*") if p.is_file() and p.name != "kustomization.yaml")


def compose_mounted_files() -> set:
    out = set()
    for svc in compose()["services"].values():
        for vol in svc.get("volumes", []):
            src = vol.split(":")[0]
            if src.startswith("."):
                path = (DEPLOY / src).resolve()
                out.update(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else out.add(path)
    return out


def kustomize_generated_files() -> set:
    out = set()
    kust = load_yaml(CONFIG / "kustomization.yaml")
    for gen in kust["configMapGenerator"]:
        for f in gen.get("files", []):
            out.add((CONFIG / f.split("=")[-1]).resolve())
    return out


def test_config_files_exist():
    names = {p.relative_to(CONFIG).as_posix() for p in CONFIG_FILES}
    assert {
        "otel-collector/all.yaml", "otel-collector/tail.yaml", "otel-collector/two-tier-front.yaml",
        "tempo/tempo.yaml", "prometheus/prometheus.yaml",
        "grafana/provisioning/datasources/datasources.yaml", "grafana/provisioning/dashboards/dashboards.yaml",
        "grafana/dashboards/fleet-overview.json", "grafana/dashboards/sampling.json",
    } <= names


def test_compose_mounts_every_config_file_from_deploy_config():
    mounted = compose_mounted_files()
    for path in mounted:
        assert CONFIG in path.parents, f"compose mounts {path} from outside deploy/config"
    missing = set(CONFIG_FILES) - mounted
    assert not missing, f"compose does not use {sorted(map(str, missing))}"


def test_kustomize_generates_every_config_file_from_the_same_copy():
    generated = kustomize_generated_files()
    assert generated == {p.resolve() for p in CONFIG_FILES}


def test_k8s_reaches_the_config_through_a_kustomization_resource():
    obs = load_yaml(K8S / "base" / "observability" / "kustomization.yaml")
    assert "../../../deploy/config" in obs["resources"]
    # No configMapGenerator anywhere under k8s/ reads a file: all files come from deploy/config.
    for kfile in K8S.rglob("kustomization.yaml"):
        doc = load_yaml(kfile)
        for gen in doc.get("configMapGenerator", []) + doc.get("secretGenerator", []):
            assert not gen.get("files"), f"{kfile} generates from files; keep config files in deploy/config"


def looks_like_a_config(path):
    """Which config a YAML/JSON file is, by its shape (not its name): collector, tempo, ..."""
    import json
    try:
        docs = [json.loads(path.read_text())] if path.suffix == ".json" else list(yaml.safe_load_all(path.read_text()))
    except Exception:
        return None
    for doc in docs:
        if not isinstance(doc, dict):
            continue
        if {"receivers", "exporters", "service"} <= set(doc):
            return "collector"
        if "distributor" in doc or "metrics_generator" in doc:
            return "tempo"
        if "scrape_configs" in doc:
            return "prometheus"
        if "datasources" in doc or "providers" in doc:
            return "grafana provisioning"
        if "panels" in doc:
            return "dashboard"
    return None


def test_no_second_copy_anywhere():
    digests = {hashlib.sha256(p.read_bytes()).hexdigest(): p for p in CONFIG_FILES}
    for path in list(K8S.rglob("*")) + list(DEPLOY.rglob("*")) + list((ROOT / "docs").rglob("*")):
        if not path.is_file() or CONFIG in path.parents:
            continue
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        assert digest not in digests, f"{path} is a copy of {digests[digest]}"
        if path.suffix in (".yaml", ".yml", ".json"):
            kind = looks_like_a_config(path)
            assert kind is None, f"{path} is a second {kind} config; the only copy lives in deploy/config"
