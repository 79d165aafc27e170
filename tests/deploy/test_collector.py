"""Collector configs: complete pipelines, reachable receivers, exporters that reach real services."""

import re

import pytest

from conftest import by_kind, collector_configs, compose, host_port, load_yaml, render

CONFIGS = {p.name: load_yaml(p) for p in collector_configs()}
KINDS = ("receivers", "processors", "exporters", "connectors", "extensions")


def test_the_three_configs_exist():
    assert set(CONFIGS) == {"all.yaml", "tail.yaml", "two-tier-front.yaml"}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_every_component_used_is_defined_and_every_defined_one_is_used(name):
    cfg = CONFIGS[name]
    service = cfg["service"]
    used = {k: set() for k in KINDS}
    used["extensions"] = set(service.get("extensions", []))
    for pipeline, spec in service["pipelines"].items():
        assert spec.get("receivers") and spec.get("exporters"), f"{name}: pipeline {pipeline} incomplete"
        for kind in ("receivers", "processors", "exporters"):
            for comp in spec.get(kind, []):
                # A connector is used as an exporter of one pipeline and a receiver of another.
                bucket = "connectors" if comp in (cfg.get("connectors") or {}) else kind
                used[bucket].add(comp)
    for kind in KINDS:
        defined = set(cfg.get(kind) or {})
        assert used[kind] <= defined, f"{name}: {kind} used but not defined: {used[kind] - defined}"
        assert defined <= used[kind], f"{name}: {kind} defined but never used: {defined - used[kind]}"


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_memory_limiter_first(name):
    for spec in CONFIGS[name]["service"]["pipelines"].values():
        assert spec["processors"][0] == "memory_limiter"


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_everything_listens_beyond_localhost(name):
    cfg = CONFIGS[name]
    protocols = cfg["receivers"]["otlp"]["protocols"]
    assert protocols["grpc"]["endpoint"] == "0.0.0.0:4317"
    assert protocols["http"]["endpoint"] == "0.0.0.0:4318"
    assert cfg["extensions"]["health_check"]["endpoint"] == "0.0.0.0:13133"
    prom = cfg["service"]["telemetry"]["metrics"]["readers"][0]["pull"]["exporter"]["prometheus"]
    assert prom["host"] == "0.0.0.0" and prom["port"] == 8888


def exporter_targets(cfg) -> list[tuple[str, int]]:
    out = []
    for name, exp in (cfg.get("exporters") or {}).items():
        if "endpoint" in exp:
            out.append(host_port(exp["endpoint"]))
        dns = (exp.get("resolver") or {}).get("dns")
        if dns:
            # The port is a string in the resolver's struct (test_collector_types checks that).
            out.append((dns["hostname"], int(dns["port"])))
    return out


def compose_port_of(service: str, port: int) -> bool:
    """Does compose service `service` listen on `port`? (From its config, image or env.)"""
    svc = compose()["services"][service]
    known = {
        "tempo": {3200, 4317, 4318, 9095},
        "otel-sampler": {4317, 4318, 8888, 13133},
        "otel-collector": {4317, 4318, 8888, 13133},
        "prometheus": {9090},
        "grafana": {3000},
    }
    if service in known:
        return port in known[service]
    listen = (svc.get("environment") or {}).get("LISTEN_ADDR", "")
    return listen.endswith(f":{port}")


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_exporters_reach_services_in_compose(name):
    targets = exporter_targets(CONFIGS[name])
    assert targets
    for host, port in targets:
        assert host in compose()["services"], f"{name}: exporter target {host} is not a compose service"
        assert compose_port_of(host, port), f"{name}: {host} does not listen on {port}"


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_exporters_reach_services_in_kubernetes(name):
    overlay = "kind-two-tier" if name == "two-tier-front.yaml" else "kind-tail" if name == "tail.yaml" else "kind"
    docs = render(overlay)
    services = {s["metadata"]["name"]: s for s in by_kind(docs, "Service") if s["metadata"]["namespace"] == "observability"}
    for host, port in exporter_targets(CONFIGS[name]):
        # Short names resolve in the Collector's own namespace.
        assert host in services, f"{name}: {host} is not a Service in namespace observability ({overlay})"
        assert port in [p["port"] for p in services[host]["spec"]["ports"]], f"{name}: {host} has no port {port}"


def test_tail_policies_keep_errors_slow_and_a_baseline():
    ts = CONFIGS["tail.yaml"]["processors"]["tail_sampling"]
    types = {p["name"]: p["type"] for p in ts["policies"]}
    assert types == {"keep-errors": "status_code", "keep-slow": "latency", "baseline-10pct": "probabilistic"}
    policies = {p["name"]: p for p in ts["policies"]}
    assert policies["keep-errors"]["status_code"]["status_codes"] == ["ERROR"]
    assert policies["baseline-10pct"]["probabilistic"]["sampling_percentage"] == 10
    # decision_wait must outlast the slowest trace we judge: the gateway's 10 s order timeout.
    assert int(ts["decision_wait"].rstrip("s")) > 10
    # The deciding policy is copied from the scope attribute onto the spans.
    pipeline = CONFIGS["tail.yaml"]["service"]["pipelines"]["traces"]["processors"]
    assert pipeline.index("tail_sampling") < pipeline.index("transform/policy-on-spans")
    stmts = CONFIGS["tail.yaml"]["processors"]["transform/policy-on-spans"]["trace_statements"][0]["statements"]
    assert 'instrumentation_scope.attributes["tailsampling.policy"]' in stmts[0]


def test_recordpolicy_gate_is_on_wherever_tail_sampling_runs():
    gate = "processor.tailsamplingprocessor.recordpolicy"
    for svc in ("otel-collector", "otel-sampler"):
        assert any(gate in c for c in compose()["services"][svc]["command"])
    for overlay in ("kind-tail", "kind-two-tier"):
        for wl in by_kind(render(overlay), "Deployment") + by_kind(render(overlay), "StatefulSet"):
            c = wl["spec"]["template"]["spec"]["containers"][0]
            if "tail.yaml" in " ".join(c.get("args", [])):
                assert any(gate in a for a in c["args"]), wl["metadata"]["name"]


def test_two_tier_front_routes_by_trace_id_to_the_sampling_tier():
    lb = CONFIGS["two-tier-front.yaml"]["exporters"]["load_balancing"]
    assert lb["routing_key"] == "traceID"
    assert lb["resolver"]["dns"]["hostname"] == "otel-sampler"
    docs = render("kind-two-tier")
    sampler = [s for s in by_kind(docs, "Service") if s["metadata"]["name"] == "otel-sampler"]
    assert sampler and sampler[0]["spec"].get("clusterIP") == "None", "the DNS resolver needs a headless Service"
    front = [d for d in by_kind(docs, "Deployment") if d["metadata"]["name"] == "otel-collector"][0]
    assert front["spec"]["template"]["spec"]["containers"][0]["args"][0].endswith("/two-tier-front.yaml")
    sts = [d for d in by_kind(docs, "StatefulSet") if d["metadata"]["name"] == "otel-sampler"][0]
    assert sts["spec"]["replicas"] >= 2
    assert sts["spec"]["template"]["spec"]["containers"][0]["args"][0].endswith("/tail.yaml")


def test_single_tail_sampler_is_never_scaled():
    for overlay in ("kind-tail",):
        front = [d for d in by_kind(render(overlay), "Deployment") if d["metadata"]["name"] == "otel-collector"][0]
        assert front["spec"]["replicas"] == 1, "tail sampling needs all spans of a trace on one instance"


def duration_seconds(text: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    return sum(float(n) * units[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", text))


def test_exporters_to_tempo_retry_a_429_with_backoff_and_queue_meanwhile():
    # Tempo refuses a push over its ingestion limit. Over gRPC that is RESOURCE_EXHAUSTED without
    # RetryInfo, which otlp_grpc treats as permanent (dropped); over HTTP it is a 429, which otlp_http
    # retries. Every config that exports to Tempo must do the latter, with a queue to wait in.
    exporting = set()
    for name, cfg in CONFIGS.items():
        for exp_name, exp in (cfg.get("exporters") or {}).items():
            if "endpoint" not in exp or host_port(exp["endpoint"])[0] != "tempo":
                continue
            exporting.add(name)
            assert exp_name.split("/")[0] == "otlp_http", f"{name}: {exp_name} drops Tempo's rate-limit refusals"
            retry = exp.get("retry_on_failure") or {}
            assert retry.get("enabled") is True, f"{name}: {exp_name} needs retry_on_failure"
            assert duration_seconds(retry["max_elapsed_time"]) >= 60, f"{name}: give a throttled batch minutes"
            assert duration_seconds(retry["max_interval"]) >= duration_seconds(retry["initial_interval"]) > 0
            queue = exp.get("sending_queue")
            assert isinstance(queue, dict) and queue.get("enabled", True) is not False, f"{name}: no sending_queue"
            assert queue.get("block_on_overflow") is not True, f"{name}: a full queue must not stall the receiver"
            if queue.get("sizer") == "items":
                assert queue["queue_size"] >= 4000 * 10, f"{name}: the queue holds <10 s of one fleet's spans"
    assert exporting == {"all.yaml", "tail.yaml"}, exporting
