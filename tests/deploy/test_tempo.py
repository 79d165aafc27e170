"""deploy/config/tempo/tempo.yaml: ingestion limits sized for a workshop room, in Tempo 2.10's scoped
overrides form (the only form Tempo 3.x accepts)."""

from conftest import CONFIG, load_yaml

TEMPO = load_yaml(CONFIG / "tempo" / "tempo.yaml")

# The room docs/deploy.md ("Ingestion limits") sizes for: 30 learners each running `fleet load` at
# 200 checkouts/s, ~20 spans per checkout, at most ~500 bytes of OTLP protobuf per span, and a trace
# live in the ingester for its ~1 s plus trace_idle_period (10 s, Tempo 2.10's default).
FLEETS, CHECKOUTS_PER_S, SPANS_PER_TRACE, BYTES_PER_SPAN, LIVE_S = 30, 200, 20, 500, 11
HEADROOM = 1.5

# grafana/tempo modules/overrides/config.go: Config{defaults, per_tenant_override_config,
# per_tenant_override_period, user_configurable_overrides}; Overrides{ingestion, read, compaction,
# metrics_generator, forwarders, global, storage, cost_attribution}; IngestionOverrides fields
# (yaml tags) are all Go `int` except rate_strategy (string).
OVERRIDES_KEYS = {"defaults", "per_tenant_override_config", "per_tenant_override_period", "user_configurable_overrides"}
DEFAULTS_KEYS = {"ingestion", "read", "compaction", "metrics_generator", "forwarders", "global", "storage",
                 "cost_attribution"}
INGESTION_INT_KEYS = {"rate_limit_bytes", "burst_size_bytes", "max_traces_per_user", "max_global_traces_per_user",
                      "tenant_shard_size"}


def ingestion() -> dict:
    return TEMPO["overrides"]["defaults"]["ingestion"]


def test_overrides_use_the_scoped_form():
    # The legacy flat form (`overrides: {ingestion_rate_limit_bytes: ...}`) is refused by Tempo 3.x, and
    # mixing both forms makes 2.10 fall back to legacy parsing and reject the file.
    overrides = TEMPO["overrides"]
    assert set(overrides) <= OVERRIDES_KEYS, set(overrides) - OVERRIDES_KEYS
    assert set(overrides["defaults"]) <= DEFAULTS_KEYS, set(overrides["defaults"]) - DEFAULTS_KEYS
    ing = ingestion()
    assert set(ing) <= INGESTION_INT_KEYS | {"rate_strategy"}, set(ing)
    for key in set(ing) & INGESTION_INT_KEYS:
        assert isinstance(ing[key], int) and not isinstance(ing[key], bool) and ing[key] > 0, (key, ing[key])


def test_ingestion_rate_fits_a_room_with_headroom():
    demand = FLEETS * CHECKOUTS_PER_S * SPANS_PER_TRACE * BYTES_PER_SPAN     # 60 MB/s
    assert ingestion()["rate_limit_bytes"] >= HEADROOM * demand, "Tempo would answer the room 429 RATE_LIMITED"
    assert ingestion()["rate_limit_bytes"] > 15_000_000, "no better than Tempo's default"


def test_burst_takes_one_large_push():
    # The token bucket must hold the largest single push: the 200k-span push at 500 B/span.
    assert ingestion()["burst_size_bytes"] >= max(200_000 * BYTES_PER_SPAN, ingestion()["rate_limit_bytes"])


def test_live_traces_fit_a_room():
    live = FLEETS * CHECKOUTS_PER_S * LIVE_S                                  # 66,000 traces
    assert ingestion()["max_traces_per_user"] >= HEADROOM * live, "LIVE_TRACES_EXCEEDED under a room's load"
