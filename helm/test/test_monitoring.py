"""Monitoring in the chart: the PodMonitor, the scrape annotations, the Grafana dashboard
ConfigMap and the Ray head's RAY_PROMETHEUS_HOST / RAY_GRAFANA_* settings (values: monitoring).
The dashboard's queries themselves run against a real Prometheus in
test/monitoring/prometheus.test.ts."""

import json

import pytest

from conftest import CHART, ROOT, find, helm, one, render, template_args

DASHBOARD = ROOT / "ray-cluster" / "monitoring" / "grafana" / "tensorguard.json"
RAY_CLUSTER = "tg-tensorguard"
DASHBOARD_ENV = ("RAY_PROMETHEUS_HOST", "RAY_PROMETHEUS_NAME", "RAY_GRAFANA_HOST",
                 "RAY_GRAFANA_IFRAME_HOST")


def ray_pods(docs):
    """(component, pod template) of the head and every worker group."""
    spec = one(docs, "RayCluster")["spec"]
    pods = [("head", spec["headGroupSpec"]["template"])]
    pods += [(g["groupName"], g["template"]) for g in spec["workerGroupSpecs"]]
    return pods


def metrics_port(pod):
    ray = pod["spec"]["containers"][0]
    return {p["name"]: p["containerPort"] for p in ray["ports"]}["metrics"]


def env_names(container):
    return {e["name"] for e in container.get("env", [])}


def test_off_by_default():
    docs = render()
    assert not [d for d in docs if d["kind"] == "PodMonitor"]
    assert not [d for d in docs if d["kind"] == "ConfigMap" and "grafana" in d["metadata"]["name"]]
    for _, pod in ray_pods(docs):
        assert not any(k.startswith("prometheus.io/")
                       for k in pod["metadata"].get("annotations", {})), pod["metadata"]
        assert not env_names(pod["spec"]["containers"][0]) & set(DASHBOARD_ENV)


def test_pod_monitor_scrapes_the_metrics_port_of_every_ray_pod():
    docs = render("production")
    pm = one(docs, "PodMonitor")
    assert pm["apiVersion"] == "monitoring.coreos.com/v1"
    assert pm["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    # KubeRay labels every pod of a RayCluster with ray.io/cluster=<name>: head and workers,
    # where TensorGuard's actors (and so their metrics) may run.
    assert pm["spec"]["selector"] == {"matchLabels": {"ray.io/cluster": one(docs, "RayCluster")["metadata"]["name"]}}
    (endpoint,) = pm["spec"]["podMetricsEndpoints"]
    assert endpoint["port"] == "metrics" and endpoint["path"] == "/metrics"
    pods = ray_pods(docs)
    assert len(pods) == 3  # head, cpu, gpu
    assert {metrics_port(p) for _, p in pods} == {8080}


def test_the_network_policy_admits_the_configured_scrapers_on_the_metrics_port():
    docs = render("production")
    scrapers = [r for np in find(docs, "NetworkPolicy") for r in np["spec"].get("ingress", [])
                if any(p.get("port") == 8080 for p in r.get("ports", []))]
    assert scrapers, "no ingress rule for port 8080"
    peers = [p for r in scrapers for p in r["from"]]
    assert any(p.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/name") == "prometheus"
               for p in peers), peers


def test_scrape_annotations_on_every_ray_pod_keep_the_groups_own():
    docs = render(None, "monitoring.scrapeAnnotations=true", "rayCluster.head.podAnnotations.team=ml")
    for name, pod in ray_pods(docs):
        a = pod["metadata"]["annotations"]
        assert a["prometheus.io/scrape"] == "true", name
        assert a["prometheus.io/port"] == str(metrics_port(pod)), name
        assert a["prometheus.io/path"] == "/metrics", name
    assert ray_pods(docs)[0][1]["metadata"]["annotations"]["team"] == "ml"


def test_dashboard_config_map_holds_the_shipped_dashboard():
    docs = render("production")
    (cm,) = [d for d in find(docs, "ConfigMap") if d["metadata"]["name"] == "tg-tensorguard-grafana-dashboard"]
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["annotations"] == {"grafana_folder": "TensorGuard"}
    shipped = json.loads(DASHBOARD.read_text())
    assert json.loads(cm["data"]["tensorguard.json"]) == shipped
    # The chart's copy (Helm reads files only inside the chart) is the shipped file.
    assert (CHART / "dashboards" / "tensorguard.json").read_text() == DASHBOARD.read_text()
    assert shipped["uid"] == "tensorguard"
    exprs = [t["expr"] for p in shipped["panels"] for t in p.get("targets", [])]
    assert all("ray_tensorguard_" in e for e in exprs)
    for name in ("epsilon", "epsilon_budget", "round", "round_seconds_bucket", "bytes_sent",
                 "workers_alive", "eval_accuracy", "eval_loss"):
        assert any(f"ray_tensorguard_{name}{{" in e for e in exprs), name


def test_ray_dashboard_metrics_view_settings_go_to_the_head_only():
    docs = render("production")
    head, *workers = [p for _, p in ray_pods(docs)]
    env = {e["name"]: e["value"] for e in head["spec"]["containers"][0]["env"]}
    assert env["RAY_PROMETHEUS_HOST"] == "http://kube-prometheus-stack-prometheus.monitoring.svc:9090"
    assert env["RAY_GRAFANA_HOST"] == "http://kube-prometheus-stack-grafana.monitoring.svc"
    assert env["RAY_GRAFANA_IFRAME_HOST"] == "https://grafana.example.com"
    assert "RAY_PROMETHEUS_NAME" not in env  # empty: Ray's default
    assert env["RAY_USAGE_STATS_ENABLED"] == "0"  # rayCluster.env is kept
    for w in workers:
        assert not env_names(w["spec"]["containers"][0]) & set(DASHBOARD_ENV)


@pytest.mark.parametrize("sets,message", [
    (["monitoring.rayDashboard.prometheusHost=prometheus:9090"], "at '/monitoring/rayDashboard/prometheusHost'"),
    (["monitoring.podMonitor.interval=15"], "at '/monitoring/podMonitor/interval'"),
    (["monitoring.podMonitor.enable=true"], "additional properties 'enable' not allowed"),
], ids=["host without scheme", "interval without unit", "misspelt key"])
def test_bad_monitoring_values_are_rejected(sets, message):
    res = helm(*template_args(), *[a for s in sets for a in ("--set", s)], check=False)
    assert res.returncode != 0, f"helm template accepted {sets}"
    assert message in res.stderr, res.stderr
