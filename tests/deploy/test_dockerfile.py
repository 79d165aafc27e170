"""The multi-stage Dockerfile: one compile, cached dependencies, small non-root runtimes."""

import tomllib

import pytest

from conftest import FLEET_TARGETS, ROOT
import dockerfile

STAGES = dockerfile.parse(ROOT / "Dockerfile")


def workspace_binaries() -> set[str]:
    ws = tomllib.loads((ROOT / "Cargo.toml").read_text())
    names = set()
    for member in ws["workspace"]["members"]:
        pkg = tomllib.loads((ROOT / member / "Cargo.toml").read_text())
        # A host-only tool (the benchmark) says so in its manifest and gets no image.
        if pkg["package"].get("metadata", {}).get("fleet", {}).get("image") is False:
            continue
        bins = [b["name"] for b in pkg.get("bin", [])]
        if bins:
            names.update(bins)
        elif (ROOT / member / "src" / "main.rs").exists():
            names.add(pkg["package"]["name"])
    return names


def test_every_target_exists():
    missing = [t for t in FLEET_TARGETS if t not in STAGES]
    assert not missing, f"Dockerfile lacks --target stages {missing}"


def test_targets_are_the_workspace_binaries():
    assert set(FLEET_TARGETS) == workspace_binaries(), "a binary of the workspace has no image target (or vice versa)"


def test_dependency_caching_stage_before_sources():
    builder = STAGES["builder"]
    text = "\n".join(builder.lines)
    assert "cargo chef cook" in text, "dependencies must be compiled from the recipe (cargo-chef)"
    cook = text.index("cargo chef cook")
    copy_src = text.index("COPY . .")
    assert cook < copy_src, "the dependency layer must come before the sources are copied"
    assert "cargo chef prepare" in "\n".join(STAGES["planner"].lines)


def test_the_workspace_is_compiled_once():
    builds = [(s.name, line) for s in STAGES.values() for line in s.lines
              if "cargo build" in line or "cargo install" in line and "cargo-chef" not in line]
    assert len(builds) == 1 and builds[0][0] == "builder", builds
    assert "--workspace" in builds[0][1] and "--release" in builds[0][1] and "--locked" in builds[0][1]


@pytest.mark.parametrize("target", FLEET_TARGETS)
def test_runtime_stage_is_small_and_non_root(target):
    chain = dockerfile.ancestry(STAGES, target)
    root = chain[-1]
    assert root.base.startswith("gcr.io/distroless/") and root.base.endswith(":nonroot"), root.base
    users = [u for st in chain for u in st.instruction("USER")]
    assert users and not users[0].startswith(("0", "root")), f"{target} must run as a non-root USER"
    binary = f"/usr/local/bin/{target}"
    assert binary in dockerfile.files_in(STAGES, target), f"{target} must contain {binary}"
    entry = [dockerfile.exec_form(e) for st in chain for e in st.instruction("ENTRYPOINT")]
    assert entry and entry[0] == [binary], f"{target}: ENTRYPOINT must be exec-form {binary}"
    # Only the binary comes from the builder: no toolchain, no sources.
    for st in chain:
        for src_from, srcs, _dest in st.copies():
            if src_from == "builder":
                assert srcs == [f"/out/{target}"], (target, srcs)


@pytest.mark.parametrize("target", [t for t in FLEET_TARGETS if t != "fleet"])
def test_image_healthcheck_uses_a_binary_in_the_image(target):
    chain = dockerfile.ancestry(STAGES, target)
    checks = [h for st in chain for h in st.instruction("HEALTHCHECK")]
    assert checks, f"{target} has no HEALTHCHECK"
    cmd = checks[0].split(" CMD ", 1)[1]
    argv = dockerfile.exec_form(cmd)
    assert argv, "HEALTHCHECK must use the exec form: the image has no shell"
    assert argv[0] in dockerfile.files_in(STAGES, target), f"{argv[0]} is not in the {target} image"


def test_healthprobe_is_a_static_busybox_installed_as_wget():
    probe = STAGES["healthprobe"]
    assert probe.base.startswith("busybox:") and probe.base.endswith("-musl"), "needs the static (musl) busybox"
    copies = STAGES["runtime"].copies()
    assert ("healthprobe", ["/bin/busybox"], "/usr/local/bin/wget") in copies


def test_dockerignore_keeps_the_context_small():
    lines = (ROOT / ".dockerignore").read_text().split()
    for needed in ("target/", ".git/"):
        assert needed in lines
