"""Cross-file wiring, in compose and in Kubernetes: services -> Collector -> Tempo -> Prometheus <- Grafana."""

import fnmatch

import pytest

from conftest import (CONFIG, DEPLOY, OVERLAYS, SAMPLING_MODES, by_kind, compose, host_port, interpolate, load_yaml,
                      ns, pod_spec, read_env_file, render, workloads)

TEMPO = load_yaml(CONFIG / "tempo" / "tempo.yaml")
DATASOURCES = load_yaml(CONFIG / "grafana" / "provisioning" / "datasources" / "datasources.yaml")
PROMETHEUS = load_yaml(CONFIG / "prometheus" / "prometheus.yaml")
SAMPLER_JOB = load_yaml(CONFIG / "prometheus" / "otel-sampler.yaml")
COLLECTOR_ALL = load_yaml(CONFIG / "otel-collector" / "all.yaml")
TRACED = ["api-gateway", "order-api", "payment-api", "notification"]


def tempo_otlp_grpc_port() -> int:
    return host_port(TEMPO["distributor"]["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"])[1]


def tempo_otlp_http_port() -> int:
    return host_port(TEMPO["distributor"]["receivers"]["otlp"]["protocols"]["http"]["endpoint"])[1]


def collector_tempo_endpoint() -> str:
    return COLLECTOR_ALL["exporters"]["otlp_http/tempo"]["endpoint"]


def collector_otlp_grpc_port() -> int:
    return host_port(COLLECTOR_ALL["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"])[1]


def k8s_resolve(docs, host: str, from_ns: str, searches: tuple = ()):
    """`name`, `name.ns`, `name.ns.svc(.cluster.local)` -> the Service object, or None. A short
    `name` is looked up in the pod's own namespace, then in each `<ns>.svc.cluster.local` of its
    `dnsConfig.searches`, as the cluster DNS does."""
    parts = host.split(".")
    name = parts[0]
    if len(parts) > 1:
        namespaces = [parts[1]]
    else:
        namespaces = [from_ns] + [
            d.split(".")[0] for d in searches if d.endswith(".svc.cluster.local")
        ]
    if len(parts) > 2:
        assert parts[2] == "svc" and (len(parts) == 3 or ".".join(parts[3:]) == "cluster.local"), host
    for namespace in namespaces:
        for svc in by_kind(docs, "Service"):
            if svc["metadata"]["name"] == name and ns(svc) == namespace:
                return svc
    return None


def dns_searches(docs, workload: str) -> tuple:
    """The extra DNS search domains of the named workload's pods."""
    for w in workloads(docs):
        if w["metadata"]["name"] == workload:
            return tuple(pod_spec(w).get("dnsConfig", {}).get("searches", []))
    return ()


def k8s_reaches(
    docs, url: str, from_ns: str, container_port: int | None = None, searches: tuple = ()
) -> bool:
    host, port = host_port(url)
    svc = k8s_resolve(docs, host, from_ns, searches)
    if svc is None:
        return False
    sp = [p for p in svc["spec"]["ports"] if p["port"] == port]
    if not sp:
        return False
    if container_port is None:
        return True
    target = sp[0].get("targetPort", port)
    for w in workloads(docs):
        if ns(w) != ns(svc):
            continue
        labels = w["spec"]["template"]["metadata"]["labels"] if w["kind"] != "Pod" else w["metadata"]["labels"]
        if all(labels.get(k) == v for k, v in svc["spec"]["selector"].items()):
            for c in pod_spec(w)["containers"]:
                for p in c.get("ports", []):
                    if (p.get("name") == target or p["containerPort"] == target) and p["containerPort"] == container_port:
                        return True
    return False


# ---------------------------------------------------------------------------------------- compose
def test_compose_services_reach_the_collector_receiver():
    for name in TRACED:
        host, port = host_port(compose()["services"][name]["environment"]["OTEL_EXPORTER_OTLP_ENDPOINT"])
        assert host == "otel-collector" and port == collector_otlp_grpc_port()


def test_compose_collector_reaches_tempo_receiver():
    host, port = host_port(collector_tempo_endpoint())
    assert host == "tempo" and host in compose()["services"]
    assert port == tempo_otlp_http_port()


def test_grafana_datasources_reach_tempo_and_prometheus():
    ds = {d["uid"]: d for d in DATASOURCES["datasources"]}
    assert host_port(ds["tempo"]["url"]) == ("tempo", TEMPO["server"]["http_listen_port"])
    assert host_port(ds["prometheus"]["url"]) == ("prometheus", 9090)
    for uid in ("tempo", "prometheus"):
        assert host_port(ds[uid]["url"])[0] in compose()["services"]
    # Cross references between the two datasources.
    assert ds["tempo"]["jsonData"]["serviceMap"]["datasourceUid"] == "prometheus"
    assert ds["tempo"]["jsonData"]["tracesToMetrics"]["datasourceUid"] == "prometheus"
    assert ds["tempo"]["jsonData"]["nodeGraph"]["enabled"] is True
    dest = ds["prometheus"]["jsonData"]["exemplarTraceIdDestinations"][0]
    assert dest["datasourceUid"] == "tempo" and dest["name"] == "traceID", "Tempo writes exemplars as traceID"


def test_tempo_writes_metrics_to_prometheus_with_exemplars():
    rw = TEMPO["metrics_generator"]["storage"]["remote_write"][0]
    assert host_port(rw["url"]) == ("prometheus", 9090) and rw["url"].endswith("/api/v1/write")
    assert rw["send_exemplars"] is True
    procs = TEMPO["overrides"]["defaults"]["metrics_generator"]["processors"]
    assert {"service-graphs", "span-metrics"} <= set(procs)
    assert TEMPO["stream_over_http_enabled"] is True, "Grafana's streamingEnabled needs it"
    assert TEMPO["storage"]["trace"]["backend"] == "local"


def test_tempo_receivers_listen_beyond_localhost():
    for proto in ("grpc", "http"):
        assert TEMPO["distributor"]["receivers"]["otlp"]["protocols"][proto]["endpoint"].startswith("0.0.0.0:")


def test_tempo_does_not_report_usage_to_the_internet():
    # Offline, or under the NetworkPolicies, the usage report only produces error lines.
    assert TEMPO["usage_report"]["reporting_enabled"] is False


def test_prometheus_scrapes_existing_targets():
    for job in PROMETHEUS["scrape_configs"] + SAMPLER_JOB["scrape_configs"]:
        for sc in job.get("static_configs", []):
            for target in sc["targets"]:
                host, _port = host_port(target)
                assert host == "localhost" or host in compose()["services"], target
        for sd in job.get("dns_sd_configs", []):
            for name in sd["names"]:
                assert name in compose()["services"], name


def prometheus_jobs(extra_files: list[str]) -> set[str]:
    """Job names Prometheus runs: its main file plus the mounted files its scrape_config_files globs match."""
    jobs = {j["job_name"] for j in PROMETHEUS["scrape_configs"]}
    globs = PROMETHEUS.get("scrape_config_files", [])
    for path in extra_files:
        if any(fnmatch.fnmatch(path, g) for g in globs):
            jobs |= {j["job_name"] for j in load_yaml(CONFIG / "prometheus" / path.rsplit("/", 1)[1])["scrape_configs"]}
    return jobs


def test_the_main_prometheus_config_has_no_sampler_job():
    # The sampling tier exists only with SAMPLING=two-tier; elsewhere its DNS lookup fails every 15 s.
    for job in PROMETHEUS["scrape_configs"]:
        assert job["job_name"] != "otel-sampler" and not job.get("dns_sd_configs"), job["job_name"]


@pytest.mark.parametrize("mode", SAMPLING_MODES)
def test_compose_prometheus_scrapes_the_sampler_only_in_two_tier(mode):
    env = read_env_file(DEPLOY / "sampling" / f"{mode}.env")
    targets = [interpolate(v, env).split(":")[1] for v in compose()["services"]["prometheus"]["volumes"]]
    jobs = prometheus_jobs(targets)
    assert ("otel-sampler" in jobs) == (mode == "two-tier"), (mode, sorted(jobs))
    assert {"otel-collector", "tempo", "prometheus"} <= jobs


def k8s_prometheus_files(docs) -> list[str]:
    """Paths of the prometheus-config keys mounted into the Prometheus container."""
    dep = [d for d in by_kind(docs, "Deployment") if d["metadata"]["name"] == "prometheus"][0]
    spec = pod_spec(dep)
    cms = {d["metadata"]["name"]: d for d in by_kind(docs, "ConfigMap")}
    vols = {v["name"]: v["configMap"] for v in spec["volumes"] if "configMap" in v}
    files = []
    for m in spec["containers"][0]["volumeMounts"]:
        cm = vols.get(m["name"])
        if not cm:
            continue
        if m.get("subPath"):
            files.append(m["mountPath"])
        elif cm.get("items"):
            files += [f"{m['mountPath']}/{i['path']}" for i in cm["items"]]
        else:
            files += [f"{m['mountPath']}/{k}" for k in cms[cm["name"]]["data"]]
    return files


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_k8s_prometheus_scrapes_the_sampler_only_in_two_tier(overlay):
    jobs = prometheus_jobs(k8s_prometheus_files(render(overlay)))
    assert ("otel-sampler" in jobs) == (overlay == "kind-two-tier"), (overlay, sorted(jobs))
    assert {"otel-collector", "tempo", "prometheus"} <= jobs


# ------------------------------------------------------------------------------------- kubernetes
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_k8s_services_reach_the_collector_receiver(overlay):
    docs = render(overlay)
    cm = [d for d in by_kind(docs, "ConfigMap") if d["metadata"]["name"].startswith("fleet-otel") and ns(d) == "fleet"][0]
    url = cm["data"]["OTEL_EXPORTER_OTLP_ENDPOINT"]
    assert cm["data"]["OTEL_EXPORTER_OTLP_PROTOCOL"] == "grpc"
    assert k8s_reaches(docs, url, "fleet", collector_otlp_grpc_port()), url
    for w in workloads(docs):
        if w["metadata"]["name"] in TRACED:
            refs = [e["configMapRef"]["name"] for c in pod_spec(w)["containers"] for e in c.get("envFrom", []) if "configMapRef" in e]
            assert cm["metadata"]["name"] in refs, f"{w['metadata']['name']} does not get the OTLP settings"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_k8s_collector_tempo_prometheus_grafana_wiring(overlay):
    docs = render(overlay)
    assert k8s_reaches(docs, collector_tempo_endpoint(), "observability", tempo_otlp_http_port())
    rw = TEMPO["metrics_generator"]["storage"]["remote_write"][0]["url"]
    assert k8s_reaches(docs, rw, "observability", 9090)
    for d in DATASOURCES["datasources"]:
        assert k8s_reaches(docs, d["url"], "observability"), d["url"]
    assert k8s_reaches(docs, "http://tempo:3200", "observability", TEMPO["server"]["http_listen_port"])
    searches = dns_searches(docs, "prometheus")
    for job in PROMETHEUS["scrape_configs"]:
        for sc in job.get("static_configs", []):
            for target in sc["targets"]:
                if not target.startswith("localhost"):
                    assert k8s_reaches(docs, target, "observability", searches=searches), target


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_k8s_service_addresses(overlay):
    docs = render(overlay)
    wiring = {"api-gateway": ["ORDER_API_URL", "NOTIFICATION_ADDR"], "order-api": ["PAYMENT_API_ADDR"],
              "payment-api": ["PAYMENT_PROVIDER_URL"]}
    listen = {}
    for w in workloads(docs):
        for c in pod_spec(w)["containers"]:
            for e in c.get("env", []):
                if e["name"] == "LISTEN_ADDR":
                    listen[w["metadata"]["name"]] = int(e["value"].rsplit(":", 1)[1])
    for w in workloads(docs):
        name = w["metadata"]["name"]
        if name not in wiring:
            continue
        env = {e["name"]: e.get("value") for c in pod_spec(w)["containers"] for e in c.get("env", [])}
        for key in wiring[name]:
            host, _ = host_port(env[key])
            assert k8s_reaches(docs, env[key], "fleet", listen[host.split(".")[0]]), f"{name}.{key}={env[key]}"
    secret = [s for s in by_kind(docs, "Secret") if s["metadata"]["name"].startswith("postgres-credentials")][0]
    import base64
    url = base64.b64decode(secret["data"]["DATABASE_URL"]).decode()
    assert k8s_reaches(docs, url, "fleet", 5432), url


def test_compose_and_k8s_agree_on_images():
    docs = render("kind")
    k8s_images = {c["image"] for w in workloads(docs) for c in pod_spec(w)["containers"]}
    for name, svc in compose()["services"].items():
        if name in ("healthtools",):
            continue
        image = svc["image"].replace("${FLEET_VERSION:-0.1.0}", "0.1.0")
        if name == "otel-sampler":
            continue
        assert image in k8s_images, f"compose {name} runs {image}, which no k8s workload runs"
