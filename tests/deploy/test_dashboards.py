"""Provisioned dashboards: valid Grafana dashboard JSON whose queries name series the stack produces.

Series names and labels, and where they come from:
- Tempo metrics-generator (span metrics, service graphs; Tempo 2.10 docs "metrics-generator"):
  traces_spanmetrics_calls_total / _latency_bucket|_count|_sum / _size_total with labels service,
  span_name, span_kind, status_code, status_message (+ the configured dimensions, dots -> `_`);
  traces_service_graph_request_total / _request_failed_total / _request_server_seconds_* /
  _request_client_seconds_* / _unpaired_spans_total / _dropped_spans_total with labels client, server,
  connection_type. Exemplars carry `traceID`.
- Collector self-metrics (contrib 0.159, Prometheus reader on :8888; counters get `_total`):
  otelcol_receiver_accepted_spans_total, otelcol_receiver_refused_spans_total (receiver, transport),
  otelcol_exporter_sent_spans_total, otelcol_exporter_send_failed_spans_total (exporter), and the
  tail_sampling processor's documentation.md metrics (policy, sampled, decision),
  otelcol_loadbalancer_num_backends (resolver).
- Tempo self-metrics (scraped on :3200/metrics): tempo_distributor_spans_received_total (tenant).
Prometheus adds `job` and `instance` to every scraped series.
"""

import json
import re

import pytest

from conftest import CONFIG, load_yaml

DASHBOARDS = sorted((CONFIG / "grafana" / "dashboards").glob("*.json"))
PROVIDERS = load_yaml(CONFIG / "grafana" / "provisioning" / "dashboards" / "dashboards.yaml")
DATASOURCES = load_yaml(CONFIG / "grafana" / "provisioning" / "datasources" / "datasources.yaml")
TEMPO = load_yaml(CONFIG / "tempo" / "tempo.yaml")

SPANMETRICS_LABELS = {"service", "span_name", "span_kind", "status_code", "status_message", "le", "source"} | {
    d.replace(".", "_") for d in TEMPO["metrics_generator"]["processor"]["span_metrics"]["dimensions"]}
SERVICE_GRAPH_LABELS = {"client", "server", "connection_type", "le", "source"}
SCRAPE = {"job", "instance"}
TS = {"policy", "sampled", "decision", "worker"} | SCRAPE

SERIES = {
    "traces_spanmetrics_calls_total": SPANMETRICS_LABELS,
    "traces_spanmetrics_latency_bucket": SPANMETRICS_LABELS,
    "traces_spanmetrics_latency_count": SPANMETRICS_LABELS,
    "traces_spanmetrics_latency_sum": SPANMETRICS_LABELS,
    "traces_spanmetrics_size_total": SPANMETRICS_LABELS,
    "traces_service_graph_request_total": SERVICE_GRAPH_LABELS,
    "traces_service_graph_request_failed_total": SERVICE_GRAPH_LABELS,
    "traces_service_graph_request_server_seconds_bucket": SERVICE_GRAPH_LABELS,
    "traces_service_graph_request_client_seconds_bucket": SERVICE_GRAPH_LABELS,
    "traces_service_graph_unpaired_spans_total": SERVICE_GRAPH_LABELS,
    "traces_service_graph_dropped_spans_total": SERVICE_GRAPH_LABELS,
    "otelcol_receiver_accepted_spans_total": {"receiver", "transport"} | SCRAPE,
    "otelcol_receiver_refused_spans_total": {"receiver", "transport"} | SCRAPE,
    "otelcol_exporter_sent_spans_total": {"exporter"} | SCRAPE,
    "otelcol_exporter_send_failed_spans_total": {"exporter"} | SCRAPE,
    "otelcol_processor_tail_sampling_count_traces_sampled_total": TS,
    "otelcol_processor_tail_sampling_count_spans_sampled_total": TS,
    "otelcol_processor_tail_sampling_global_count_traces_sampled_total": TS,
    "otelcol_processor_tail_sampling_new_trace_id_received_total": TS,
    "otelcol_processor_tail_sampling_sampling_trace_dropped_too_early_total": TS,
    "otelcol_processor_tail_sampling_sampling_traces_on_memory": TS,
    "otelcol_processor_tail_sampling_sampling_policy_evaluation_error_total": TS,
    "otelcol_loadbalancer_num_backends": {"resolver"} | SCRAPE,
    "tempo_distributor_spans_received_total": {"tenant"} | SCRAPE,
}
SPAN_KINDS = {"SPAN_KIND_SERVER", "SPAN_KIND_CLIENT", "SPAN_KIND_INTERNAL", "SPAN_KIND_PRODUCER", "SPAN_KIND_CONSUMER"}
STATUS_CODES = {"STATUS_CODE_OK", "STATUS_CODE_ERROR", "STATUS_CODE_UNSET"}
PROMQL_WORDS = {"sum", "rate", "irate", "increase", "by", "without", "histogram_quantile", "count", "avg", "max",
                "min", "topk", "label_values", "on", "ignoring", "group_left", "group_right", "and", "or", "unless",
                "le", "offset", "bool", "clamp_min", "clamp_max", "abs", "vector", "scalar", "time"}
FLEET_SERVICES = {"api-gateway", "order-api", "payment-api", "notification"}
TAIL_POLICIES = {p["name"] for p in load_yaml(CONFIG / "otel-collector" / "tail.yaml")["processors"]["tail_sampling"]["policies"]}
EXPORTERS = {e for f in (CONFIG / "otel-collector").glob("*.yaml") for e in load_yaml(f)["exporters"]}


def all_panels(dash):
    for p in dash["panels"]:
        yield p
        yield from p.get("panels", [])


def prom_queries(dash):
    for p in all_panels(dash):
        for t in p.get("targets", []):
            if (t.get("datasource") or p.get("datasource") or {}).get("type") == "prometheus":
                yield t["expr"]
    for v in dash.get("templating", {}).get("list", []):
        if v.get("type") == "query" and v["datasource"]["type"] == "prometheus":
            yield v["query"]["query"] if isinstance(v["query"], dict) else v["query"]


def strip_strings(expr):
    return re.sub(r'"[^"]*"', '""', expr)


def check_promql(expr: str):
    expr = expr.replace("$__rate_interval", "5m").replace("$__interval", "1m")
    bare = strip_strings(expr)
    names = set(re.findall(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(?=\{|\[|\)|,|$)", bare))
    names |= set(re.findall(r"label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)", bare))
    metrics = {n for n in names if n not in PROMQL_WORDS and "_" in n and n not in SPANMETRICS_LABELS | TS}
    assert metrics, f"no series in {expr}"
    for m in metrics:
        assert m in SERIES, f"{m} is not a series the stack produces ({expr})"
    # Label matchers and grouping labels must exist on the series queried.
    labels_allowed = set().union(*(SERIES[m] for m in metrics))
    for selector in re.findall(r"\{([^}]*)\}", expr):
        for label, op, value in re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"([^"]*)"', selector):
            assert label in labels_allowed, f"label {label} not on {metrics} ({expr})"
            if label == "span_kind":
                assert value in SPAN_KINDS, value
            if label == "status_code":
                assert value in STATUS_CODES, value
            if label == "service" and op == "=":
                assert value in FLEET_SERVICES, value
            if label == "exporter" and op == "=":
                assert value in EXPORTERS, value
            if label == "job" and op == "=":
                assert value in {"otel-collector", "otel-sampler", "tempo", "prometheus"}, value
    for group in re.findall(r"\bby\s*\(([^)]*)\)", bare):
        for label in [g.strip() for g in group.split(",") if g.strip()]:
            assert label in labels_allowed, f"grouping by {label}, not a label of {metrics} ({expr})"


def test_two_dashboards_are_provisioned():
    assert {p.name for p in DASHBOARDS} == {"fleet-overview.json", "sampling.json"}
    provider = PROVIDERS["providers"][0]
    assert provider["type"] == "file" and provider["options"]["path"] == "/var/lib/grafana/dashboards"


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_is_grafana_dashboard_json(path):
    dash = json.loads(path.read_text())
    for key in ("uid", "title", "panels", "schemaVersion", "time"):
        assert key in dash, key
    assert re.fullmatch(r"[a-zA-Z0-9_-]{1,40}", dash["uid"])
    ids = [p["id"] for p in all_panels(dash)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    uids = {d["uid"] for d in DATASOURCES["datasources"]}
    types = {d["uid"]: d["type"] for d in DATASOURCES["datasources"]}
    for p in all_panels(dash):
        assert {"type", "title", "gridPos"} <= set(p)
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24
        if p["type"] in ("row", "text"):
            continue
        assert p["datasource"]["uid"] in uids and types[p["datasource"]["uid"]] == p["datasource"]["type"]
        assert p["targets"], p["title"]
        refs = [t["refId"] for t in p["targets"]]
        assert len(refs) == len(set(refs))


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_queries_name_real_series(path):
    dash = json.loads(path.read_text())
    queries = list(prom_queries(dash))
    assert queries
    for q in queries:
        check_promql(q)


def test_overview_has_red_per_service_and_endpoint_with_exemplars():
    dash = json.loads((CONFIG / "grafana" / "dashboards" / "fleet-overview.json").read_text())
    exprs = " ".join(prom_queries(dash))
    assert "traces_spanmetrics_calls_total" in exprs and "traces_spanmetrics_latency_bucket" in exprs
    assert "STATUS_CODE_ERROR" in exprs and "span_name" in exprs
    assert "traces_service_graph_request_total" in exprs
    assert any(t.get("exemplar") for p in all_panels(dash) for t in p.get("targets", []))


def test_sampling_dashboard_shows_received_vs_kept_per_policy():
    dash = json.loads((CONFIG / "grafana" / "dashboards" / "sampling.json").read_text())
    exprs = " ".join(prom_queries(dash))
    for series in ("otelcol_receiver_accepted_spans_total", "otelcol_exporter_sent_spans_total",
                   "otelcol_processor_tail_sampling_count_traces_sampled_total",
                   "otelcol_processor_tail_sampling_count_spans_sampled_total"):
        assert series in exprs
    assert "by (policy)" in exprs


def test_traces_to_metrics_queries_are_real():
    tempo = [d for d in DATASOURCES["datasources"] if d["uid"] == "tempo"][0]
    for q in tempo["jsonData"]["tracesToMetrics"]["queries"]:
        # $$ is provisioning's escape for a literal $; Grafana replaces $__tags with the span's tags.
        assert "$$__tags" in q["query"]
        check_promql(q["query"].replace("{$$__tags, ", "{").replace("{$$__tags}", ""))
    tags = tempo["jsonData"]["tracesToMetrics"]["tags"]
    assert {"key": "service.name", "value": "service"} in tags


def test_provisioning_files_escape_dollars():
    for path in (CONFIG / "grafana" / "provisioning").rglob("*.yaml"):
        text = "\n".join(line for line in path.read_text().splitlines() if not line.lstrip().startswith("#"))
        assert not re.search(r"(?<!\$)\$(?!\$)(?!\{)", text.replace("$$", "")), f"{path}: write a literal $ as $$"
