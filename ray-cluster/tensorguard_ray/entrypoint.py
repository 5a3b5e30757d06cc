"""The Ray job entrypoint: ``python -m tensorguard_ray.entrypoint --spec <file> | --spec-json <s>``.

Run by Ray Jobs with runtime_env.env_vars TENSORGUARD_ROOT (repo root with worker-ts/dist
built), TENSORGUARD_JOB_ID (the submission id; default: Ray's job id) and optionally
TENSORGUARD_NODE. stdout carries JSON lines for the driver: {"type":"progress",...} per round and
a final {"type":"result",...}; everything else is logs. Exit status 0 when the job succeeded,
1 when it failed, 2 for a bad spec.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from typing import NoReturn

import ray

from ._internal.errors import first_cause, one_line
from ._internal.job import JobFailedError, ResourcesUnavailableError, format_line, run_job
from ._internal.launch import Launch, LaunchError
from ._internal.spec import SpecError


def _emit(obj: dict) -> None:
    print(format_line(obj), flush=True)


def _fail(job_id: str, status_code: int, error: str) -> int:
    error = one_line(error)
    _emit({"type": "result", "job_id": job_id, "status": "failed", "error": error})
    print(f"tensorguard: {error}", file=sys.stderr, flush=True)
    return status_code


def _on_sigterm(signum, frame) -> NoReturn:  # noqa: ARG001
    # Ray's job stop sends SIGTERM (then SIGKILL after a grace period): unwind through the
    # controller's finally so the actors and the placement group go away now.
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tensorguard_ray.entrypoint")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--spec", help="path of the job spec JSON (as validated by the driver)")
    g.add_argument("--spec-json", help="the job spec as a JSON string")
    p.add_argument("--job-id", help="job id (default: TENSORGUARD_JOB_ID, else Ray's job id)")
    args = p.parse_args(argv)
    signal.signal(signal.SIGTERM, _on_sigterm)

    job_id = args.job_id or os.environ.get("TENSORGUARD_JOB_ID") or ""
    try:
        if args.spec is not None:
            with open(args.spec, encoding="utf-8") as f:
                spec = json.load(f)
        else:
            spec = json.loads(args.spec_json)
    except (OSError, ValueError) as err:
        return _fail(job_id, 2, f"cannot read the job spec: {err}")

    ray.init(namespace="tensorguard", log_to_driver=True)
    if not job_id:
        job_id = ray.get_runtime_context().get_job_id()
    timeout = float(os.environ.get("TENSORGUARD_PLACEMENT_TIMEOUT_S", "60"))
    try:
        launch = Launch.from_env()
        result = run_job(spec, job_id, launch, placement_timeout_s=timeout, emit=_emit)
    except SpecError as err:
        return _fail(job_id, 2, str(err))
    except (LaunchError, ResourcesUnavailableError, JobFailedError) as err:
        return _fail(job_id, 1, str(err))
    except KeyboardInterrupt:
        return _fail(job_id, 1, "stopped (SIGTERM or Ctrl-C); actors and placement group removed")
    except Exception as err:  # noqa: BLE001 - any other failure still ends in a result line
        return _fail(job_id, 1, first_cause(err))
    _emit(result)
    return 0 if result["status"] == "succeeded" else 1


if __name__ == "__main__":
    sys.exit(main())
