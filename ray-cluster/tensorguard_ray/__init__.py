"""TensorGuard's Ray side: the job entrypoint and the actors that supervise Node processes."""

__version__ = "0.1.0"
