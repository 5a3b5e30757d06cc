"""Static checks of helm/image/Dockerfile (no Docker engine here to build it; check.sh also runs
hadolint on it). The Dockerfile is parsed into stages of (instruction, arguments)."""

import re
import shlex

import pytest

from conftest import HELM_DIR, ROOT

DOCKERFILE = HELM_DIR / "image" / "Dockerfile"
DOCKERIGNORE = HELM_DIR / "image" / "Dockerfile.dockerignore"
CREDENTIAL = re.compile(r"SECRET|TOKEN|PASSWORD|PASSWD|CREDENTIAL|KEY", re.I)


def instructions():
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out, buf = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not buf and (not stripped or stripped.startswith("#")):
            continue
        if buf and stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if stripped.endswith("\\"):
            buf += stripped[:-1] + " "
            continue
        buf += stripped
        word, _, rest = buf.partition(" ")
        out.append((word.upper(), rest.strip()))
        buf = ""
    assert not buf, "the Dockerfile ends inside a continued line"
    return out


def global_args():
    args = {}
    for ins, rest in instructions():
        if ins == "FROM":
            break
        if ins == "ARG":
            name, _, default = rest.partition("=")
            args[name] = default
    return args


def stages():
    """[{name, base, body: [(INSTRUCTION, args)]}] in order."""
    result = []
    for ins, rest in instructions():
        if ins == "FROM":
            words = rest.split()
            words = [w for w in words if not w.startswith("--platform")]
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            result.append({"name": name, "base": words[0], "body": []})
        elif result:
            result[-1]["body"].append((ins, rest))
    return result


def expand(text, args):
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m.group(1) or m.group(2), m.group(0)), text)


def final():
    return stages()[-1]


def test_multi_stage_build_keeps_compilers_out_of_the_runtime():
    all_stages = stages()
    names = [s["name"] for s in all_stages]
    assert len(all_stages) >= 3 and "build" in names
    runtime = final()
    copies = [rest for ins, rest in runtime["body"] if ins == "COPY"]
    assert any("--from=build" in c and "/app" in c for c in copies), copies
    # The runtime stage installs nothing with apt: compilers live only in the build stage.
    assert not [rest for ins, rest in runtime["body"] if ins == "RUN" and "apt-get install" in rest]
    build = next(s for s in all_stages if s["name"] == "build")
    assert any(ins == "RUN" and "g++" in rest for ins, rest in build["body"])
    # Every COPY --from names an earlier stage.
    for i, s in enumerate(all_stages):
        for ins, rest in s["body"]:
            m = re.search(r"--from=(\S+)", rest) if ins == "COPY" else None
            if m:
                assert m.group(1) in names[:i], f"stage {s['name']}: COPY --from={m.group(1)}"


def test_base_images_are_pinned():
    args = global_args()
    names = set()
    for s in stages():
        base = expand(s["base"], args)
        if "${VARIANT}" in s["base"] or "$VARIANT" in s["base"]:
            # FROM base-${VARIANT}: must resolve to a stage for every variant.
            for variant in ("cpu", "gpu"):
                assert expand(s["base"], {**args, "VARIANT": variant}) in names
        elif base in names:
            pass
        else:
            assert "$" not in base, f"unresolved base image {s['base']}"
            tag = base.split("@")[0].rsplit("/", 1)[-1].partition(":")[2]
            assert "@sha256:" in base or (tag and tag != "latest" and re.search(r"\d", tag)), (
                f"base image {base} is not pinned to a versioned tag"
            )
        if s["name"]:
            names.add(s["name"])


def test_variants_share_python_and_gpu_uses_cuda():
    args = global_args()
    assert args["VARIANT"] == "cpu"
    cpu, gpu = args["CPU_BASE_IMAGE"], args["GPU_BASE_IMAGE"]
    assert gpu.startswith("nvidia/cuda:") and "cudnn" in gpu
    # Ray needs one Python minor version across the cluster: same Ubuntu release underneath.
    cpu_release = re.search(r"ubuntu:?(\d\d\.\d\d)", cpu).group(1)
    gpu_release = re.search(r"ubuntu(\d\d\.\d\d)", gpu).group(1)
    assert cpu_release == gpu_release, (cpu, gpu)
    assert args["NODE_IMAGE"].startswith("node:20."), args["NODE_IMAGE"]


def test_setup_script_builds_the_project_with_the_variant():
    build = next(s for s in stages() if s["name"] == "build")
    assert ("ARG", "VARIANT") in build["body"]
    runs = [rest for ins, rest in build["body"] if ins == "RUN" and "scripts/setup.mjs" in rest]
    assert runs, "the build stage must run node scripts/setup.mjs"
    assert 'TENSORGUARD_TFJS_VARIANT="${VARIANT}"' in runs[0] and "node scripts/setup.mjs" in runs[0]
    # setup.mjs reads the pinned Ray from ray-cluster/requirements.lock; the build copies it.
    assert ("COPY", ". .") in build["body"]
    assert (ROOT / "ray-cluster" / "requirements.lock").is_file()
    assert re.search(r"^ray\[default\]==2\.52\.1$", (ROOT / "ray-cluster" / "requirements.lock").read_text(), re.M)
    assert (ROOT / "scripts" / "setup.mjs").is_file()


def test_runtime_user_is_numeric_and_not_root():
    users = [rest for ins, rest in final()["body"] if ins == "USER"]
    assert users, "the runtime stage sets no USER"
    user = users[-1]
    assert re.fullmatch(r"\d+(:\d+)?", user), f"USER {user} is not numeric uid[:gid] (runAsNonRoot needs numbers)"
    uid, _, gid = user.partition(":")
    assert int(uid) != 0 and (not gid or int(gid) != 0)
    # The chart's podSecurityContext runs as the same user.
    import yaml

    values = yaml.safe_load((HELM_DIR / "tensorguard" / "values.yaml").read_text())
    assert values["podSecurityContext"]["runAsUser"] == int(uid)
    assert values["podSecurityContext"]["runAsGroup"] == int(gid or uid)


def test_no_secrets_in_env_or_args():
    found = []
    for ins, rest in instructions():
        if ins == "ARG":
            name, _, value = rest.partition("=")
            if CREDENTIAL.search(name):
                found.append(f"ARG {rest}")
        elif ins == "ENV":
            # ENV a=1 b=2, or the legacy ENV a 1
            pairs = [w.partition("=") for w in shlex.split(rest)] if "=" in rest.split()[0] else [(rest.split()[0], "", "")]
            found += [f"ENV {k}" for k, _, _ in pairs if CREDENTIAL.search(k)]
    assert not found, f"credential-like build args/env in the image: {found}"


def test_no_ad_hoc_downloads():
    for ins, rest in instructions():
        assert not (ins == "ADD" and re.search(r"https?://", rest)), f"ADD {rest}"
        if ins == "RUN":
            assert not re.search(r"\b(curl|wget)\b[^&|;]*https?://", rest), f"RUN downloads: {rest[:120]}"


def test_healthcheck_is_decided():
    # Kubernetes ignores HEALTHCHECK; the image says so explicitly rather than inheriting one.
    checks = [rest for ins, rest in final()["body"] if ins == "HEALTHCHECK"]
    assert checks == ["NONE"], checks


def test_entrypoint_reaps_and_forwards_signals():
    body = dict((ins, rest) for ins, rest in final()["body"] if ins in ("ENTRYPOINT", "CMD"))
    assert body["ENTRYPOINT"] == '["/usr/bin/tini", "--"]'
    assert body["CMD"].startswith("[")  # exec form


def test_ray_and_tensorguard_are_on_path_for_login_shells():
    # KubeRay starts Ray with `bash -lc`; Debian-style /etc/profile resets PATH there.
    text = DOCKERFILE.read_text()
    assert "/etc/profile.d/tensorguard.sh" in text and "/app/.venv/bin" in text
    assert "/usr/local/bin/tensorguard" in text
    # KubeRay's probes of Ray pods run wget.
    assert re.search(r"apt-get install[^&]*\bwget\b", text)


@pytest.mark.parametrize(
    "pattern",
    [".git", "**/node_modules", ".venv", ".cache", "**/dist", "**/.env", "**/*.pem", "**/*.key", "**/keys.yaml", "**/.npmrc"],
)
def test_dockerignore_keeps_local_state_and_credentials_out(pattern):
    lines = [l.strip() for l in DOCKERIGNORE.read_text().splitlines() if l.strip() and not l.startswith("#")]
    assert pattern in lines


def test_build_context_readme_explains_the_root_context():
    readme = (HELM_DIR / "image" / "README.md").read_text()
    assert "docker build -f helm/image/Dockerfile" in readme
    assert "--build-arg VARIANT=gpu" in readme
    assert "Dockerfile.dockerignore" in readme
