"""The entrypoint's error extraction: the first cause, one line, no ANSI codes."""

import pytest
from ray.exceptions import RayTaskError

from tensorguard_ray._internal.actors import ChildExitedError
from tensorguard_ray._internal.errors import first_cause, one_line, strip_ansi

DATA = "DatasetError: /d/bad.csv:6: column 'b' is not a finite number"


def _ray_task_error(cause: BaseException) -> RayTaskError:
    tb = (
        "Traceback (most recent call last):\n"
        '  File "actors.py", line 213, in address\n'
        "    raise ChildExitedError(\n"
        f"tensorguard_ray._internal.actors.ChildExitedError: {cause}"
    )
    return RayTaskError("\x1b[36mray::AggregatorSupervisor.address()\x1b[39m", tb, cause)


@pytest.mark.parametrize(
    "err, want",
    [
        (_ray_task_error(ChildExitedError(f"the coordinator exited with 1 before listening: {DATA}")),
         f"the coordinator exited with 1 before listening: {DATA}"),
        (RuntimeError("\x1b[31mcheckpoint /c/ckpt-3: manifest hash mismatch\x1b[0m"),
         "checkpoint /c/ckpt-3: manifest hash mismatch"),
        (RuntimeError('Traceback (most recent call last):\n  File "x.py", line 1\nValueError: bad'),
         "ValueError: bad"),
        (RuntimeError(""), "RuntimeError"),
    ],
)
def test_first_cause(err, want):
    got = first_cause(err)
    assert got == want
    assert "\x1b" not in got and "\n" not in got and "Traceback" not in got


def test_one_line_and_strip_ansi():
    assert strip_ansi("\x1b[36m(Actor pid=1)\x1b[0m hi") == "(Actor pid=1) hi"
    assert one_line("a\n\n  b \n") == "a; b"
