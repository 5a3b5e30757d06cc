import copy
import json
from pathlib import Path

import pytest

from tensorguard_ray import SpecError, parse_ray_spec, parse_run_config

# Shared with worker-ts/src/run-config/run-config.test.ts: the same config, the same defaults, the
# same field-named errors on both sides.
TESTDATA = Path(__file__).resolve().parents[2] / "worker-ts" / "src" / "run-config" / "testdata"


def read(name):
    return json.loads((TESTDATA / name).read_text(encoding="utf-8"))


MINIMAL = read("minimal.json")


def with_case(case):
    doc = copy.deepcopy(MINIMAL)
    at = doc
    for k in case["path"][:-1]:
        at = at.setdefault(k, {})
    if "value" in case:
        at[case["path"][-1]] = case["value"]
    else:
        del at[case["path"][-1]]
    return doc


def test_a_minimal_config_gets_every_default_of_the_zod_schema():
    assert parse_run_config(MINIMAL) == read("minimal.resolved.json")
    assert MINIMAL == read("minimal.json")  # the input is not changed


def test_ray_fields_come_from_the_filled_config():
    rs = parse_ray_spec({**MINIMAL, "workers": {"count": 3, "cpusPerWorker": 0.5}}, "job-1")
    assert (rs.worker_count, rs.cpus_per_worker, rs.gpus_per_worker) == (3, 0.5, 0.0)
    assert (rs.placement_strategy, rs.max_restarts, rs.coordinator_cpus, rs.rounds) == ("PACK", 3, 1.0, 10)


@pytest.mark.parametrize("case", read("invalid.json"), ids=lambda c: ".".join(c["path"]))
def test_a_bad_field_is_named_as_the_node_programs_name_it(case):
    with pytest.raises(SpecError) as e:
        parse_run_config(with_case(case))
    assert e.value.problems == [case["error"]]


def test_every_bad_field_is_listed():
    bad = {
        **MINIMAL,
        "workers": {"count": 0, "cpusPerWorker": -1, "placementStrategy": "STRICT_PACK",
                    "maxRestarts": 1.5},
        "rounds": "ten",
    }
    with pytest.raises(SpecError) as e:
        parse_ray_spec(bad, "bad id!")
    assert e.value.problems == [
        "job id: 'bad id!' must be 1-100 characters of letters, digits, '.', '_' or '-'",
        "workers.count: must be an integer ≥ 1 and ≤ 256, got 0",
        "workers.cpusPerWorker: must be a number > 0, got -1",
        "workers.placementStrategy: must be one of PACK, SPREAD, got \"STRICT_PACK\"",
        "workers.maxRestarts: must be an integer ≥ 0, got 1.5",
        "rounds: must be an integer ≥ 1, got \"ten\"",
    ]


def test_not_an_object():
    with pytest.raises(SpecError, match=r"\(root\): must be an object, got list"):
        parse_ray_spec([], "j")


def test_the_old_name_of_the_quorum_is_read_as_quorum():
    cfg = parse_run_config({**MINIMAL, "secureAggregation": {"threshold": 3}})
    assert cfg["secureAggregation"] == {"mode": "masking", "bits": "auto", "quorum": 3, "scale": 65536}
    with pytest.raises(SpecError, match=r"secureAggregation\.quorum: is required"):
        parse_run_config({**MINIMAL, "secureAggregation": {}})


def test_coordinator_resources_pin_the_aggregator_bundle():
    rs = parse_ray_spec({**MINIMAL, "coordinator": {"resources": {"node:10.0.0.1": 0.01}}}, "j")
    assert rs.coordinator_resources == {"node:10.0.0.1": 0.01}
    for bad in ({"CPU": 1}, {"x": 0}, ["x"]):
        with pytest.raises(SpecError, match=r"coordinator\.resources"):
            parse_ray_spec({**MINIMAL, "coordinator": {"resources": bad}}, "j")
