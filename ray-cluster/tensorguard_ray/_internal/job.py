"""The job controller run by the entrypoint: placement group, actors, progress, result, cleanup.

Policy (what the outcome is) is decided from the coordinator's done line; this module only acts:
it places and starts the actors, relays progress, and tears everything down on every exit path.
"""

from __future__ import annotations

import json
import time
from typing import Any, Callable, Optional

import ray
from ray.exceptions import GetTimeoutError, RayActorError, RayTaskError
from ray.util.placement_group import placement_group, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from .actors import NAMESPACE, aggregator_name, remote_classes, worker_name
from .errors import first_cause, one_line
from .launch import Launch
from .pki import JobPki
from .spec import RaySpec, parse_ray_spec


class ResourcesUnavailableError(RuntimeError):
    """The placement group was not placed in time: the cluster lacks the resources."""


class JobFailedError(RuntimeError):
    """The job could not run to a done line (e.g. the aggregator died beyond max_restarts)."""


def _bundles(rs: RaySpec) -> list[dict[str, float]]:
    worker: dict[str, float] = {"CPU": rs.cpus_per_worker}
    if rs.gpus_per_worker > 0:
        worker["GPU"] = rs.gpus_per_worker
    return [{"CPU": rs.coordinator_cpus, **rs.coordinator_resources}] + [
        dict(worker) for _ in range(rs.worker_count)
    ]


def _shortage(rs: RaySpec, bundles: list[dict[str, float]]) -> str:
    """What the job needs and what the cluster has: resource counts only, nothing private."""
    need = {k: sum(b.get(k, 0) for b in bundles) for k in ("CPU", "GPU")}
    have = ray.cluster_resources()
    free = ray.available_resources()
    return (
        f"it needs {rs.worker_count} worker bundles of {bundles[1]} plus a coordinator bundle of "
        f"{bundles[0]} ({rs.placement_strategy}), in all CPU {need['CPU']:g}, GPU {need['GPU']:g}; "
        f"the cluster has CPU {have.get('CPU', 0):g} (free {free.get('CPU', 0):g}), "
        f"GPU {have.get('GPU', 0):g} (free {free.get('GPU', 0):g})"
    )


def _place(rs: RaySpec, timeout_s: float, emit: Optional[Callable[[dict], None]] = None):
    """Places the job's bundles. While the cluster cannot place them yet, emits one
    {"type":"queued","reason":...} line (the API keeps the job QUEUED with that reason). Waits
    forever when ``timeout_s`` <= 0 (jobs of `tensorguard serve`, which tenants can cancel); else
    raises ResourcesUnavailableError after ``timeout_s``."""
    bundles = _bundles(rs)
    pg = placement_group(bundles, strategy=rs.placement_strategy, name=f"tg-{rs.job_id}-pg")
    deadline = None if timeout_s <= 0 else time.monotonic() + timeout_s
    announced = False
    try:
        while True:
            left = None if deadline is None else deadline - time.monotonic()
            step = 2.0 if left is None else max(0.1, min(2.0, left))
            if pg.wait(timeout_seconds=step):
                return pg
            if not announced and emit is not None:
                reason = "waiting for the cluster's resources: " + _shortage(rs, bundles)
                emit({"type": "queued", "reason": reason})
                announced = True
            if deadline is not None and time.monotonic() >= deadline:
                break
    except BaseException:
        # Cancelled while waiting (SIGTERM is a KeyboardInterrupt here): the pending group goes.
        remove_placement_group(pg)
        raise
    remove_placement_group(pg)
    raise ResourcesUnavailableError(
        f"the cluster cannot place the job within {timeout_s:g}s: {_shortage(rs, bundles)}. "
        "Lower workers.count, workers.cpusPerWorker or workers.gpusPerWorker, add nodes, or wait "
        "longer (TENSORGUARD_PLACEMENT_TIMEOUT_S)."
    )


def _progress_line(m: dict) -> dict:
    keep = ("round", "rounds_total", "epsilon", "delta", "eval_accuracy", "eval_loss",
            "workers_alive", "round_seconds", "phase_seconds")
    return {"type": "progress", **{k: m.get(k) for k in keep if k in m}}


def run_job(spec: dict, job_id: str, launch: Launch, *, placement_timeout_s: float = 60.0,
            listen_timeout_s: float = 180.0, emit: Callable[[dict], None],
            on_started: Optional[Callable[[dict], None]] = None) -> dict:
    """Runs one job on the connected Ray cluster and returns its result line (a dict with
    "type": "result"). ``emit`` gets each progress line as it happens. Raises SpecError,
    ResourcesUnavailableError, LaunchError or JobFailedError; kills every actor it started and
    removes the placement group on every exit path (exceptions and KeyboardInterrupt included).
    """
    rs = parse_ray_spec(spec, job_id)
    # The job's CA lives in this process only; each actor gets its own identity (pki.py).
    pki = JobPki(job_id)
    Aggregator, Worker = remote_classes()
    actors: list[Any] = []
    pg = None
    t0 = time.monotonic()
    try:
        pg = _place(rs, placement_timeout_s, emit)

        def opts(bundle: int, name: str, cpus: float, gpus: float) -> dict:
            return dict(
                name=name,
                namespace=NAMESPACE,
                num_cpus=cpus,
                num_gpus=gpus,
                max_restarts=rs.max_restarts,
                # Calls are idempotent reads (info, events, address): retry them on a restart.
                max_task_retries=-1,
                max_concurrency=8,
                scheduling_strategy=PlacementGroupSchedulingStrategy(
                    placement_group=pg, placement_group_bundle_index=bundle
                ),
            )

        sa = spec.get("secureAggregation") or {}
        # HE without an external key holder: the coordinator starts it and hands it this identity.
        own_key_holder = sa.get("mode") == "he" and not sa.get("keyHolder")
        agg = Aggregator.options(**opts(0, aggregator_name(job_id), rs.coordinator_cpus, 0)).remote(
            job_id, spec, launch, pki.aggregator(), pki.key_holder() if own_key_holder else None
        )
        actors.append(agg)
        try:
            address = ray.get(agg.address.remote(listen_timeout_s))
        except RayActorError as err:
            raise JobFailedError(
                f"the aggregator actor died before listening: {first_cause(err)}"
            ) from err
        except RayTaskError as err:
            # The coordinator exited before listening (a data file or checkpoint it cannot
            # read): its own error, not Ray's traceback around it, is what the user needs.
            raise JobFailedError(first_cause(err)) from err
        workers = [
            Worker.options(
                **opts(i + 1, worker_name(job_id, i), rs.cpus_per_worker, rs.gpus_per_worker)
            ).remote(job_id, spec, launch, i, pki.worker(i))
            for i in range(rs.worker_count)
        ]
        actors.extend(workers)
        if on_started is not None:
            on_started({"aggregator": address, "actors": [aggregator_name(job_id)]
                        + [worker_name(job_id, i) for i in range(rs.worker_count)]})
        done = _follow(agg, emit, workers)
        result = {
            "type": "result",
            "job_id": job_id,
            "status": done.get("status", "failed"),
            "epsilon": done.get("epsilon"),
            "delta": done.get("delta"),
            "test_accuracy": done.get("test_accuracy"),
            "rounds": done.get("rounds"),
            "checkpoint": done.get("checkpoint"),
            "privacy_report": done.get("privacy_report"),
            "wall_seconds": round(time.monotonic() - t0, 3),
        }
        for k in ("error", "stop_reason", "adapter"):
            if done.get(k) is not None:
                result[k] = one_line(str(done[k])) if k == "error" else done[k]
        if result["status"] not in ("succeeded", "failed"):
            result["error"] = f"unknown status {result['status']!r} in the coordinator's done line"
            result["status"] = "failed"
        return result
    finally:
        _teardown(actors, pg)


def _fatal_worker(workers: list[Any]) -> Optional[str]:
    """The first worker that cannot run where it was placed (its "fatal" line), as a message
    naming it and its node; None when every worker can run."""
    try:
        infos = ray.get([w.info.remote() for w in workers], timeout=30)
    except Exception:  # noqa: BLE001 - a restarting actor: ask again on the next poll
        return None
    for info in infos:
        if info.get("fatal"):
            return f"worker {info['index']} on node {info['node_ip']}: {info['fatal']}"
    return None


def _follow(agg: Any, emit: Callable[[dict], None], workers: Optional[list[Any]] = None) -> dict:
    """Relays the coordinator's metrics as progress lines until its done line. Raises
    JobFailedError at once when a worker reports that it cannot run on its node."""
    since, generation = 0, None
    checked = 0.0
    while True:
        if workers and time.monotonic() - checked >= 2.0:
            checked = time.monotonic()
            fatal = _fatal_worker(workers)
            if fatal is not None:
                raise JobFailedError(fatal)
        try:
            batch = ray.get(agg.events.remote(since, 5.0), timeout=60)
        except GetTimeoutError:
            continue
        except RayActorError as err:
            raise JobFailedError(
                f"the aggregator actor died and was not restarted (workers.maxRestarts "
                f"exhausted?): {first_cause(err)}"
            ) from err
        if batch["generation"] != generation:
            # A restarted aggregator: its event indexes start again from 0.
            if generation is not None and since > 0:
                since = 0
                generation = batch["generation"]
                continue
            generation = batch["generation"]
        for line in batch["events"]:
            if line.get("type") == "metrics":
                emit(_progress_line(line))
            elif line.get("type") == "done":
                return line
        since = batch["next"]
        if batch["exit_code"] is not None and not batch["events"]:
            # Exited without a done line: the actor is exiting too and Ray restarts it; wait
            # for the next generation (or the RayActorError when restarts are used up).
            time.sleep(0.5)


def _teardown(actors: list[Any], pg: Any) -> None:
    stops = []
    for a in actors:
        try:
            stops.append(a.stop.remote())
        except Exception:  # noqa: BLE001 - best effort, ray.kill below is the backstop
            pass
    try:
        ray.wait(stops, num_returns=len(stops), timeout=15)
    except Exception:  # noqa: BLE001
        pass
    for a in actors:
        try:
            ray.kill(a, no_restart=True)
        except Exception:  # noqa: BLE001
            pass
    if pg is not None:
        try:
            remove_placement_group(pg)
        except Exception:  # noqa: BLE001
            pass


def format_line(obj: dict) -> str:
    return json.dumps(obj, separators=(",", ":"), default=str)
