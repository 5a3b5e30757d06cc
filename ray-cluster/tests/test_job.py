"""run_job against a real private Ray head, with the contract's fixture Node programs
(tests/fixtures, see conftest.fixture_launch for why they are kept here). The same scenarios run
with the real worker-ts programs in test/ray/train.test.ts.

One module-scoped head serves every test: starting one costs ~15 s on this machine.
"""

import json
import os
import re
import threading
import time
import urllib.request

import pytest
import ray

from tensorguard_ray import (
    NAMESPACE,
    ResourcesUnavailableError,
    SpecError,
    aggregator_name,
    run_job,
    worker_name,
)
from test_node_process import _gone, _wait_gone


def spec(tmp_path, rounds=6, count=3, **workers):
    """A run config (the fixture programs read only rounds, privacy.delta and checkpoint.dir)."""
    return {
        "name": "t",
        "model": {"kind": "mlp"},
        "dataset": {"format": "idx", "preset": "fashion-mnist"},
        "workers": {"count": count, "cpusPerWorker": 0.5, "maxRestarts": 3, **workers},
        "coordinator": {"cpus": 0.5},
        "rounds": rounds,
        "roundTimeoutMs": 60000,
        "privacy": {"clipNorm": 1, "noiseMultiplier": 1, "delta": 1e-5, "epsilonBudget": None,
                    "samplingRate": 0.01},
        "secureAggregation": {"quorum": 2},
        "optimizer": {"kind": "sgd", "learningRate": 0.1},
        "checkpoint": {"dir": str(tmp_path / "ckpt"), "everyRounds": 1},
    }


class Running:
    """run_job in a background thread, so the test can act on the job while it runs."""

    def __init__(self, spec, job_id, launch):
        self.job_id = job_id
        self.progress = []
        self.result = None
        self.error = None
        self.thread = threading.Thread(target=self._run, args=(spec, launch), daemon=True)
        self.thread.start()

    def _run(self, spec, launch):
        try:
            self.result = run_job(spec, self.job_id, launch, emit=self.progress.append)
        except BaseException as err:  # noqa: BLE001
            self.error = err

    def join(self, timeout_s=120):
        self.thread.join(timeout_s)
        assert not self.thread.is_alive(), "job did not finish"
        if self.error:
            raise self.error
        return self.result

    def actor(self, name, timeout_s=60):
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                return ray.get_actor(name, namespace=NAMESPACE)
            except ValueError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def info(self, name, timeout_s=60):
        return ray.get(self.actor(name).info.remote(), timeout=timeout_s)

    def wait_round(self, r, timeout_s=60):
        deadline = time.monotonic() + timeout_s
        while not any(p["round"] >= r for p in self.progress):
            assert time.monotonic() < deadline, f"no round {r} in {timeout_s}s"
            assert self.thread.is_alive(), f"job ended early: {self.result} {self.error}"
            time.sleep(0.1)


def _all_pids(run, count):
    return [run.info(worker_name(run.job_id, i))["pid"] for i in range(count)] + [
        run.info(aggregator_name(run.job_id))["pid"]
    ]


def test_job_completes_with_named_actors_and_metrics(ray_head, fixture_launch, tmp_path):
    from ray.util.state import list_actors

    run = Running(spec(tmp_path, rounds=8), "happy-1", fixture_launch)
    run.wait_round(2)
    names = {a.name for a in list_actors(filters=[("state", "=", "ALIVE")], limit=1000,
                                         address=ray_head.dashboard_url)}
    assert {"tg-happy-1-aggregator", "tg-happy-1-worker-0", "tg-happy-1-worker-1",
            "tg-happy-1-worker-2"} <= names
    pids = _all_pids(run, 3)
    info = run.info(worker_name("happy-1", 1))
    assert info["state"] == "RUNNING" and info["role"] == "worker"

    # Prometheus text on the head's metrics export port (Ray prefixes application metrics with
    # "ray_"); export lags by several seconds.
    deadline, text = time.monotonic() + 45, ""
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{ray_head.metrics_port}/metrics",
                                        timeout=5) as r:
                text = r.read().decode()
        except OSError:
            text = ""
        if re.search(r'^ray_tensorguard_epsilon\{[^}]*job="happy-1"', text, re.M):
            break
        time.sleep(1)
    assert re.search(r'^ray_tensorguard_epsilon\{[^}]*worker="aggregator"', text, re.M), text[-2000:]

    result = run.join()
    assert result["status"] == "succeeded", result
    assert result["epsilon"] == pytest.approx(2.0) and result["rounds"] == 8
    assert os.path.isfile(result["checkpoint"])
    assert [p["round"] for p in run.progress] == list(range(1, 9))
    assert all(p["type"] == "progress" and p["rounds_total"] == 8 for p in run.progress)
    for pid in pids:
        assert _wait_gone(pid), f"orphan Node process {pid}"
    with pytest.raises(ValueError):
        ray.get_actor(aggregator_name("happy-1"), namespace=NAMESPACE)


@pytest.mark.parametrize("how", ["node-process", "actor"])
def test_worker_killed_mid_job_is_restarted_and_rejoins(ray_head, fixture_launch, tmp_path, how):
    job = f"kill-{how}"
    run = Running(spec(tmp_path, rounds=14), job, fixture_launch)
    run.wait_round(3)
    before = _all_pids(run, 3)
    victim = run.info(worker_name(job, 1))
    if how == "node-process":
        os.kill(victim["pid"], 9)
    else:
        ray.kill(run.actor(worker_name(job, 1)), no_restart=False)
    assert _wait_gone(victim["pid"]), "the killed worker's Node child is still running"
    # The restarted actor gets a new generation and a new child, which rejoins.
    deadline = time.monotonic() + 60
    while True:
        try:
            after = run.info(worker_name(job, 1), timeout_s=10)
            if after["generation"] != victim["generation"]:
                break
        except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
            pass
        assert time.monotonic() < deadline, "the worker actor was not restarted"
        time.sleep(0.3)
    assert after["pid"] != victim["pid"] and after["state"] == "RUNNING"
    if how == "actor":
        assert after["actor_pid"] != victim["actor_pid"]
    result = run.join(180)
    assert result["status"] == "succeeded", result
    assert result["rounds"] == 14
    with open(result["privacy_report"]) as f:
        assert json.load(f)["joins"] == 4  # three first joins and the rejoin
    for pid in before + [after["pid"]]:
        assert _wait_gone(pid), f"orphan Node process {pid}"


def test_resources_that_never_appear_fail_clearly(ray_head, fixture_launch, tmp_path):
    with pytest.raises(ResourcesUnavailableError) as e:
        run_job(spec(tmp_path, cpusPerWorker=64), "too-big", fixture_launch,
                placement_timeout_s=2, emit=lambda _: None)
    msg = str(e.value)
    assert "3 worker bundles of {'CPU': 64.0}" in msg and "Lower workers.count" in msg
    # Nothing is left behind: the placement group is removed.
    from ray.util.placement_group import placement_group_table

    states = [pg["state"] for pg in placement_group_table().values() if pg["name"] == "tg-too-big-pg"]
    assert states and all(s == "REMOVED" for s in states)


def test_bad_spec_is_refused_before_placement(ray_head, fixture_launch, tmp_path):
    bad = spec(tmp_path)
    bad["workers"]["count"] = 0
    with pytest.raises(SpecError, match=r"workers\.count: must be an integer ≥ 1 and ≤ 256, got 0"):
        run_job(bad, "bad-spec", fixture_launch, emit=lambda _: None)


def test_failed_coordinator_fails_the_job_without_restarts(ray_head, fixture_launch, tmp_path):
    # A round that cannot finish in time: the coordinator prints done/failed and exits 1; the
    # job fails (it is not retried by restarting the aggregator).
    s = spec(tmp_path, rounds=3)
    s["roundTimeoutMs"] = 1
    result = run_job(s, "fails-1", fixture_launch, emit=lambda _: None)
    assert result["status"] == "failed" and "timed out" in result["error"]
