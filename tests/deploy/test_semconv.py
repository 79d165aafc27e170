"""semconv/: the Weaver registry of the fleet's own attributes is well-formed and matches the code."""

import re

import pytest
import yaml

from conftest import ROOT

SEMCONV = ROOT / "semconv"
MANIFEST = yaml.safe_load((SEMCONV / "registry_manifest.yaml").read_text())
GROUPS = [g for f in sorted((SEMCONV / "registry").glob("*.yaml")) for g in yaml.safe_load(f.read_text())["groups"]]
ATTRIBUTES = [a for g in GROUPS for a in g.get("attributes", []) if "id" in a]
REFS = [a["ref"] for g in GROUPS for a in g.get("attributes", []) if "ref" in a]
EVENTS = {g["name"] for g in GROUPS if g["type"] == "event"}
# Weaver's primitive attribute types (semconv syntax v1); an enum is a mapping with `members`.
PRIMITIVE_TYPES = {"string", "int", "double", "boolean", "string[]", "int[]", "double[]", "boolean[]",
                   "any", "template[string]"}


def test_manifest_names_the_registry_and_pins_the_otel_dependency():
    assert re.fullmatch(r"[a-z][a-z0-9_]*", MANIFEST["name"]), MANIFEST["name"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", MANIFEST["semconv_version"]), MANIFEST["semconv_version"]
    assert re.fullmatch(r"https://[^ ]+/", MANIFEST["schema_base_url"]), MANIFEST["schema_base_url"]
    [dep] = MANIFEST["dependencies"]
    assert dep["name"]
    # A released version of the OTel registry's model directory, the one the fleet follows (v1.44).
    assert re.fullmatch(r"https://github\.com/open-telemetry/semantic-conventions/archive/refs/tags/"
                        r"v1\.44\.\d+\.zip\[model\]", dep["registry_path"]), dep["registry_path"]


def test_groups_are_well_formed():
    ids = [g["id"] for g in GROUPS]
    assert len(ids) == len(set(ids)), ids
    for g in GROUPS:
        assert g["type"] in {"attribute_group", "event", "span", "metric", "entity"}, g["id"]
        assert isinstance(g.get("brief"), str) and g["brief"].strip(), g["id"]
        if g["type"] == "event":
            assert g["stability"] == "development" and g["name"], g["id"]


@pytest.mark.parametrize("attr", ATTRIBUTES, ids=lambda a: a["id"])
def test_every_attribute_has_id_type_brief_examples_and_stability(attr):
    assert re.fullmatch(r"(app|fault)(\.[a-z][a-z0-9_]*)+", attr["id"]), "the fleet's namespaces are app. and fault."
    t = attr["type"]
    if isinstance(t, dict):
        members = t["members"]
        assert members and all({"id", "value", "brief", "stability"} <= set(m) for m in members), attr["id"]
        assert len({m["value"] for m in members}) == len(members), attr["id"]
    else:
        assert t in PRIMITIVE_TYPES, (attr["id"], t)
    assert isinstance(attr.get("brief"), str) and attr["brief"].strip(), attr["id"]
    assert attr["stability"] == "development", attr["id"]
    examples = attr.get("examples")
    assert examples not in (None, [], ""), f"{attr['id']} needs examples"
    want = {"string": str, "int": int}.get(t if isinstance(t, str) else "string")
    for ex in examples if isinstance(examples, list) else [examples]:
        assert want is None or (isinstance(ex, want) and not isinstance(ex, bool)), (attr["id"], ex)


def test_ids_are_unique_and_refs_resolve():
    ids = [a["id"] for a in ATTRIBUTES]
    assert len(ids) == len(set(ids)), ids
    assert set(REFS) <= set(ids), set(REFS) - set(ids)


def emitted_by_the_code() -> tuple[set, set]:
    """app.*/fault.* attribute keys and fault.* event names the services set, from the Rust source."""
    attrs, events = set(), set()
    key = r"((?:app|fault)(?:\.[a-z][a-z0-9_]*)+)"
    for path in list((ROOT / "services").rglob("*.rs")) + list((ROOT / "crates").rglob("*.rs")):
        rel = path.relative_to(ROOT).as_posix()
        # Tests, the bench's synthetic spans and the trace reader consume attributes, they don't emit them.
        if "/tests/" in rel or rel.startswith("crates/bench/") or rel.startswith("crates/fleet/src/traces/"):
            continue
        text = path.read_text()
        attrs |= set(re.findall(r"(?:^|[,(])\s*" + key + r"\s*=(?!=)", text, re.M))   # tracing span fields
        attrs |= set(re.findall(r"\.record\(\s*\"" + key + "\"", text))               # Span::record
        attrs |= set(re.findall(r"KeyValue::new\(\s*\"" + key + "\"", text))           # OpenTelemetry attributes
        events |= set(re.findall(r"add_event\(\s*\"" + key + "\"", text))
    return attrs, events


def test_the_registry_declares_exactly_what_the_code_emits():
    attrs, events = emitted_by_the_code()
    assert attrs, "found no app./fault. attribute in the source: the scan is broken"
    declared = {a["id"] for a in ATTRIBUTES}
    assert attrs == declared, f"emitted but not declared: {attrs - declared}; declared but not emitted: {declared - attrs}"
    assert events == EVENTS, (events, EVENTS)


def test_the_readme_documents_every_attribute():
    readme = (SEMCONV / "README.md").read_text()
    for a in ATTRIBUTES:
        assert f"| `{a['id']}` |" in readme, f"semconv/README.md has no row for {a['id']}"
