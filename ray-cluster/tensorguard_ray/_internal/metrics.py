"""Turns the Node programs' JSON metric lines into ray.util.metrics, tagged with job and worker.

Descriptions must be ASCII (Ray's C++ metric names and descriptions are).
Ray exports these through each node's metrics agent on the head's --metrics-export-port
(Prometheus text), with its ``ray_`` prefix: ``ray_tensorguard_epsilon``. Only public, aggregate
quantities arrive here (the Node side guarantees it): round numbers, timings, byte counts, ε, the
budget, held-out accuracy and loss.

The job's tag is ``tensorguard_job``, not ``job``: Prometheus attaches its own ``job`` label (the
scrape job's name) to every series and renames a scraped ``job`` label to ``exported_job`` unless
``honor_labels`` is set, which would break every dashboard query written against the tag.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Mapping

import ray
from ray.util import metrics

TAG_KEYS = ("tensorguard_job", "worker")
ROUND_SECONDS_BOUNDARIES = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300]
# How long linger() waits at most: longer than Ray's default 10 s report interval plus a margin,
# short enough for the entrypoint's 15 s teardown wait on stop().
MAX_LINGER_S = 12.0


def _number(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v)


def epsilon_budget_of(config: Mapping[str, Any]) -> float | None:
    """``privacy.epsilonBudget`` of a resolved job config; None when there is none (null)."""
    privacy = config.get("privacy")
    return _number(privacy.get("epsilonBudget")) if isinstance(privacy, Mapping) else None


def report_interval_s() -> float:
    """Ray's metrics report interval (RAY_metrics_report_interval_ms; Ray's default 10 s)."""
    try:
        return ray._config.metrics_report_interval_ms() / 1000.0
    except Exception:  # noqa: BLE001 - an older or uninitialised Ray: assume its default
        return 10.0


class ActorMetrics:
    """The tensorguard_* metrics of one actor; ``worker`` is the worker index or "aggregator".

    ``epsilon_budget``: the job's ε budget, exported once as ``tensorguard_epsilon_budget`` so
    that a dashboard can draw ε against it (the aggregator passes it; workers do not)."""

    def __init__(self, job_id: str, worker: str, epsilon_budget: float | None = None):
        self._tags = {"tensorguard_job": job_id, "worker": worker}
        self._lock = threading.Lock()
        self._last_record = 0.0
        self.round = metrics.Gauge("tensorguard_round", "Last completed training round.", TAG_KEYS)
        self.epsilon = metrics.Gauge(
            "tensorguard_epsilon", "Privacy loss epsilon spent so far (at the job's delta).", TAG_KEYS
        )
        self.epsilon_budget = metrics.Gauge(
            "tensorguard_epsilon_budget",
            "The job's hard epsilon budget (privacy.epsilonBudget); absent when it has none.",
            TAG_KEYS,
        )
        self.round_seconds = metrics.Histogram(
            "tensorguard_round_seconds",
            "Seconds per round (phase=total) and per named phase of a round.",
            boundaries=ROUND_SECONDS_BOUNDARIES,
            tag_keys=TAG_KEYS + ("phase",),
        )
        # A gauge holding this actor's running total, not a Counter: in Ray 2.52.1 a Counter on
        # the OpenCensus path (RAY_enable_open_telemetry=0, which token auth needs, see the
        # README) is a CythonCount that counts inc() calls instead of summing their values.
        # The total restarts at 0 with a restarted actor; rate() and increase() read that drop
        # as a reset, as they would a counter's.
        self._bytes_total = 0.0
        self.bytes_sent = metrics.Gauge(
            "tensorguard_bytes_sent",
            "Bytes a worker sent to the aggregator since its actor started (running total).",
            TAG_KEYS,
        )
        self.eval_accuracy = metrics.Gauge(
            "tensorguard_eval_accuracy", "Accuracy on the held-out set at the last evaluation.",
            TAG_KEYS,
        )
        self.eval_loss = metrics.Gauge(
            "tensorguard_eval_loss", "Mean loss on the held-out set at the last evaluation.",
            TAG_KEYS,
        )
        self.workers_alive = metrics.Gauge(
            "tensorguard_workers_alive", "Workers that took part in the last round.", TAG_KEYS
        )
        if epsilon_budget is not None:
            self.epsilon_budget.set(epsilon_budget, self._tags)
            self._touch()

    def _touch(self) -> None:
        with self._lock:
            self._last_record = time.monotonic()

    def observe(self, line: Mapping[str, Any]) -> None:
        """Records one {"type": "metrics", ...} line, and the final ε and round of a
        {"type": "done", ...} line; other types and bad fields are ignored."""
        kind = line.get("type")
        tags = self._tags
        if kind == "done":
            # The job's reported ε is the done line's: make it the gauge's last value.
            if (e := _number(line.get("epsilon"))) is not None:
                self.epsilon.set(e, tags)
                self._touch()
            if (r := _number(line.get("rounds"))) is not None:
                self.round.set(r, tags)
                self._touch()
            return
        if kind != "metrics":
            return
        self._touch()
        if (r := _number(line.get("round"))) is not None:
            self.round.set(r, tags)
        if (e := _number(line.get("epsilon"))) is not None:
            self.epsilon.set(e, tags)
        if (a := _number(line.get("eval_accuracy"))) is not None:
            self.eval_accuracy.set(a, tags)
        if (lo := _number(line.get("eval_loss"))) is not None:
            self.eval_loss.set(lo, tags)
        if (k := _number(line.get("workers_alive"))) is not None:
            self.workers_alive.set(k, tags)
        if (s := _number(line.get("round_seconds"))) is not None:
            self.round_seconds.observe(s, {**tags, "phase": "total"})
        phases = line.get("phase_seconds")
        if isinstance(phases, dict):
            for phase, v in phases.items():
                if (s := _number(v)) is not None and isinstance(phase, str):
                    self.round_seconds.observe(s, {**tags, "phase": phase})
        if (b := _number(line.get("bytes_sent"))) is not None and b > 0:
            with self._lock:  # stdout and stderr have a reader thread each
                self._bytes_total += b
                total = self._bytes_total
            self.bytes_sent.set(total, tags)

    def linger(self, max_s: float = MAX_LINGER_S) -> float:
        """Waits until Ray has had one full report interval (plus a margin) since the last value
        was recorded, so that the final values reach the metrics agent before the actor is
        killed; returns the seconds waited (at most ``max_s``)."""
        with self._lock:
            last = self._last_record
        if last == 0.0:
            return 0.0
        wait = min(max_s, last + report_interval_s() + 0.5 - time.monotonic())
        if wait <= 0:
            return 0.0
        time.sleep(wait)
        return wait
