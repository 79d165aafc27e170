"""Every key the Collector configs set has the type its component's config struct declares.

The table and the decoder's rules live in collector_types.py, next to this file.
"""

import pytest

import collector_types
from conftest import collector_configs, load_yaml

CONFIGS = {p.name: load_yaml(p) for p in collector_configs()}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_every_key_has_the_type_its_struct_declares(name):
    errors = collector_types.check_config(CONFIGS[name])
    assert not errors, f"{name} would not decode in otelcol-contrib 0.159.0:\n  " + "\n  ".join(errors)


def test_the_checker_rejects_what_the_collector_rejects():
    # The decoder does not weakly convert: each of these stops the Collector at startup.
    bad = {
        "exporters": {"load_balancing": {"resolver": {"dns": {"hostname": "otel-sampler", "port": 4317}}}},
        "processors": {"memory_limiter": {"check_interval": 1, "limit_percentage": "80"}},
        "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": 4317}}}},
    }
    errors = "\n".join(collector_types.check_config(bad))
    for path in ("dns.port", "check_interval", "limit_percentage", "grpc.endpoint"):
        assert path in errors, errors
    good = {"exporters": {"load_balancing": {"resolver": {"dns": {"hostname": "otel-sampler", "port": "4317"}}}}}
    assert collector_types.check_config(good) == []
