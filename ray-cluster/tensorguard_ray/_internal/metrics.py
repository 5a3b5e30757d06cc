"""Turns the Node programs' JSON metric lines into ray.util.metrics, tagged with job and worker.

Descriptions must be ASCII (Ray's C++ metric names and descriptions are).
Ray exports these through each node's metrics agent on the head's --metrics-export-port
(Prometheus text); the names gain no prefix there. Only public, aggregate quantities arrive here
(the Node side guarantees it): round numbers, timings, byte counts, ε, held-out accuracy.
"""

from __future__ import annotations

from typing import Any, Mapping

from ray.util import metrics

TAG_KEYS = ("job", "worker")
ROUND_SECONDS_BOUNDARIES = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300]


def _number(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v)


class ActorMetrics:
    """The tensorguard_* metrics of one actor; ``worker`` is the worker index or "aggregator"."""

    def __init__(self, job_id: str, worker: str):
        self._tags = {"job": job_id, "worker": worker}
        self.round = metrics.Gauge("tensorguard_round", "Last completed training round.", TAG_KEYS)
        self.epsilon = metrics.Gauge(
            "tensorguard_epsilon", "Privacy loss epsilon spent so far (at the job's delta).", TAG_KEYS
        )
        self.round_seconds = metrics.Histogram(
            "tensorguard_round_seconds",
            "Seconds per round (phase=total) and per named phase of a round.",
            boundaries=ROUND_SECONDS_BOUNDARIES,
            tag_keys=TAG_KEYS + ("phase",),
        )
        self.bytes_sent = metrics.Counter(
            "tensorguard_bytes_sent", "Bytes a worker sent to the aggregator.", TAG_KEYS
        )
        self.eval_accuracy = metrics.Gauge(
            "tensorguard_eval_accuracy", "Accuracy on the held-out set at the last evaluation.",
            TAG_KEYS,
        )
        self.workers_alive = metrics.Gauge(
            "tensorguard_workers_alive", "Workers that took part in the last round.", TAG_KEYS
        )

    def observe(self, line: Mapping[str, Any]) -> None:
        """Records one {"type": "metrics", ...} line; other types and bad fields are ignored."""
        if line.get("type") != "metrics":
            return
        tags = self._tags
        if (r := _number(line.get("round"))) is not None:
            self.round.set(r, tags)
        if (e := _number(line.get("epsilon"))) is not None:
            self.epsilon.set(e, tags)
        if (a := _number(line.get("eval_accuracy"))) is not None:
            self.eval_accuracy.set(a, tags)
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
            self.bytes_sent.inc(b, tags)
