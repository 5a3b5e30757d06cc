"""Public API of tensorguard_ray (everything else is in _internal and may change)."""

from __future__ import annotations

from ._internal.actors import NAMESPACE, aggregator_name, worker_name
from ._internal.job import JobFailedError, ResourcesUnavailableError, run_job
from ._internal.launch import Launch, LaunchError
from ._internal.node_process import NodeProcess, parse_json_line
from ._internal.spec import RaySpec, SpecError, parse_ray_spec, parse_run_config

__all__ = [
    "NAMESPACE",
    "JobFailedError",
    "Launch",
    "LaunchError",
    "NodeProcess",
    "RaySpec",
    "ResourcesUnavailableError",
    "SpecError",
    "aggregator_name",
    "parse_json_line",
    "parse_ray_spec",
    "parse_run_config",
    "run_job",
    "worker_name",
]
