import os
import secrets
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from private_head import PrivateHead, head_env  # noqa: E402

# Ray reads RAY_AUTH_MODE / RAY_AUTH_TOKEN once per process (its C++ config is initialised when
# ray is imported), so they are set before any test module imports ray: this whole pytest
# process talks only to the private, token-protected head below.
TOKEN = secrets.token_hex(32)
os.environ.update(head_env(TOKEN))
os.environ.pop("RAY_ADDRESS", None)

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def ray_head():
    """A private Ray head (token auth, own temp dir and ports) with this process connected."""
    import ray

    head = PrivateHead(num_cpus=4, token=TOKEN).start()
    try:
        ray.init(address=head.gcs_address, namespace="tensorguard-tests", log_to_driver=False)
        yield head
    finally:
        ray.shutdown()
        head.stop()


@pytest.fixture()
def fixture_launch():
    """The contract's fixture Node programs (tests/fixtures), standing in for worker-ts/dist.

    Kept on purpose for these supervisor-level tests: they pin the contract itself (a round needs
    every worker index, so a rejoin is counted exactly, `joins` in the report; a failing
    coordinator on demand with roundTimeoutMs 1; the child's environment printed as a log line),
    they start in milliseconds without libtensorflow, and they do not depend on worker-ts being
    built or on its internals changing. The real programs run end to end in test/ray/ (driver →
    Ray → coordinator and workers, kills and rejoins included)."""
    from tensorguard_ray import Launch

    return Launch(
        node=os.environ.get("TENSORGUARD_NODE") or "node",
        coordinator_js=str(FIXTURES / "fake-coordinator.mjs"),
        worker_js=str(FIXTURES / "fake-worker.mjs"),
    )
