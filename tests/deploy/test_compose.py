"""deploy/compose.yaml: schema, references, ports, health checks, sampling modes."""

import subprocess

import pytest

from conftest import (COMPOSE_FILE, CONFIG, DEPLOY, FLEET_TARGETS, ROOT, SAMPLING_MODES, interpolate,
                      read_env_file, tool)
import dockerfile

STAGES = dockerfile.parse(ROOT / "Dockerfile")
TRACED = ["api-gateway", "order-api", "payment-api", "notification"]


def test_validates_against_the_compose_spec():
    out = subprocess.run(
        [tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(COMPOSE_FILE)],
        capture_output=True, text=True, check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_expected_services(compose_doc):
    expected = {"postgres", "payment-provider", *TRACED, "otel-collector", "otel-sampler", "tempo",
                "prometheus", "grafana", "load", "healthtools"}
    assert expected <= set(compose_doc["services"])


def test_depends_on_resolves(compose_doc):
    services = compose_doc["services"]
    for name, svc in services.items():
        for dep, cond in (svc.get("depends_on") or {}).items():
            assert dep in services, f"{name} depends on unknown service {dep}"
            condition = cond["condition"]
            if condition == "service_healthy":
                assert "healthcheck" in services[dep], f"{name} waits for {dep} to be healthy; it has no healthcheck"
            if condition == "service_completed_successfully":
                assert services[dep].get("restart") == "no", f"{dep} is a one-shot: restart must be 'no'"
            # A service outside any profile must not wait on a profile-only service.
            if not svc.get("profiles"):
                assert not services[dep].get("profiles"), f"{name} depends on profile-only {dep}"


def test_volumes_and_mounted_files_resolve(compose_doc):
    named = set(compose_doc.get("volumes") or {})
    used = set()
    for name, svc in compose_doc["services"].items():
        for vol in svc.get("volumes", []):
            src = vol.split(":")[0]
            if src.startswith((".", "/")):
                path = (DEPLOY / src).resolve()
                assert path.exists(), f"{name} mounts {src}, which does not exist"
            else:
                assert src in named, f"{name} uses undeclared volume {src}"
                used.add(src)
    assert used == named, f"declared but unused volumes: {named - used}"


def test_no_two_services_publish_the_same_host_port(compose_doc):
    seen = {}
    for name, svc in compose_doc["services"].items():
        for port in svc.get("ports", []):
            parts = interpolate(str(port)).split(":")
            host = parts[-2]
            assert host not in seen, f"{name} and {seen[host]} both publish host port {host}"
            seen[host] = name
    assert {"3000", "3200", "8080", "9090"} <= set(seen)


def test_published_ports_are_container_ports_that_listen(compose_doc):
    for name, svc in compose_doc["services"].items():
        listen = svc.get("environment", {}).get("LISTEN_ADDR")
        if listen:
            port = listen.rsplit(":", 1)[1]
            assert any(interpolate(str(p)).split(":")[-1] == port for p in svc.get("ports", [])), name


@pytest.mark.parametrize("name", [*TRACED, "payment-provider"])
def test_fleet_services_build_their_own_target(compose_doc, name):
    svc = compose_doc["services"][name]
    assert svc["build"]["target"] == name and name in STAGES
    assert (DEPLOY / svc["build"]["context"] / svc["build"].get("dockerfile", "Dockerfile")).exists()
    assert svc["image"].startswith(f"fleet/{name}:") and not svc["image"].endswith(":latest")


def test_load_profile_runs_fleet_load(compose_doc):
    load = compose_doc["services"]["load"]
    assert load["profiles"] == ["load"]
    assert load["build"]["target"] == "fleet" and "fleet" in FLEET_TARGETS
    cmd = [interpolate(str(c)) for c in load["command"]]
    assert cmd[0] == "load"
    args = dict(zip(cmd[1::2], cmd[2::2]))
    assert args["--url"] == "http://api-gateway:8080"
    assert args["--rate"] == "10" and args["--duration"] == "0s"
    assert "--concurrency" in args
    assert load["depends_on"]["api-gateway"]["condition"] == "service_healthy"


def test_healthchecks_use_binaries_present_in_the_image(compose_doc):
    services = compose_doc["services"]
    populated = {}  # volume -> files a one-shot puts there
    tools = services["healthtools"]
    assert "/tools/wget" in " ".join(tools["command"])
    populated["healthtools"] = {"/tools/wget"}
    for name, svc in services.items():
        hc = svc.get("healthcheck")
        if not hc:
            assert name in ("healthtools", "load"), f"{name} has no healthcheck"
            continue
        test = hc["test"]
        assert test[0] == "CMD", f"{name}: use exec form CMD (most images here have no shell)"
        binary = test[1]
        target = (svc.get("build") or {}).get("target")
        if target:
            assert binary in dockerfile.files_in(STAGES, target), f"{name}: {binary} is not in image stage {target}"
        elif binary.startswith("/tools/"):
            mounts = {v.split(":")[1]: v.split(":")[0] for v in svc.get("volumes", [])}
            assert mounts.get("/tools") == "healthtools", f"{name} must mount the healthtools volume at /tools"
            assert binary in populated["healthtools"]
            assert svc["depends_on"]["healthtools"]["condition"] == "service_completed_successfully"
        else:
            # Third-party images that ship their own probe tool.
            assert (svc["image"].split(":")[0], binary) in {("postgres", "pg_isready")}, (name, binary)


@pytest.mark.parametrize("name", TRACED)
def test_traced_services_export_otlp_to_the_collector(compose_doc, name):
    env = compose_doc["services"][name]["environment"]
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector:4317"
    assert env["OTEL_EXPORTER_OTLP_PROTOCOL"] == "grpc"
    assert env["OTEL_SERVICE_NAME"] == name
    assert env["LOG_FORMAT"] == "json"


def test_provider_exports_no_telemetry(compose_doc):
    env = compose_doc["services"]["payment-provider"]["environment"]
    assert not any(k.startswith("OTEL_") for k in env)


def test_service_addresses_point_at_listening_services(compose_doc):
    services = compose_doc["services"]
    listen = {n: s["environment"]["LISTEN_ADDR"].rsplit(":", 1)[1]
              for n, s in services.items() if "LISTEN_ADDR" in (s.get("environment") or {})}
    wiring = {
        "api-gateway": ["ORDER_API_URL", "NOTIFICATION_ADDR"],
        "order-api": ["PAYMENT_API_ADDR", "DATABASE_URL"],
        "payment-api": ["PAYMENT_PROVIDER_URL"],
    }
    for name, keys in wiring.items():
        for key in keys:
            url = interpolate(services[name]["environment"][key])
            host, port = url.split("//")[1].split("@")[-1].split("/")[0].split(":")
            assert host in services, f"{name}.{key} -> unknown service {host}"
            if host == "postgres":
                assert port == "5432"
            else:
                assert listen[host] == port, f"{name}.{key} -> {host}:{port}, but {host} listens on {listen[host]}"
            deps = services[name].get("depends_on", {})
            assert host in deps, f"{name} calls {host} but does not wait for it"


@pytest.mark.parametrize("mode", SAMPLING_MODES)
def test_each_sampling_mode_selects_an_existing_collector_config(compose_doc, mode):
    env = read_env_file(DEPLOY / "sampling" / f"{mode}.env")
    cmd = [interpolate(c, env) for c in compose_doc["services"]["otel-collector"]["command"]]
    config = cmd[0].split("=", 1)[1]
    assert config.startswith("/etc/otelcol-contrib/")
    assert (CONFIG / "otel-collector" / config.rsplit("/", 1)[1]).exists()
    sampler = env["OTEL_TRACES_SAMPLER"]
    assert sampler.startswith("parentbased_"), "a bare ratio sampler breaks traces apart"
    if mode == "head":
        assert sampler == "parentbased_traceidratio" and float(env["OTEL_TRACES_SAMPLER_ARG"]) == 0.1
    else:
        assert sampler == "parentbased_always_on"
    if mode == "two-tier":
        assert env.get("COMPOSE_PROFILES") == "two-tier"
        assert config.endswith("two-tier-front.yaml")
    if mode == "tail":
        assert config.endswith("tail.yaml")


def test_two_tier_sampling_replicas(compose_doc):
    sampler = compose_doc["services"]["otel-sampler"]
    assert sampler["profiles"] == ["two-tier"]
    assert sampler["deploy"]["replicas"] >= 2
    assert sampler["command"][0].endswith("/tail.yaml")
    assert "ports" not in sampler, "replicas cannot publish a fixed host port"


def test_grafana_is_anonymous_admin_and_offline(compose_doc):
    env = compose_doc["services"]["grafana"]["environment"]
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "true"
    assert env["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Admin"
    assert env["GF_PLUGINS_PREINSTALL_DISABLED"] == "true"


def test_prometheus_receives_remote_write_and_exemplars(compose_doc):
    cmd = compose_doc["services"]["prometheus"]["command"]
    assert "--web.enable-remote-write-receiver" in cmd
    assert "--enable-feature=exemplar-storage" in cmd


def test_images_are_pinned(compose_doc):
    pins = {
        "otel/opentelemetry-collector-contrib": "0.159.0",
        "grafana/tempo": "2.10.8",
        "grafana/grafana": "13.1.0",
        "prom/prometheus": "v3.13.1",
        "postgres": "18.4",
    }
    for name, svc in compose_doc["services"].items():
        image = svc["image"]
        repo, _, tag = image.rpartition(":")
        assert tag and tag != "latest", f"{name}: pin {image}"
        if repo in pins:
            assert tag == pins[repo], f"{name}: {image}, versions.md pins {pins[repo]}"
