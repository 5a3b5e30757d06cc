"""Shared helpers for the chart tests: run helm, render value sets, look up resources.

The tools and schemas are the ones helm/test/check.sh prepared (it exports their paths); run
the tests through it: `bash helm/test/check.sh`.
"""

import copy
import os
import shutil
import subprocess
from functools import lru_cache
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
HELM_DIR = ROOT / "helm"
CHART = HELM_DIR / "tensorguard"
STACK = HELM_DIR / "tensorguard-stack"
CACHE = ROOT / ".cache"

HELM = os.environ.get("HELM", str(CACHE / "bin" / "helm"))
KUBECONFORM = os.environ.get("KUBECONFORM", str(CACHE / "bin" / "kubeconform"))
SCHEMAS = Path(os.environ.get("SCHEMAS", str(CACHE / "helm" / "schemas")))
KUBE_VERSIONS = os.environ.get("KUBE_VERSIONS", "1.27.0 1.37.0").split()
KUBE_VERSION = KUBE_VERSIONS[0]
RELEASE = "tg"
NAMESPACE = "tensorguard"
VALUE_SETS = sorted(p.name[: -len("-values.yaml")] for p in (CHART / "ci").glob("*-values.yaml"))


def pytest_sessionstart(session):
    for tool in (HELM, KUBECONFORM):
        if not os.access(tool, os.X_OK):
            pytest.exit(f"{tool} is missing: run `bash helm/test/check.sh`, which builds it", returncode=2)


def helm(*args, check=True):
    """Runs helm; returns the CompletedProcess (stdout and stderr as text)."""
    res = subprocess.run([HELM, *args], capture_output=True, text=True)
    if check and res.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed:\n{res.stderr}")
    return res


def template_args(value_set=None, sets=(), values_files=(), chart=CHART):
    args = ["template", RELEASE, str(chart), "--namespace", NAMESPACE, "--kube-version", KUBE_VERSION]
    if value_set:
        args += ["--values", str(CHART / "ci" / f"{value_set}-values.yaml")]
    for f in values_files:
        args += ["--values", str(f)]
    for s in sets:
        args += ["--set", s]
    return args


@lru_cache(maxsize=None)
def _render(value_set, sets):
    out = helm(*template_args(value_set, sets)).stdout
    return tuple(d for d in yaml.safe_load_all(out) if d)


def render(value_set=None, *sets):
    """The rendered resources (fresh dicts) of a ci value set plus --set overrides."""
    return copy.deepcopy(list(_render(value_set, tuple(sets))))


def find(docs, kind, name=None):
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert found, f"no {kind} {name or ''} rendered; kinds: {sorted({d['kind'] for d in docs})}"
    return found


def one(docs, kind):
    found = find(docs, kind)
    assert len(found) == 1, f"expected one {kind}, got {[d['metadata']['name'] for d in found]}"
    return found[0]


def server_container(docs):
    dep = one(docs, "Deployment")
    (container,) = [c for c in dep["spec"]["template"]["spec"]["containers"] if c["name"] == "server"]
    return container


def pod_specs(docs):
    """(where, pod spec) for every pod the rendered resources make, RayCluster pods included."""
    specs = []
    for d in docs:
        if d["kind"] == "Deployment":
            specs.append((f"Deployment {d['metadata']['name']}", d["spec"]["template"]["spec"]))
        elif d["kind"] == "RayCluster":
            specs.append(("RayCluster head", d["spec"]["headGroupSpec"]["template"]["spec"]))
            for g in d["spec"].get("workerGroupSpecs") or []:
                specs.append((f"RayCluster worker group {g['groupName']}", g["template"]["spec"]))
    return specs


def worker_group(docs, name):
    rc = one(docs, "RayCluster")
    groups = {g["groupName"]: g for g in rc["spec"]["workerGroupSpecs"]}
    assert name in groups, f"no worker group {name}; groups: {sorted(groups)}"
    return groups[name]


def offline_stack(tmp_path):
    """A copy of the umbrella chart that renders offline: its only dependency is the packaged
    TensorGuard chart (the kuberay-operator chart cannot be fetched here)."""
    stack = tmp_path / "tensorguard-stack"
    shutil.copytree(STACK, stack, ignore=shutil.ignore_patterns("charts"))
    meta = yaml.safe_load((stack / "Chart.yaml").read_text())
    meta["dependencies"] = [d for d in meta["dependencies"] if d["name"] == "tensorguard"]
    (stack / "Chart.yaml").write_text(yaml.safe_dump(meta))
    helm("package", str(CHART), "--destination", str(stack / "charts"))
    return stack
