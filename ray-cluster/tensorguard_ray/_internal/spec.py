"""The part of the job spec that the Ray side reads, re-validated on arrival.

The driver validates the whole spec with zod (driver/src/spec) before it submits. The entrypoint
checks again only what it acts on, so a hand-written or stale spec fails here with every bad
field named instead of as a Ray scheduling error or a Node stack trace later.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Mapping

STRATEGIES = ("PACK", "SPREAD")
_JOB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


class SpecError(ValueError):
    """The spec cannot run: ``problems`` lists one ``"path: message"`` per bad field."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("invalid job spec:\n" + "\n".join(f"  - {p}" for p in problems))


@dataclass(frozen=True)
class RaySpec:
    """What the entrypoint needs from the spec; units in names."""

    job_id: str
    worker_count: int
    cpus_per_worker: float
    gpus_per_worker: float
    coordinator_cpus: float
    placement_strategy: str
    max_restarts: int
    rounds: int
    # Extra Ray resources of the aggregator's bundle (coordinator.resources).
    coordinator_resources: dict = field(default_factory=dict)


def _num(obj: Mapping[str, Any], key: str, path: str, problems: list[str], *, default=None,
         minimum: float = 0, integer: bool = False, exclusive: bool = False):
    v = obj.get(key, default)
    ok = isinstance(v, (int, float)) and not isinstance(v, bool)
    if ok and integer:
        ok = float(v).is_integer()
    if ok:
        ok = v > minimum if exclusive else v >= minimum
    if not ok:
        kind = "an integer" if integer else "a number"
        rel = ">" if exclusive else "≥"
        problems.append(f"{path}.{key}: must be {kind} {rel} {minimum:g}, got {v!r}")
        return default if default is not None else minimum
    return int(v) if integer else float(v)


def parse_ray_spec(raw: Any, job_id: str) -> RaySpec:
    """Checks the fields the Ray side uses; raises SpecError listing every bad one."""
    problems: list[str] = []
    if not isinstance(job_id, str) or not _JOB_ID.match(job_id):
        problems.append(
            f"job id: {job_id!r} must be 1-100 characters of letters, digits, '.', '_' or '-'"
        )
    if not isinstance(raw, dict):
        raise SpecError(problems + [f"(root): must be an object, got {type(raw).__name__}"])
    workers = raw.get("workers")
    if not isinstance(workers, dict):
        problems.append("workers: must be an object with count, cpusPerWorker, ...")
        workers = {}
    count = _num(workers, "count", "workers", problems, minimum=1, integer=True)
    cpus = _num(workers, "cpusPerWorker", "workers", problems, default=1, exclusive=True)
    gpus = _num(workers, "gpusPerWorker", "workers", problems, default=0)
    restarts = _num(workers, "maxRestarts", "workers", problems, default=3, integer=True)
    strategy = workers.get("placementStrategy", "PACK")
    if strategy not in STRATEGIES:
        problems.append(
            f"workers.placementStrategy: must be one of {', '.join(STRATEGIES)}, got {strategy!r}"
        )
    coordinator = raw.get("coordinator", {})
    if not isinstance(coordinator, dict):
        problems.append("coordinator: must be an object")
        coordinator = {}
    coord_cpus = _num(coordinator, "cpus", "coordinator", problems, default=1, exclusive=True)
    extra = coordinator.get("resources", {})
    if not (isinstance(extra, dict) and all(
            isinstance(k, str) and k and isinstance(v, (int, float)) and not isinstance(v, bool)
            and v > 0 for k, v in extra.items())):
        problems.append("coordinator.resources: must map resource names to numbers > 0")
        extra = {}
    if "CPU" in extra or "GPU" in extra:
        problems.append("coordinator.resources: set CPUs with coordinator.cpus; the aggregator uses no GPU")
        extra = {}
    rounds = _num(raw, "rounds", "(root)", problems, minimum=1, integer=True)
    ckpt = raw.get("checkpoint")
    if ckpt is not None and not (isinstance(ckpt, dict) and isinstance(ckpt.get("dir", ""), str)):
        problems.append("checkpoint.dir: must be a path")
    if problems:
        raise SpecError(problems)
    return RaySpec(
        job_id=job_id,
        worker_count=count,
        cpus_per_worker=cpus,
        gpus_per_worker=gpus,
        coordinator_cpus=coord_cpus,
        coordinator_resources={k: float(v) for k, v in extra.items()},
        placement_strategy=strategy,
        max_restarts=restarts,
        rounds=rounds,
    )
