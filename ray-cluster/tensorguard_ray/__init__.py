"""TensorGuard's Ray side: the job entrypoint and the actors that supervise Node processes.

Public names come from ``tensorguard_ray.api`` (re-exported here); ``_internal`` is private.
"""

__version__ = "0.1.0"

from .api import *  # noqa: E402,F401,F403
from .api import __all__  # noqa: E402,F401
