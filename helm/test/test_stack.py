"""The umbrella chart helm/tensorguard-stack: TensorGuard plus the optional KubeRay operator.

Its kuberay-operator dependency cannot be fetched here (the chart repository is unreachable), and
Helm refuses to template a chart with a missing dependency even when the dependency's condition is
false. So the declaration is checked as data, and the umbrella's own values are rendered through
a copy whose only dependency is the packaged TensorGuard chart.
"""

import re

import yaml

from conftest import CHART, HELM_DIR, STACK, helm, offline_stack, one

CHECK_SH = HELM_DIR / "test" / "check.sh"


def chart(path):
    return yaml.safe_load((path / "Chart.yaml").read_text())


def deps():
    return {d["name"]: d for d in chart(STACK)["dependencies"]}


def test_kuberay_operator_is_an_optional_dependency_off_by_default():
    op = deps()["kuberay-operator"]
    assert op["condition"] == "kuberay-operator.enabled"
    assert op["repository"] == "https://ray-project.github.io/kuberay-helm/"
    assert re.fullmatch(r"\d+\.\d+\.\d+", op["version"]), "pin an exact chart version"
    values = yaml.safe_load((STACK / "values.yaml").read_text())
    assert values["kuberay-operator"]["enabled"] is False


def test_kuberay_versions_agree():
    # The operator the umbrella installs, the CRD check.sh validates the RayCluster against and
    # the version the chart says it was written for are one version.
    op = deps()["kuberay-operator"]["version"]
    pinned = re.search(r"^KUBERAY_VERSION=v(\S+)$", CHECK_SH.read_text(), re.M).group(1)
    assert op == pinned == chart(CHART)["annotations"]["tensorguard.io/kuberay-version"]


def test_tensorguard_dependency_is_this_repositorys_chart():
    tg = deps()["tensorguard"]
    assert tg["repository"] == "file://../tensorguard"
    assert tg["version"] == chart(CHART)["version"]


def test_application_chart_has_no_dependencies():
    # Otherwise `helm template/install helm/tensorguard` would need the KubeRay chart repository.
    assert not chart(CHART).get("dependencies")


def test_helm_lists_the_dependencies_offline():
    out = helm("dependency", "list", str(STACK)).stdout
    assert re.search(r"kuberay-operator\s+1\.5\.1\s+https://ray-project\.github\.io/kuberay-helm/", out), out
    assert re.search(r"tensorguard\s+0\.1\.0\s+file://\.\./tensorguard", out), out


def test_missing_dependency_blocks_template_even_when_disabled():
    # The reason for the umbrella; if a future Helm relaxes this, the dependency could move back
    # into helm/tensorguard.
    res = helm("template", "x", str(STACK), check=False)
    assert res.returncode != 0
    assert "missing in charts/ directory" in res.stderr, res.stderr


def test_umbrella_values_render_through_the_subchart(tmp_path):
    stack = offline_stack(tmp_path)
    lint = helm("lint", "--strict", str(stack), check=False)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    docs = [
        d
        for d in yaml.safe_load_all(
            helm(
                "template", "tg", str(stack), "--namespace", "tensorguard", "--kube-version", "1.27.0",
                "--set", "tensorguard.rayCluster.gpuWorkers.enabled=true",
                "--set", "tensorguard.rayCluster.gpuWorkers.replicas=1",
            ).stdout
        )
        if d
    ]
    rc = one(docs, "RayCluster")
    assert [g["groupName"] for g in rc["spec"]["workerGroupSpecs"]] == ["cpu", "gpu"]
    assert not [d for d in docs if d["kind"] in ("CustomResourceDefinition", "ClusterRole")]
    # The subchart's schema still guards values given through the umbrella.
    bad = helm("template", "tg", str(stack), "--set", "tensorguard.server.replicaCount=0", check=False)
    assert bad.returncode != 0 and "at '/server/replicaCount': minimum: got 0, want 1" in bad.stderr, bad.stderr
