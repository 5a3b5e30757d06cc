"""helm/README.md's commands must keep working: every `helm install`/`helm upgrade --install`
in its bash blocks is rendered with `helm template` (same chart, same values), and the resource
names its kubectl commands use must be what the chart renders for that release."""

import re
import shlex

import pytest
import yaml

from conftest import HELM_DIR, ROOT, STACK, helm, offline_stack

README = HELM_DIR / "README.md"
DROP = {"--create-namespace", "--wait", "--atomic"}


def bash_commands():
    cmds = []
    for block in re.findall(r"```bash\n(.*?)```", README.read_text(), re.S):
        joined = re.sub(r"\\\n\s*", " ", block)
        cmds += [line.strip() for line in joined.splitlines() if line.strip() and not line.strip().startswith("#")]
    return cmds


def helm_installs():
    return [c for c in bash_commands() if re.match(r"helm (install|upgrade --install) ", c)]


def as_template(cmd):
    words = shlex.split(cmd)[1:]
    words = words[2:] if words[0] == "upgrade" else words[1:]  # drop install / upgrade --install
    return ["template", *[w for w in words if w not in DROP]]


def test_readme_has_install_commands():
    assert len(helm_installs()) >= 4, helm_installs()


@pytest.mark.parametrize("cmd", helm_installs())
def test_readme_install_command_renders(cmd, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    args = as_template(cmd)
    if "helm/tensorguard-stack" in args:
        args[args.index("helm/tensorguard-stack")] = str(offline_stack(tmp_path))
    out = helm(*args, "--kube-version", "1.27.0").stdout
    docs = [d for d in yaml.safe_load_all(out) if d]
    assert any(d["kind"] == "RayCluster" for d in docs)


def test_readme_resource_names_exist():
    # `tg` in namespace tensorguard, as in the README's commands.
    cmd = helm_installs()[0]
    docs = [d for d in yaml.safe_load_all(helm(*as_template(cmd), "--kube-version", "1.27.0").stdout) if d]
    names = {f"{d['kind'].lower()}/{d['metadata']['name']}" for d in docs}
    rc = next(d for d in docs if d["kind"] == "RayCluster")
    names.add(f"svc/{rc['metadata']['name']}-head-svc")  # made by KubeRay
    names |= {n.replace("service/", "svc/") for n in names}
    used = set()
    for c in bash_commands():
        if c.startswith("kubectl"):
            used |= set(re.findall(r"\b((?:svc|deployment|raycluster)/[a-z0-9-]+)", c))
    assert used, "the README should show kubectl commands"
    assert used <= names, f"README names resources the chart does not make: {sorted(used - names)}"


def test_readme_paths_exist():
    for path in set(re.findall(r"`((?:helm/)?(?:tensorguard|tensorguard-stack|image|test)/[\w./*-]+)`", README.read_text())):
        if "*" in path:
            continue
        full = ROOT / path if path.startswith("helm/") else HELM_DIR / path
        assert full.exists(), f"README mentions {path}, which does not exist"
    assert STACK.is_dir()
