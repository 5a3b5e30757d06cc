"""The run config on arrival: validated against its JSON schema, defaults filled, Ray fields read.

The run config is defined once, as a zod schema (worker-ts/src/run-config/schema.ts); the driver
resolves every job spec to it, and worker-ts/scripts/run-config-schema.mjs exports its JSON schema
to ``run_config.schema.json`` next to this file (``--check`` fails when that file is stale). The
entrypoint validates against that schema with ``jsonschema``, so a hand-written or stale config
fails here with every bad field named, in the words the Node programs use (worker-ts
run-config/issues.ts), instead of as a Ray scheduling error or a Node stack trace later. The
cross-field rules of the zod schema (quorum ≤ count, lanes ≤ thread budget, ...) are not in the
JSON schema; the Node programs check them when they start. Checked here as well: the job id and the
aggregator's Ray resources (Ray-side concerns only).
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from jsonschema import Draft202012Validator

SCHEMA_FILE = Path(__file__).with_name("run_config.schema.json")
_JOB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_SAFE = 2**53 - 1
# The quorum's old name; the same words as worker-ts/src/run-config/schema.ts.
_ALIAS_NOTE = "the old name of secureAggregation.quorum (the fewest contributors per round)"


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


_schema: dict | None = None
_validator: Draft202012Validator | None = None


def run_config_schema() -> dict:
    """The run config's JSON schema (exported from the zod schema; do not edit the file)."""
    global _schema, _validator
    if _schema is None:
        _schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
        Draft202012Validator.check_schema(_schema)
        _validator = Draft202012Validator(_schema)
    return _schema


def _path(parts) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (("." if out else "") + str(p))
    return out


def _show(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def _got(v: Any) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return json.dumps(v, ensure_ascii=False, separators=(",", ":"))


def _describe(node: Mapping[str, Any]) -> str:
    """What a JSON schema node accepts, in words (worker-ts run-config/issues.ts `describe`)."""
    if isinstance(node.get("x-must-be"), str):
        return node["x-must-be"]
    alts = node.get("anyOf") or node.get("oneOf")
    if alts:
        return " or ".join(dict.fromkeys(_describe(a) for a in alts))
    if "const" in node:
        return _show(node["const"])
    if isinstance(node.get("enum"), list):
        return "one of " + ", ".join(_show(v) for v in node["enum"])
    kind = node.get("type")
    if kind == "null":
        return "null"
    if kind == "boolean":
        return "true or false"
    if kind in ("integer", "number"):
        bounds = []
        if isinstance(node.get("minimum"), (int, float)) and node["minimum"] > -_SAFE:
            bounds.append(f"≥ {_show(node['minimum'])}")
        if isinstance(node.get("exclusiveMinimum"), (int, float)):
            bounds.append(f"> {_show(node['exclusiveMinimum'])}")
        if isinstance(node.get("maximum"), (int, float)) and node["maximum"] < _SAFE:
            bounds.append(f"≤ {_show(node['maximum'])}")
        if isinstance(node.get("exclusiveMaximum"), (int, float)):
            bounds.append(f"< {_show(node['exclusiveMaximum'])}")
        name = "an integer" if kind == "integer" else "a number"
        return f"{name} {' and '.join(bounds)}" if bounds else name
    if kind == "string":
        if isinstance(node.get("pattern"), str):
            return f"a string matching {node['pattern']}"
        return "a non-empty string" if node.get("minLength", 0) > 0 else "a string"
    if kind == "array":
        head = "a non-empty list" if node.get("minItems", 0) > 0 else "a list"
        return f"{head} of ({_describe(node['items'])})" if "items" in node else head
    if kind == "object":
        return "an object"
    return "a valid value"


def _kind_branch(node: Mapping[str, Any], value: Any):
    """The branch of a discriminated union (oneOf objects with a `kind` const) that `value` picks."""
    if not isinstance(value, dict):
        return None
    for alt in node.get("oneOf", []):
        if alt.get("properties", {}).get("kind", {}).get("const", object()) == value.get("kind"):
            return alt
    return None


def _problems(validator: Draft202012Validator, instance: Any, prefix: tuple = ()) -> list[str]:
    out: list[str] = []
    for err in validator.iter_errors(instance):
        at = prefix + tuple(err.absolute_path)
        if err.validator == "required":
            out += [f"{_path(at + (k,))}: is required" for k in err.validator_value
                    if k not in err.instance]
        elif err.validator == "additionalProperties" and err.validator_value is False:
            known = err.schema.get("properties", {})
            out += [f"{_path(at + (k,))}: is not a run config field; remove it"
                    for k in err.instance if k not in known]
        elif err.validator == "oneOf" and isinstance(err.instance, dict) and "kind" in err.instance:
            branch = _kind_branch(err.schema, err.instance)
            if branch is None:
                kinds = ", ".join(_show(a["properties"]["kind"]["const"]) for a in err.schema["oneOf"])
                out.append(f"{_path(at + ('kind',))}: must be one of {kinds}, got {_got(err.instance['kind'])}")
            else:
                out += _problems(Draft202012Validator(branch), err.instance, at)
        else:
            out.append(f"{_path(at)}: must be {_describe(err.schema)}, got {_got(err.instance)}")
    return out


def _fill_defaults(node: Mapping[str, Any], value: Any) -> None:
    """Sets every absent field that has a `default` in the (valid) config, depth first."""
    if not isinstance(value, dict):
        return
    if "oneOf" in node or "anyOf" in node:
        alts = node.get("oneOf") or node.get("anyOf")
        branch = _kind_branch(node, value) or next(
            (a for a in alts if Draft202012Validator(a).is_valid(value)), None)
        if branch is not None:
            _fill_defaults(branch, value)
        return
    for key, sub in node.get("properties", {}).items():
        if key not in value and "default" in sub:
            value[key] = copy.deepcopy(sub["default"])
        if key in value:
            _fill_defaults(sub, value[key])


def parse_run_config(raw: Any) -> dict:
    """Validates a run config against its JSON schema; returns a copy with every default filled.

    Reads ``secureAggregation.threshold``, the old name of ``quorum``, as ``quorum``. Raises
    SpecError listing every bad field.
    """
    run_config_schema()
    if not isinstance(raw, dict):
        raise SpecError([f"(root): must be an object, got {type(raw).__name__}"])
    problems = _problems(_validator, raw)
    sa = raw.get("secureAggregation")
    if isinstance(sa, dict):
        if "quorum" not in sa and "threshold" not in sa:
            problems.append("secureAggregation.quorum: is required: the fewest contributors a round may "
                            "be released with (an integer ≥ 1)")
        elif "quorum" in sa and "threshold" in sa:
            problems.append(f"secureAggregation.threshold: is {_ALIAS_NOTE}: give only quorum")
    if problems:
        raise SpecError(problems)
    config = copy.deepcopy(raw)
    _fill_defaults(_schema, config)
    sa = config["secureAggregation"]
    if "threshold" in sa:
        sa["quorum"] = sa.pop("threshold")
    return config


def parse_ray_spec(raw: Any, job_id: str) -> RaySpec:
    """Validates the run config (parse_run_config) and the job id; reads the fields Ray uses."""
    problems: list[str] = []
    if not isinstance(job_id, str) or not _JOB_ID.match(job_id):
        problems.append(
            f"job id: {job_id!r} must be 1-100 characters of letters, digits, '.', '_' or '-'"
        )
    try:
        config = parse_run_config(raw)
    except SpecError as err:
        raise SpecError(problems + err.problems) from None
    extra = config["coordinator"].get("resources", {})
    if "CPU" in extra or "GPU" in extra:
        problems.append("coordinator.resources: set CPUs with coordinator.cpus; the aggregator uses no GPU")
    if problems:
        raise SpecError(problems)
    workers = config["workers"]
    return RaySpec(
        job_id=job_id,
        worker_count=int(workers["count"]),
        cpus_per_worker=float(workers["cpusPerWorker"]),
        gpus_per_worker=float(workers["gpusPerWorker"]),
        coordinator_cpus=float(config["coordinator"]["cpus"]),
        coordinator_resources={k: float(v) for k, v in extra.items()},
        placement_strategy=workers["placementStrategy"],
        max_restarts=int(workers["maxRestarts"]),
        rounds=int(config["rounds"]),
    )
