"""Every kustomize overlay renders, validates strictly, and hangs together."""

import re
import subprocess

import pytest

from conftest import (ROOT, FLEET_TARGETS, K8S, K8S_VERSION, OVERLAYS, by_kind, matches, ns, pod_labels, pod_spec,
                      render, tool, workloads)


def test_overlays_exist():
    assert set(OVERLAYS) == {"kind", "kind-head", "kind-tail", "kind-two-tier"}
    assert (K8S / "kind" / "cluster.yaml").exists()


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_renders_and_validates_strictly(overlay, tmp_path):
    docs = render(overlay)
    assert len(docs) > 30
    out = tmp_path / f"{overlay}.yaml"
    kubectl = tool("kubectl")
    rendered = subprocess.run([kubectl, "kustomize", str(K8S / "overlays" / overlay)],
                              capture_output=True, text=True, check=True).stdout
    out.write_text(rendered)
    res = subprocess.run(
        [tool("kubernetes-validate"), "--strict", "--quiet", "-k", K8S_VERSION, str(out)],
        capture_output=True, text=True, check=False,
    )
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_services_select_existing_pods_and_ports(overlay):
    docs = render(overlay)
    pods = workloads(docs)
    for svc in by_kind(docs, "Service"):
        sel = svc["spec"]["selector"]
        targets = [w for w in pods if ns(w) == ns(svc) and matches(sel, pod_labels(w))]
        assert targets, f"Service {ns(svc)}/{svc['metadata']['name']} selects no pods"
        for port in svc["spec"]["ports"]:
            tp = port.get("targetPort", port["port"])
            for w in targets:
                cports = [p for c in pod_spec(w)["containers"] for p in c.get("ports", [])]
                ok = any(p.get("name") == tp or p["containerPort"] == tp for p in cports)
                assert ok, f"Service {svc['metadata']['name']} targetPort {tp} is not a port of {w['metadata']['name']}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_use_container_ports(overlay):
    for w in workloads(render(overlay)):
        for c in pod_spec(w)["containers"]:
            names = {p.get("name") for p in c.get("ports", [])}
            numbers = {p["containerPort"] for p in c.get("ports", [])}
            for probe_name in ("readinessProbe", "livenessProbe", "startupProbe"):
                probe = c.get(probe_name)
                if not probe:
                    continue
                for kind in ("httpGet", "tcpSocket", "grpc"):
                    if kind in probe:
                        port = probe[kind]["port"]
                        assert port in names or port in numbers, f"{w['metadata']['name']} {probe_name} port {port}"
            if w["kind"] != "Job":
                assert c.get("readinessProbe") and c.get("livenessProbe"), f"{w['metadata']['name']} needs both probes"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_referenced_configmaps_and_secrets_exist(overlay):
    docs = render(overlay)
    cms = {(ns(d), d["metadata"]["name"]) for d in by_kind(docs, "ConfigMap")}
    secrets = {(ns(d), d["metadata"]["name"]) for d in by_kind(docs, "Secret")}
    for w in workloads(docs):
        spec, n = pod_spec(w), ns(w)
        for vol in spec.get("volumes", []):
            if "configMap" in vol:
                assert (n, vol["configMap"]["name"]) in cms, vol
            if "secret" in vol:
                assert (n, vol["secret"]["secretName"]) in secrets, vol
        for c in spec["containers"]:
            for ef in c.get("envFrom", []):
                if "configMapRef" in ef:
                    assert (n, ef["configMapRef"]["name"]) in cms, ef
                if "secretRef" in ef:
                    assert (n, ef["secretRef"]["name"]) in secrets, ef
            for e in c.get("env", []):
                ref = e.get("valueFrom", {})
                if "secretKeyRef" in ref:
                    key = (n, ref["secretKeyRef"]["name"])
                    assert key in secrets, e
                    secret = [s for s in by_kind(docs, "Secret") if (ns(s), s["metadata"]["name"]) == key][0]
                    assert ref["secretKeyRef"]["key"] in secret.get("data", {}), e
                if "configMapKeyRef" in ref:
                    assert (n, ref["configMapKeyRef"]["name"]) in cms, e
            mounts = {m["name"] for m in c.get("volumeMounts", [])}
            declared = {v["name"] for v in spec.get("volumes", [])}
            if w["kind"] == "StatefulSet":
                declared |= {t["metadata"]["name"] for t in w["spec"].get("volumeClaimTemplates", [])}
            assert mounts <= declared, f"{w['metadata']['name']} mounts undeclared volumes {mounts - declared}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_resources_security_and_images(overlay):
    for w in workloads(render(overlay)):
        spec = pod_spec(w)
        name = w["metadata"]["name"]
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"].get("runAsUser", 0) != 0, name
        assert spec.get("automountServiceAccountToken") is False, name
        for c in spec["containers"]:
            res = c["resources"]
            assert res["requests"]["cpu"] and res["requests"]["memory"], name
            assert res["limits"]["cpu"] and res["limits"]["memory"], name
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"]["drop"] == ["ALL"], name
            image = c["image"]
            assert ":" in image and not image.endswith(":latest"), f"{name}: pin {image}"
            assert c["imagePullPolicy"] == "IfNotPresent", f"{name}: kind-loaded images need IfNotPresent"
            if image.startswith("fleet/"):
                target = image.split("/")[1].split(":")[0]
                assert target in FLEET_TARGETS, image
                assert sc["readOnlyRootFilesystem"] is True, name


def test_every_fleet_workload_and_namespace(overlay="kind"):
    docs = render(overlay)
    names = {(ns(w), w["metadata"]["name"]) for w in workloads(docs)}
    fleet = {"api-gateway", "order-api", "payment-api", "notification", "payment-provider", "postgres", "load"}
    obs = {"otel-collector", "tempo", "prometheus", "grafana"}
    assert {("fleet", n) for n in fleet} | {("observability", n) for n in obs} <= names
    assert {d["metadata"]["name"] for d in by_kind(docs, "Namespace")} == {"fleet", "observability"}
    kinds = {(w["metadata"]["name"], w["kind"]) for w in workloads(docs)}
    assert ("postgres", "StatefulSet") in kinds and ("tempo", "StatefulSet") in kinds and ("load", "Job") in kinds


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policies(overlay):
    docs = render(overlay)
    pods = workloads(docs)
    policies = by_kind(docs, "NetworkPolicy")
    for namespace in ("fleet", "observability"):
        deny = [p for p in policies if ns(p) == namespace and p["spec"]["podSelector"] == {}
                and set(p["spec"]["policyTypes"]) == {"Ingress", "Egress"} and not p["spec"].get("ingress")
                and not p["spec"].get("egress")]
        assert deny, f"{namespace} needs a default-deny policy"
    for p in policies:
        sel = p["spec"]["podSelector"]
        if sel:
            assert any(ns(w) == ns(p) and matches(sel, pod_labels(w)) for w in pods), \
                f"NetworkPolicy {p['metadata']['name']} selects no pods"
        for rule in p["spec"].get("ingress", []) + p["spec"].get("egress", []):
            for peer in rule.get("from", []) + rule.get("to", []):
                if "podSelector" in peer and "namespaceSelector" not in peer:
                    assert any(ns(w) == ns(p) and matches(peer["podSelector"], pod_labels(w)) for w in pods) \
                        or peer["podSelector"].get("matchLabels", {}).get("app.kubernetes.io/name") == "otel-sampler", \
                        f"{p['metadata']['name']}: peer {peer} matches no pod"


def allowed(docs, src: dict, dst: dict, port: int) -> bool:
    """Does some policy allow src -> dst:port, on both the egress and the ingress side?"""
    def peer_ok(peer, other, own_ns):
        if "namespaceSelector" in peer:
            if not matches(peer["namespaceSelector"], {"kubernetes.io/metadata.name": ns(other)}):
                return False
        elif ns(other) != own_ns:
            return False
        return "podSelector" not in peer or matches(peer["podSelector"], pod_labels(other))

    def side(kind, me, other, key):
        pols = [p for p in by_kind(docs, "NetworkPolicy") if ns(p) == ns(me)
                and matches(p["spec"]["podSelector"], pod_labels(me)) and kind in p["spec"]["policyTypes"]]
        for p in pols:
            for rule in p["spec"].get(kind.lower(), []):
                ports = [x["port"] for x in rule.get("ports", [])]
                if ports and port not in ports:
                    continue
                peers = rule.get(key)
                if not peers or any(peer_ok(x, other, ns(p)) for x in peers):
                    return True
        return False

    return side("Egress", src, dst, "to") and side("Ingress", dst, src, "from")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policies_allow_the_flows_the_fleet_needs(overlay):
    docs = render(overlay)
    w = {(ns(x), x["metadata"]["name"]): x for x in workloads(docs)}
    F, O = "fleet", "observability"
    flows = [
        ((F, "load"), (F, "api-gateway"), 8080),
        ((F, "api-gateway"), (F, "order-api"), 8081),
        ((F, "api-gateway"), (F, "notification"), 50052),
        ((F, "order-api"), (F, "postgres"), 5432),
        ((F, "order-api"), (F, "payment-api"), 50051),
        ((F, "payment-api"), (F, "payment-provider"), 8090),
        ((O, "tempo"), (O, "prometheus"), 9090),
        ((O, "grafana"), (O, "tempo"), 3200),
        ((O, "grafana"), (O, "prometheus"), 9090),
        ((O, "prometheus"), (O, "otel-collector"), 8888),
        ((O, "prometheus"), (O, "tempo"), 3200),
    ]
    flows += [((F, s), (O, "otel-collector"), 4317) for s in ("api-gateway", "order-api", "payment-api", "notification")]
    if overlay == "kind-two-tier":
        flows += [((O, "otel-collector"), (O, "otel-sampler"), 4317), ((O, "otel-sampler"), (O, "tempo"), 4318),
                  ((O, "prometheus"), (O, "otel-sampler"), 8888)]
    else:
        # OTLP/HTTP to Tempo (its 429 is retried; a gRPC refusal would be dropped).
        flows += [((O, "otel-collector"), (O, "tempo"), 4318)]
    for src, dst, port in flows:
        assert allowed(docs, w[src], w[dst], port), f"{src} -> {dst}:{port} is blocked"
    # ... and only those: a few flows that must stay closed.
    closed = [((F, "api-gateway"), (F, "postgres"), 5432), ((F, "payment-provider"), (O, "otel-collector"), 4317),
              ((F, "load"), (F, "order-api"), 8081), ((F, "notification"), (F, "payment-api"), 50051)]
    for src, dst, port in closed:
        assert not allowed(docs, w[src], w[dst], port), f"{src} -> {dst}:{port} should be denied"


def test_kind_overlay_exposes_what_the_cluster_config_maps():
    import yaml
    cluster = yaml.safe_load((K8S / "kind" / "cluster.yaml").read_text())
    mapped = {m["containerPort"]: m["hostPort"] for n in cluster["nodes"] for m in n.get("extraPortMappings", [])}
    node_ports = {p["nodePort"]: s["metadata"]["name"] for s in by_kind(render("kind"), "Service")
                  for p in s["spec"]["ports"] if "nodePort" in p}
    assert set(node_ports) == set(mapped), (node_ports, mapped)
    expect = {"api-gateway": 8080, "grafana": 3000, "tempo": 3200, "prometheus": 9090}
    for np_, svc in node_ports.items():
        assert mapped[np_] == expect[svc]
        assert 30000 <= np_ <= 32767


# The images kind v0.33.0 was released with ("Images pre-built for this release",
# https://github.com/kubernetes-sigs/kind/releases/tag/v0.33.0). Only these are supported with it.
KIND_V0_33_0_IMAGES = {
    "v1.37.0": "sha256:a1ed56cfb0e7b93589bdf97c8cd566405a265939e3620fc4f5de89adff580ae5",
    "v1.36.4": "sha256:099e049362a1526b2db71494e1947aae99bd16290d7c895f2b7ea312e3cbfaed",
    "v1.35.8": "sha256:07b2536e30b803ed61d1677a79df6115f798ce64c80f9e22f6ed45afd09323c0",
    "v1.34.11": "sha256:44e222ee2132dab25ff87301682f89eb82c7880ea3a1bf543bfe9708fd08d67d",
}
NODE_IMAGE = re.compile(r"^kindest/node:(v\d+\.\d+\.\d+)@(sha256:[0-9a-f]{64})$")


def test_kind_node_image_is_pinned_by_digest_everywhere():
    import yaml
    cluster = yaml.safe_load((K8S / "kind" / "cluster.yaml").read_text())
    images = {n.get("image") for n in cluster["nodes"]}
    assert len(images) == 1, images
    image = images.pop()
    m = NODE_IMAGE.match(image or "")
    assert m, f"{image}: pin the node image by digest (kindest/node:vX.Y.Z@sha256:...)"
    tag, digest = m.groups()
    assert KIND_V0_33_0_IMAGES.get(tag) == digest, f"{image} is not an image kind v0.33.0 lists"
    # The manifests are validated against the version the node runs.
    assert tag.lstrip("v").split(".")[:2] == K8S_VERSION.split(".")[:2], (tag, K8S_VERSION)
    make = re.search(r"^KIND_NODE_IMAGE \?= (\S+)$", (ROOT / "Makefile").read_text(), re.M)
    assert make and make.group(1) == image, "Makefile KIND_NODE_IMAGE and k8s/kind/cluster.yaml disagree"
    assert image in (ROOT / "docs" / "deploy.md").read_text(), "docs/deploy.md names another node image"


def test_head_overlay_sets_the_sdk_sampler():
    cm = [d for d in by_kind(render("kind-head"), "ConfigMap") if d["metadata"]["name"].startswith("fleet-otel")][0]
    assert cm["data"]["OTEL_TRACES_SAMPLER"] == "parentbased_traceidratio"
    assert cm["data"]["OTEL_TRACES_SAMPLER_ARG"] == "0.1"
    base = [d for d in by_kind(render("kind"), "ConfigMap") if d["metadata"]["name"].startswith("fleet-otel")][0]
    assert base["metadata"]["name"] != cm["metadata"]["name"], "a new hash must roll the pods"


def test_kind_up_loads_single_platform_archives():
    # `kind load docker-image` fails under Docker's containerd image store for multi-arch images
    # (kind #3795, #4224): kind-up must save each image for the node's platform and load the archive.
    out = subprocess.run(["make", "-n", "kind-up", "KIND_ARCH=arm64"], cwd=ROOT, capture_output=True,
                         text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert "load docker-image" not in out.stdout, "kind load docker-image breaks on the containerd image store"
    assert "docker image save --platform linux/arm64" in out.stdout
    assert "load image-archive" in out.stdout
    make = (ROOT / "Makefile").read_text()
    third_party = re.search(r"^THIRD_PARTY_IMAGES := ((?:.*\\\n)*.*)$", make, re.M).group(1).replace("\\\n", " ").split()
    loop = [line for line in out.stdout.splitlines() if line.startswith("for i in ")]
    assert loop, out.stdout
    for image in third_party + ["fleet/api-gateway:0.1.0", "fleet/fleet:0.1.0"]:
        assert f" {image} " in loop[0] or loop[0].split("; do")[0].endswith(f" {image}"), image
