import ray

import tensorguard_ray


def test_package_imports_with_ray():
    assert tensorguard_ray.__version__ == "0.1.0"
    major, minor = (int(x) for x in ray.__version__.split(".")[:2])
    assert (major, minor) >= (2, 52)
