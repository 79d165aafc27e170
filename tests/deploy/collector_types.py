"""What the Collector's config structs declare, for every key our Collector configs set.

The Collector decodes YAML with mapstructure and `WeaklyTypedInput: false` (core confmap, v0.159.0):
a YAML int where the struct has a `string` is a startup error (`'port' expected type 'string', got
unconvertible type 'int'`), not a conversion. Only a few decode hooks apply: a string becomes a
`time.Duration` ("5s"), and a YAML int fits a float64 field. So each key below is the Go type of its
struct field, read from the component's config.go (otelcol-contrib 0.159.0 line, module noted per
table), and `check` applies the decoder's rules. A key missing here is a failure too: add it with the
type its struct declares and where it was read.

Spec language: "string" | "bool" | "int" | "uint" (rejects negatives) | "float" | "duration"
(Go duration string) | "list[string]"; a dict is a struct (only those keys); {"*": spec} is a map
with free keys; [spec] is a list of spec.
"""

from __future__ import annotations

import re

DURATION = re.compile(r"^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$")

# core config/configtls ClientConfig (embedded as `tls` by gRPC and HTTP clients).
TLS_CLIENT = {"insecure": "bool", "insecure_skip_verify": "bool", "ca_file": "string",
              "cert_file": "string", "key_file": "string", "server_name_override": "string"}

# core config/configretry BackOffConfig (`retry_on_failure` on every exporterhelper exporter).
RETRY = {"enabled": "bool", "initial_interval": "duration", "randomization_factor": "float",
         "multiplier": "float", "max_interval": "duration", "max_elapsed_time": "duration"}

# core exporter/exporterhelper/internal/queuebatch Config + BatchConfig (config.schema.yaml):
# queue_size/min_size/max_size are int64, num_consumers int, sizer a string enum.
SENDING_QUEUE = {
    "enabled": "bool", "wait_for_result": "bool", "block_on_overflow": "bool", "sizer": "string",
    "queue_size": "int", "num_consumers": "int", "storage": "string",
    "batch": {"flush_timeout": "duration", "min_size": "int", "max_size": "int", "sizer": "string"},
}

# core exporter/otlpexporter Config: TimeoutConfig (squash) + sending_queue + retry_on_failure +
# configgrpc ClientConfig (squash: endpoint string, compression string, tls, headers map[string]).
OTLP_GRPC_EXPORTER = {
    "endpoint": "string", "compression": "string", "timeout": "duration", "tls": TLS_CLIENT,
    "headers": {"*": "string"}, "balancer_name": "string", "wait_for_ready": "bool",
    "sending_queue": SENDING_QUEUE, "retry_on_failure": RETRY,
}

# core exporter/otlphttpexporter Config: confighttp ClientConfig (squash: endpoint string, timeout
# time.Duration, compression string, tls, headers map[string]) + sending_queue + retry_on_failure +
# traces_endpoint string + encoding string.
OTLP_HTTP_EXPORTER = {
    "endpoint": "string", "traces_endpoint": "string", "encoding": "string", "compression": "string",
    "timeout": "duration", "tls": TLS_CLIENT, "headers": {"*": "string"},
    "sending_queue": SENDING_QUEUE, "retry_on_failure": RETRY,
}

COMPONENTS = {
    "receivers": {
        # core receiver/otlpreceiver Config: protocols.grpc (configgrpc ServerConfig) and
        # protocols.http (confighttp ServerConfig); `endpoint` is a string in both.
        "otlp": {"protocols": {"grpc": {"endpoint": "string"}, "http": {"endpoint": "string"}}},
    },
    "processors": {
        # core processor/memorylimiterprocessor -> internal/memorylimiter Config: check_interval
        # time.Duration, limit_mib/spike_limit_mib/limit_percentage/spike_limit_percentage uint32.
        "memory_limiter": {"check_interval": "duration", "limit_mib": "uint", "spike_limit_mib": "uint",
                           "limit_percentage": "uint", "spike_limit_percentage": "uint"},
        # contrib processor/tailsamplingprocessor Config: decision_wait time.Duration, num_traces and
        # expected_new_traces_per_sec uint64, decision_cache.{sampled,non_sampled}_cache_size int;
        # PolicyCfg name/type string; StatusCodeCfg status_codes []string; LatencyCfg threshold_ms
        # int64; ProbabilisticCfg sampling_percentage float64, hash_salt string.
        "tail_sampling": {
            "decision_wait": "duration", "num_traces": "uint", "expected_new_traces_per_sec": "uint",
            "decision_cache": {"sampled_cache_size": "int", "non_sampled_cache_size": "int"},
            "policies": [{
                "name": "string", "type": "string",
                "status_code": {"status_codes": "list[string]"},
                "latency": {"threshold_ms": "int", "upper_threshold_ms": "int"},
                "probabilistic": {"sampling_percentage": "float", "hash_salt": "string"},
            }],
        },
        # contrib processor/transformprocessor Config: error_mode ottl.ErrorMode (a string),
        # trace_statements []common.ContextStatements {context string, conditions/statements []string}.
        "transform": {
            "error_mode": "string",
            "trace_statements": [{"context": "string", "conditions": "list[string]",
                                  "statements": "list[string]", "error_mode": "string"}],
        },
    },
    "exporters": {
        "otlp_grpc": OTLP_GRPC_EXPORTER,
        "otlp_http": OTLP_HTTP_EXPORTER,
        # contrib exporter/loadbalancingexporter Config: TimeoutConfig (squash), retry_on_failure,
        # sending_queue, routing_key string, protocol.otlp (an otlpexporter.Config), and
        # resolver.dns DNSResolver{Hostname string, Port string, Interval, Timeout time.Duration}.
        # Port is a STRING: `port: 4317` (an int) stops the Collector at startup.
        "load_balancing": {
            "timeout": "duration", "retry_on_failure": RETRY, "sending_queue": SENDING_QUEUE,
            "routing_key": "string",
            "protocol": {"otlp": OTLP_GRPC_EXPORTER},
            "resolver": {"dns": {"hostname": "string", "port": "string", "interval": "duration",
                                 "timeout": "duration"}},
        },
    },
    "extensions": {
        # contrib extension/healthcheckextension Config: confighttp ServerConfig squashed (endpoint string).
        "health_check": {"endpoint": "string"},
    },
    "connectors": {},
}

# core service Config: extensions []component.ID; pipelines map[pipeline.ID]{receivers, processors,
# exporters []component.ID}; telemetry.metrics: level configtelemetry.Level (string), readers
# []otelconf MetricReader, whose pull.exporter.prometheus has host *string and port *int.
SERVICE = {
    "extensions": "list[string]",
    "pipelines": {"*": {"receivers": "list[string]", "processors": "list[string]", "exporters": "list[string]"}},
    "telemetry": {
        "logs": {"level": "string", "encoding": "string"},
        "metrics": {"level": "string",
                    "readers": [{"pull": {"exporter": {"prometheus": {"host": "string", "port": "int"}}}}]},
    },
}


def _scalar_ok(value, spec: str) -> bool:
    if spec == "string":
        return isinstance(value, str)
    if spec == "bool":
        return isinstance(value, bool)
    if spec == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if spec == "uint":
        return isinstance(value, int) and not isinstance(value, bool) and value >= 0
    if spec == "float":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if spec == "duration":
        return isinstance(value, str) and bool(DURATION.match(value))
    if spec == "list[string]":
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    raise ValueError(f"unknown spec {spec!r}")


def check(value, spec, path: str, errors: list[str]) -> None:
    """Append to `errors` every place where `value` does not decode into `spec`."""
    if isinstance(spec, dict):
        if not isinstance(value, dict):
            errors.append(f"{path}: expected a mapping, got {type(value).__name__} {value!r}")
            return
        for key, sub in value.items():
            if "*" in spec:
                check(sub, spec["*"], f"{path}.{key}", errors)
            elif key not in spec:
                errors.append(f"{path}.{key}: not in the type table (tests/deploy/collector_types.py)")
            else:
                check(sub, spec[key], f"{path}.{key}", errors)
    elif isinstance(spec, list):
        if not isinstance(value, list):
            errors.append(f"{path}: expected a list, got {type(value).__name__} {value!r}")
            return
        for i, item in enumerate(value):
            check(item, spec[0], f"{path}[{i}]", errors)
    elif not _scalar_ok(value, spec):
        errors.append(f"{path}: expected {spec}, got {type(value).__name__} {value!r}")


def check_config(cfg: dict) -> list[str]:
    """Every key of a Collector config, against the tables above."""
    errors: list[str] = []
    for section, value in cfg.items():
        if section == "service":
            check(value, SERVICE, "service", errors)
            continue
        if section not in COMPONENTS:
            errors.append(f"{section}: unknown top-level section")
            continue
        for name, body in (value or {}).items():
            ctype = name.split("/")[0]
            spec = COMPONENTS[section].get(ctype)
            if spec is None:
                errors.append(f"{section}.{name}: component type {ctype} is not in the type table")
                continue
            check(body if body is not None else {}, spec, f"{section}.{name}", errors)
    return errors
