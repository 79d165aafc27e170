"""Shared fixtures for the offline deploy validation (`make validate`).

Everything here reads files from the repository or renders them with `kubectl kustomize`; nothing
needs Docker, a cluster or the network. A missing tool is a FAILURE, never a skip: `.ci/run`
installs what these tests need.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
CONFIG = DEPLOY / "config"
COMPOSE_FILE = DEPLOY / "compose.yaml"
K8S = ROOT / "k8s"
OVERLAYS = sorted(p.parent.name for p in (K8S / "overlays").glob("*/kustomization.yaml"))
SAMPLING_MODES = ["all", "head", "tail", "two-tier"]
# The Kubernetes version the kind node runs (k8s/kind/cluster.yaml, docs/deploy.md): manifests are
# validated against its schemas.
K8S_VERSION = "1.37.0"

# The fleet's own images: compose service / k8s workload -> Dockerfile target (= binary name).
FLEET_TARGETS = ["api-gateway", "order-api", "payment-api", "notification", "payment-provider", "trace-desk", "fleet"]


def tool(name: str) -> str:
    """A command-line tool from the venv running pytest, else from PATH; fail if absent."""
    local = Path(sys.executable).parent / name
    if local.exists():
        return str(local)
    found = shutil.which(name)
    if not found:
        pytest.fail(f"`{name}` is not installed: run .ci/run (or see docs/deploy.md, Validate)")
    return found


_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}")


def interpolate(value: str, env: dict[str, str] | None = None) -> str:
    """Compose-style `${VAR:-default}` interpolation with the defaults (or `env`)."""
    env = env or {}
    return _VAR.sub(lambda m: env.get(m.group(1), m.group(2) or ""), value)


def read_env_file(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, val = line.partition("=")
            out[key.strip()] = val.strip()
    return out


@functools.cache
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="session")
def compose_doc() -> dict:
    return compose()


@functools.cache
def render(overlay: str) -> tuple[dict, ...]:
    kubectl = tool("kubectl")
    out = subprocess.run(
        [kubectl, "kustomize", str(K8S / "overlays" / overlay)],
        capture_output=True, text=True, check=False,
    )
    assert out.returncode == 0, f"kubectl kustomize k8s/overlays/{overlay} failed:\n{out.stderr}"
    return tuple(d for d in yaml.safe_load_all(out.stdout) if d)


def by_kind(docs, kind: str) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]


def ns(obj: dict) -> str:
    return obj["metadata"].get("namespace", "default")


def pod_spec(obj: dict) -> dict | None:
    kind = obj["kind"]
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
        return obj["spec"]["template"]["spec"]
    if kind == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    if kind == "Pod":
        return obj["spec"]
    return None


def pod_labels(obj: dict) -> dict:
    if obj["kind"] == "Pod":
        return obj["metadata"].get("labels", {})
    if obj["kind"] == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]["metadata"].get("labels", {})
    return obj["spec"]["template"]["metadata"].get("labels", {})


def workloads(docs) -> list[dict]:
    return [d for d in docs if pod_spec(d) is not None]


def matches(selector: dict, labels: dict) -> bool:
    """A LabelSelector (matchLabels/matchExpressions) or a plain Service selector map."""
    if "matchLabels" in selector or "matchExpressions" in selector:
        for k, v in (selector.get("matchLabels") or {}).items():
            if labels.get(k) != v:
                return False
        for expr in selector.get("matchExpressions") or []:
            key, op, values = expr["key"], expr["operator"], expr.get("values", [])
            if op == "In" and labels.get(key) not in values:
                return False
            if op == "NotIn" and labels.get(key) in values:
                return False
            if op == "Exists" and key not in labels:
                return False
            if op == "DoesNotExist" and key in labels:
                return False
        return True
    return all(labels.get(k) == v for k, v in selector.items())


def load_yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def collector_configs() -> list[Path]:
    return sorted((CONFIG / "otel-collector").glob("*.yaml"))


def host_port(url_or_addr: str) -> tuple[str, int]:
    """`http://tempo:3200/x` or `tempo:4317` -> ("tempo", 3200/4317)."""
    s = re.sub(r"^[a-z]+://", "", url_or_addr).split("/")[0]
    s = s.split("@")[-1]
    host, _, port = s.rpartition(":")
    return host, int(port)


os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
