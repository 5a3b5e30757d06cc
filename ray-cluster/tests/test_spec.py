import pytest

from tensorguard_ray import SpecError, parse_ray_spec

GOOD = {"workers": {"count": 3, "cpusPerWorker": 0.5}, "rounds": 4}


def test_defaults_fill_in():
    rs = parse_ray_spec(GOOD, "job-1")
    assert (rs.worker_count, rs.cpus_per_worker, rs.gpus_per_worker) == (3, 0.5, 0.0)
    assert (rs.placement_strategy, rs.max_restarts, rs.coordinator_cpus) == ("PACK", 3, 1.0)


def test_every_bad_field_is_listed():
    bad = {
        "workers": {"count": 0, "cpusPerWorker": -1, "placementStrategy": "STRICT_PACK",
                    "maxRestarts": 1.5},
        "rounds": "ten",
    }
    with pytest.raises(SpecError) as e:
        parse_ray_spec(bad, "bad id!")
    assert e.value.problems == [
        "job id: 'bad id!' must be 1-100 characters of letters, digits, '.', '_' or '-'",
        "workers.count: must be an integer ≥ 1, got 0",
        "workers.cpusPerWorker: must be a number > 0, got -1",
        "workers.maxRestarts: must be an integer ≥ 0, got 1.5",
        "workers.placementStrategy: must be one of PACK, SPREAD, got 'STRICT_PACK'",
        "(root).rounds: must be an integer ≥ 1, got 'ten'",
    ]


def test_not_an_object():
    with pytest.raises(SpecError, match=r"\(root\): must be an object, got list"):
        parse_ray_spec([], "j")


def test_coordinator_resources_pin_the_aggregator_bundle():
    rs = parse_ray_spec({**GOOD, "coordinator": {"resources": {"node:10.0.0.1": 0.01}}}, "j")
    assert rs.coordinator_resources == {"node:10.0.0.1": 0.01}
    for bad in ({"CPU": 1}, {"x": 0}, ["x"]):
        with pytest.raises(SpecError, match=r"coordinator\.resources"):
            parse_ray_spec({**GOOD, "coordinator": {"resources": bad}}, "j")
