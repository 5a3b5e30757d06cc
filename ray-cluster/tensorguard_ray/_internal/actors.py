"""The supervisor actors: each starts one Node child, forwards its output, publishes its metrics,
dies when the child dies (so Ray restarts it, up to max_restarts) and never outlives... nor lets
the child outlive the actor."""

from __future__ import annotations

import atexit
import os
import sys
import threading
import time
import uuid
from typing import Any, Optional

import ray

from .launch import Launch, child_env, remove_config, write_config
from .metrics import ActorMetrics, epsilon_budget_of
from .node_process import NodeProcess
from .pki import Identity, remove_identity_dir

NAMESPACE = "tensorguard"

# A Node child that exits with this code cannot run where it is (its data shard is missing or
# unreadable on this node, or it refused the coordinator's privacy parameters): restarting it would
# fail the same way, so the supervisor keeps its "fatal" line for the job controller instead.
EXIT_FATAL = 3


def aggregator_name(job_id: str) -> str:
    return f"tg-{job_id}-aggregator"


def worker_name(job_id: str, index: int) -> str:
    return f"tg-{job_id}-worker-{index}"


def listen_address(config: dict) -> str:
    """Where the coordinator listens: ``coordinator.listen`` (``HOST`` or ``HOST:PORT``) when the
    spec gives it, else this Ray node's IP on a free port. Never loopback by assumption: workers
    may run on other nodes."""
    given = (config.get("coordinator") or {}).get("listen")
    if isinstance(given, str) and given:
        return given
    return ray.util.get_node_ip_address()


class ChildExitedError(RuntimeError):
    """The Node child exited before it produced what was asked for."""


class _Supervisor:
    """Shared body of both actors. Lifecycle: STARTING → RUNNING → FINISHED | (process exit)."""

    role = "worker"

    def __init__(self, job_id: str, config: dict, launch: Launch, index: Optional[int],
                 identity: Optional[Identity] = None):
        self.job_id = job_id
        self._config = config
        self.index = index
        self.generation = uuid.uuid4().hex
        self._cond = threading.Condition()
        self._events: list[dict] = []
        self._done: Optional[dict] = None
        self._address: Optional[str] = None
        self._exit_code: Optional[int] = None
        self._fatal: Optional[dict] = None
        self._stopping = False
        self.state = "STARTING"
        label = "aggregator" if index is None else str(index)
        self._metrics = ActorMetrics(
            job_id, label, epsilon_budget_of(config) if index is None else None)
        ctx = ray.get_runtime_context()
        cpus = ctx.get_assigned_resources().get("CPU", 1.0)
        gpu_ids = [str(g) for g in ctx.get_accelerator_ids().get("GPU", [])]
        name = "aggregator" if index is None else f"worker-{index}"
        self._config_path = write_config(config, job_id, name)
        # This party's key, certificate and the job's CA, for the child only (0700 dir, 0600 files).
        self._tls_dir = identity.write() if identity is not None else None
        argv = [launch.node, self._program(launch), "--config", self._config_path]
        if self._tls_dir is not None:
            argv += ["--tls-dir", self._tls_dir]
        argv += self._extra_args()
        env = child_env(os.environ, job_id=job_id, role=self.role, worker_index=index,
                        cpus=cpus, gpu_ids=gpu_ids)
        self._child = NodeProcess(argv, env, self._on_line, self._on_exit)
        atexit.register(self._child.kill, 1.0)
        atexit.register(self._remove_identities)
        pid = self._child.start()
        self.state = "RUNNING"
        print(f"tensorguard: started {self.role} {label} of job {job_id}: pid {pid} "
              f"(generation {self.generation[:8]})", flush=True)

    # -- subclass hooks
    def _program(self, launch: Launch) -> str:
        raise NotImplementedError

    def _extra_args(self) -> list[str]:
        return []

    def _remove_identities(self) -> None:
        remove_identity_dir(self._tls_dir)

    def _finished_ok(self, code: int) -> bool:
        raise NotImplementedError

    # -- child callbacks (reader / waiter threads)
    def _on_line(self, stream: str, line: str, parsed: Optional[dict]) -> None:
        # Printed from the actor process so that Ray files it under this actor (dashboard, job
        # logs with the actor's prefix).
        print(line, file=sys.stdout if stream == "stdout" else sys.stderr, flush=True)
        if parsed is None:
            return
        self._metrics.observe(parsed)
        with self._cond:
            kind = parsed["type"]
            if kind == "listening" and isinstance(parsed.get("address"), str):
                self._address = parsed["address"]
            elif kind == "done":
                self._done = parsed
            elif kind == "fatal":
                self._fatal = parsed
            self._events.append(parsed)
            self._cond.notify_all()

    def _on_exit(self, code: int) -> None:
        with self._cond:
            self._exit_code = code
            self._cond.notify_all()
            if self._stopping:
                return
            if self._finished_ok(code):
                self.state = "FINISHED"
                return
            if code == EXIT_FATAL and self._fatal is not None:
                self.state = "FAILED"
                print(f"tensorguard: the {self.role} child of job {self.job_id} cannot run on "
                      f"this node: {self._fatal.get('error')}", file=sys.stderr, flush=True)
                return
        print(f"tensorguard: the {self.role} child (pid {self._child.pid}) of job {self.job_id} "
              f"exited with {code}; exiting the actor so that Ray restarts it", file=sys.stderr,
              flush=True)
        self._child.kill(0.5)  # its process group may still hold grandchildren
        self._remove_identities()  # os._exit skips atexit
        remove_config(self._config_path)  # the restarted actor writes it again
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1)

    # -- actor methods
    def info(self) -> dict:
        return {
            "role": self.role,
            "index": self.index,
            "pid": self._child.pid,
            "actor_pid": os.getpid(),
            "generation": self.generation,
            "state": self.state,
            "exit_code": self._exit_code,
            "fatal": self._fatal.get("error") if self._fatal else None,
            "node_ip": ray.util.get_node_ip_address(),
        }

    def events(self, since: int = 0, timeout_s: float = 5.0) -> dict:
        """Long poll: the child's contract lines after index ``since`` (waits up to timeout_s for
        one). ``generation`` changes when Ray restarted the actor: then indexes start again."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while (len(self._events) <= since and self._exit_code is None
                   and (left := deadline - time.monotonic()) > 0):
                self._cond.wait(left)
            return {
                "generation": self.generation,
                "events": self._events[since:],
                "next": len(self._events),
                "exit_code": self._exit_code,
            }

    def stop(self) -> None:
        """Kills the child's process group; the actor stays until ray.kill."""
        with self._cond:
            self._stopping = True
            self.state = "FINISHED"
        self._child.kill()
        self._remove_identities()
        remove_config(self._config_path)
        # The last values (the final ε) reach Ray's metrics agent only at its next report.
        self._metrics.linger()


class AggregatorSupervisor(_Supervisor):
    role = "aggregator"

    def __init__(self, job_id: str, config: dict, launch: Launch,
                 identity: Optional[Identity] = None,
                 key_holder_identity: Optional[Identity] = None):
        # HE mode with no external key holder: the coordinator starts the key holder as its child,
        # which needs the key holder's own identity (docs/privacy.md: for the non-collusion
        # assumption to mean more than process isolation, run it as a separate party instead,
        # secureAggregation.keyHolder).
        self._key_holder_dir = key_holder_identity.write() if key_holder_identity is not None else None
        super().__init__(job_id, config, launch, None, identity)

    def _program(self, launch: Launch) -> str:
        return launch.coordinator_js

    def _extra_args(self) -> list[str]:
        # Listen where workers on other Ray nodes can dial: coordinator.listen, else this node's IP.
        args = ["--listen", listen_address(self._config)]
        if self._key_holder_dir is not None:
            args += ["--key-holder-tls-dir", self._key_holder_dir]
        return args

    def _remove_identities(self) -> None:
        super()._remove_identities()
        remove_identity_dir(self._key_holder_dir)

    def _finished_ok(self, code: int) -> bool:
        # A coordinator that printed its done line has finished the job, whatever the outcome
        # (a failed job must not be retried by restarting it).
        return self._done is not None

    def address(self, timeout_s: float = 120.0) -> str:
        """The coordinator's gRPC address, once it printed its listening line."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self._address is None:
                if self._exit_code is not None:
                    raise ChildExitedError(
                        f"the coordinator exited with {self._exit_code} before listening"
                        + (f": {self._done.get('error')}" if self._done else "")
                    )
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"the coordinator did not listen within {timeout_s}s")
                self._cond.wait(left)
            return self._address


class WorkerSupervisor(_Supervisor):
    role = "worker"

    def __init__(self, job_id: str, config: dict, launch: Launch, index: int,
                 identity: Optional[Identity] = None, address_timeout_s: float = 120.0):
        # Asked on every (re)start: a restarted aggregator listens on a new port.
        agg = ray.get_actor(aggregator_name(job_id), namespace=NAMESPACE)
        self._aggregator = ray.get(agg.address.remote(address_timeout_s))
        super().__init__(job_id, config, launch, index, identity)

    def _program(self, launch: Launch) -> str:
        return launch.worker_js

    def _extra_args(self) -> list[str]:
        return ["--worker-index", str(self.index), "--aggregator", self._aggregator]

    def _finished_ok(self, code: int) -> bool:
        return code == 0


def remote_classes() -> tuple[Any, Any]:
    """The ray.remote actor classes (made lazily so importing needs no Ray runtime)."""
    return ray.remote(AggregatorSupervisor), ray.remote(WorkerSupervisor)
