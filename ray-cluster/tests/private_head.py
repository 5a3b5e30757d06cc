"""A private Ray head for tests: own temp dir, free ports, token auth; stopped by signal.

Never `ray stop` (it stops every Ray cluster on the machine, other engineers' included).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

VENV_BIN = Path(sys.executable).parent


def free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def head_env(token: str) -> dict[str, str]:
    """Token auth, plus Ray's OpenCensus metrics path: in Ray 2.52.1 the OpenTelemetry exporter
    sends metrics to the node's metrics agent without the token, the agent refuses them
    ("Authentication required but no authorization header provided") and no application metric
    reaches Prometheus. A 2 s report interval makes them appear within seconds."""
    return {
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": token,
        "RAY_enable_open_telemetry": "0",
        "RAY_metrics_report_interval_ms": "2000",
    }


@dataclass
class PrivateHead:
    num_cpus: int = 4
    token: str = field(default_factory=lambda: secrets.token_hex(32))
    proc: subprocess.Popen | None = None
    temp_dir: str = ""
    gcs_address: str = ""
    dashboard_url: str = ""
    metrics_port: int = 0

    def env(self) -> dict[str, str]:
        return head_env(self.token)

    def start(self, timeout_s: float = 90) -> "PrivateHead":
        self.temp_dir = tempfile.mkdtemp(prefix="tg-ray-", dir="/tmp")
        (gcs, dash, client, nm, om, metrics, agent_http, agent_grpc, rtenv, wmin) = free_ports(10)
        self.metrics_port = metrics
        self.gcs_address = f"127.0.0.1:{gcs}"
        self.dashboard_url = f"http://127.0.0.1:{dash}"
        # Worker ports: a small range above a free port; collisions are unlikely and Ray reports them.
        args = [
            str(VENV_BIN / "ray"), "start", "--head", "--block",
            "--node-ip-address", "127.0.0.1",
            "--temp-dir", self.temp_dir,
            "--port", str(gcs),
            "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dash),
            "--ray-client-server-port", str(client),
            "--node-manager-port", str(nm), "--object-manager-port", str(om),
            "--metrics-export-port", str(metrics),
            "--dashboard-agent-listen-port", str(agent_http),
            "--dashboard-agent-grpc-port", str(agent_grpc),
            "--runtime-env-agent-port", str(rtenv),
            "--min-worker-port", "0", "--max-worker-port", "0",
            "--num-cpus", str(self.num_cpus), "--num-gpus", "0",
            "--object-store-memory", str(200 * 1024 * 1024),
            "--disable-usage-stats",
        ]
        env = {**os.environ, **self.env()}
        env.pop("RAY_ADDRESS", None)
        self.log_path = os.path.join(self.temp_dir, "head.out")
        log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ray head exited {self.proc.returncode}: {Path(self.log_path).read_text()[-3000:]}")
            try:
                if self._alive_nodes() >= 1:
                    return self
            except OSError:
                pass
            time.sleep(0.5)
        self.stop()
        raise TimeoutError(f"ray head not ready in {timeout_s}s")

    def get(self, path: str):
        req = urllib.request.Request(self.dashboard_url + path, headers={"Authorization": f"Bearer {self.token}"})
        with urllib.request.urlopen(req, timeout=5) as r:
            return json.loads(r.read())

    def _alive_nodes(self) -> int:
        self.get("/api/version")
        nodes = self.get("/api/v0/nodes?detail=false&limit=10")
        return sum(1 for n in nodes["data"]["result"]["result"] if n["state"] == "ALIVE")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                pass
        if self.proc is not None:
            # Ray's daemons (raylet, gcs, dashboard) live in the head's process group.
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()
        if self.temp_dir:
            shutil.rmtree(self.temp_dir, ignore_errors=True)
