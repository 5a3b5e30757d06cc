"""ActorMetrics inside a real actor on the private head: synthetic contract lines in, the
``ray_tensorguard_*`` series out on the head's metrics export port (Prometheus text, parsed with
prometheus_client's parser). The real programs' lines reach Prometheus in
test/monitoring/prometheus.test.ts."""

import time
import urllib.request

import ray
from prometheus_client.parser import text_string_to_metric_families

from tensorguard_ray._internal.metrics import ActorMetrics, epsilon_budget_of, report_interval_s


@ray.remote(num_cpus=0.1)
class Probe:
    def __init__(self, job_id, worker, budget):
        self.metrics = ActorMetrics(job_id, worker, budget)

    def observe(self, line):
        self.metrics.observe(line)

    def linger(self):
        return self.metrics.linger()


def samples(port):
    """{(name, frozenset(labels)): value} of every sample on the metrics port."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def series(all_samples, name, **labels):
    """Values of the samples named ``name`` whose labels include ``labels``."""
    want = set(labels.items())
    return [v for (n, ls), v in all_samples.items() if n == name and want <= ls]


def wait_for(port, name, value, timeout_s=45, **labels):
    deadline, last = time.monotonic() + timeout_s, {}
    while time.monotonic() < deadline:
        try:
            last = samples(port)
        except OSError:
            last = {}
        if value in series(last, name, **labels):
            return last
        time.sleep(0.5)
    raise AssertionError(f"{name}{labels} never became {value}: {series(last, name, **labels)}")


def test_epsilon_budget_of_reads_privacy_epsilon_budget():
    assert epsilon_budget_of({"privacy": {"epsilonBudget": 3}}) == 3.0
    assert epsilon_budget_of({"privacy": {"epsilonBudget": None}}) is None
    assert epsilon_budget_of({"privacy": {"epsilonBudget": True}}) is None
    assert epsilon_budget_of({}) is None


def test_metric_lines_become_ray_tensorguard_series(ray_head):
    port = ray_head.metrics_port
    agg = Probe.remote("metrics-1", "aggregator", 8.0)
    worker = Probe.remote("metrics-1", "0", None)
    ray.get([
        agg.observe.remote({
            "type": "metrics", "round": 3, "rounds_total": 5, "epsilon": 1.25, "delta": 1e-5,
            "eval_accuracy": 0.625, "eval_loss": 0.4375, "workers_alive": 2,
            "round_seconds": 0.3, "phase_seconds": {"aggregate": 0.2, "unmask": 0.05},
        }),
        worker.observe.remote({
            "type": "metrics", "round": 3, "phase_seconds": {"local": 0.12}, "bytes_sent": 4096,
        }),
        worker.observe.remote({"type": "metrics", "round": 4, "bytes_sent": 1024}),
        # Bad fields are ignored, not recorded as zero.
        agg.observe.remote({"type": "metrics", "eval_loss": "nan", "epsilon": None}),
    ])
    tags = {"tensorguard_job": "metrics-1", "worker": "aggregator"}
    got = wait_for(port, "ray_tensorguard_eval_loss", 0.4375, **tags)
    got = wait_for(port, "ray_tensorguard_bytes_sent", 5120.0, tensorguard_job="metrics-1",
                   worker="0")
    assert series(got, "ray_tensorguard_epsilon", **tags) == [1.25]
    assert series(got, "ray_tensorguard_epsilon_budget", **tags) == [8.0]
    assert series(got, "ray_tensorguard_round", **tags) == [3.0]
    assert series(got, "ray_tensorguard_eval_accuracy", **tags) == [0.625]
    assert series(got, "ray_tensorguard_workers_alive", **tags) == [2.0]
    for phase, count in (("total", 1.0), ("aggregate", 1.0), ("unmask", 1.0)):
        assert series(got, "ray_tensorguard_round_seconds_count", phase=phase, **tags) == [count]
    # Filtered by job too: other tests' fake workers export series for worker 0 on the same head.
    mine = {"tensorguard_job": "metrics-1", "worker": "0"}
    assert series(got, "ray_tensorguard_round_seconds_count", phase="local", **mine) == [1.0]
    assert series(got, "ray_tensorguard_bytes_sent", **mine) == [5120.0]
    # A worker has no budget; and no series carries a plain `job` label, which Prometheus would
    # rename to exported_job.
    assert series(got, "ray_tensorguard_epsilon_budget", worker="0") == []
    assert not any(n.startswith("ray_tensorguard_") and any(k == "job" for k, _ in ls)
                   for n, ls in got)

    # The done line's ε becomes the gauge's final value, and linger() waits for Ray's next
    # report (at most one interval and a margin) so that it is exported before the actor dies.
    ray.get(agg.observe.remote({"type": "done", "status": "succeeded", "epsilon": 1.5,
                                "rounds": 5}))
    waited = ray.get(agg.linger.remote())
    assert 0 < waited <= report_interval_s() + 0.5
    got = samples(port)
    assert series(got, "ray_tensorguard_epsilon", **tags) == [1.5]
    assert series(got, "ray_tensorguard_round", **tags) == [5.0]
    ray.kill(agg)
    ray.kill(worker)


def test_linger_returns_at_once_when_nothing_was_recorded(ray_head):
    probe = Probe.remote("metrics-2", "1", None)
    try:
        assert ray.get(probe.linger.remote()) == 0.0
    finally:
        ray.kill(probe)
