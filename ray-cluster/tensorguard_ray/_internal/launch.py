"""Where the Node programs are and how each child is started (argv, environment, config file)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional


class LaunchError(RuntimeError):
    """The Node programs cannot be found or started; the message names the setting to change."""


@dataclass(frozen=True)
class Launch:
    """Paths of the node binary and the two programs, the same on every Ray node."""

    node: str
    coordinator_js: str
    worker_js: str

    @staticmethod
    def from_env(env: Mapping[str, str] = os.environ) -> "Launch":
        """Resolves from TENSORGUARD_NODE (default: `node` on PATH), TENSORGUARD_ROOT (the repo
        with worker-ts/dist built), and the test overrides TENSORGUARD_COORDINATOR_JS and
        TENSORGUARD_WORKER_JS. Raises LaunchError naming the variable to set."""
        node = env.get("TENSORGUARD_NODE") or shutil.which("node", path=env.get("PATH"))
        if not node:
            raise LaunchError("cannot find `node`; set TENSORGUARD_NODE to the Node.js binary")
        root = env.get("TENSORGUARD_ROOT")
        progs = {}
        for role, var in (("coordinator", "TENSORGUARD_COORDINATOR_JS"),
                          ("worker", "TENSORGUARD_WORKER_JS")):
            path = env.get(var)
            if not path:
                if not root:
                    raise LaunchError(
                        f"cannot find the {role} program: set TENSORGUARD_ROOT to the repository "
                        f"root (with worker-ts/dist built) in the job's runtime_env, or {var}"
                    )
                path = os.path.join(root, "worker-ts", "dist", "bin", f"{role}.js")
            if not os.path.isfile(path):
                raise LaunchError(
                    f"the {role} program {path} does not exist; build it (`npm run build`) "
                    f"or set {var}"
                )
            progs[role] = path
        return Launch(node=node, coordinator_js=progs["coordinator"], worker_js=progs["worker"])


def child_env(base: Mapping[str, str], *, job_id: str, role: str, worker_index: Optional[int],
              cpus: float, gpu_ids: list[str]) -> dict[str, str]:
    """The contract's environment: thread pools sized to the bundle's CPUs (at least 1), the
    assigned GPUs only (empty for CPU bundles: tfjs-node-gpu must not grab a GPU Ray gave to
    another actor), and the job identity."""
    threads = str(max(1, int(cpus)))
    env = dict(base)
    env.update(
        TF_NUM_INTRAOP_THREADS=threads,
        TF_NUM_INTEROP_THREADS=threads,
        CUDA_VISIBLE_DEVICES=",".join(gpu_ids),
        TENSORGUARD_JOB_ID=job_id,
        TENSORGUARD_ROLE=role,
        TENSORGUARD_WORKER_INDEX="" if worker_index is None else str(worker_index),
    )
    return env


def write_config(config: Mapping[str, Any], job_id: str, name: str) -> str:
    """Writes the config JSON to a node-local file (each actor writes its own: the entrypoint's
    files are not visible on other nodes); atomic, so a restarted actor never reads half."""
    d = Path(tempfile.gettempdir()) / "tensorguard" / job_id
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = d / f"{name}.json"
    tmp = d / f".{name}.json.{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(config))
    os.replace(tmp, path)
    return str(path)


def remove_config(path: str) -> None:
    """Removes a config written by write_config, and its job directory once it is empty, so that
    nothing of a job is left in the system temp folder after it."""
    p = Path(path)
    for step in (p.unlink, p.parent.rmdir):
        try:
            step()
        except OSError:
            pass  # already gone, or another actor's config of the job is still there
