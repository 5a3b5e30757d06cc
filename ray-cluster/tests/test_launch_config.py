"""The worker/coordinator config JSON in the system temp folder: private while it exists, and gone
(with its job folder) once the actors of the job have removed theirs."""
import json
import os
import stat
import tempfile
import uuid
from pathlib import Path

from tensorguard_ray._internal.launch import remove_config, write_config


def test_config_is_private_and_removed_with_its_job_folder():
    job = f"test-{uuid.uuid4().hex[:8]}"
    a = write_config({"name": "x", "secret": 1}, job, "worker-0")
    b = write_config({"name": "x"}, job, "aggregator")
    d = Path(tempfile.gettempdir()) / "tensorguard" / job
    assert json.loads(Path(a).read_text()) == {"name": "x", "secret": 1}
    assert stat.S_IMODE(os.stat(a).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(d).st_mode) == 0o700
    remove_config(a)
    assert not os.path.exists(a) and d.exists()  # another actor's config is still there
    remove_config(b)
    assert not d.exists()
    remove_config(b)  # idempotent
