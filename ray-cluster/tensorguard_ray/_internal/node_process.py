"""One supervised Node.js child: spawn, line-by-line output, death detection, group kill.

Independent of Ray so it can be tested alone. The child runs in its own process group (session),
so that `kill()` reaches anything it spawned, and with PR_SET_PDEATHSIG so the kernel kills it if
the supervising process dies without running any cleanup (SIGKILL, OOM).
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Callable, Literal, Optional

PR_SET_PDEATHSIG = 1
Stream = Literal["stdout", "stderr"]

LineHandler = Callable[[Stream, str, Optional[dict]], None]


def _pdeathsig_preexec(parent_pid: int) -> Callable[[], None]:
    """Returns a preexec_fn that asks for SIGKILL when the spawning thread's process dies."""

    def preexec() -> None:
        if sys.platform.startswith("linux"):
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
            # The parent may have died between fork and prctl: then nobody would signal us.
            if os.getppid() != parent_pid:
                os._exit(1)

    return preexec


def parse_json_line(line: str) -> Optional[dict]:
    """A JSON object with a string "type" (a contract line), else None (a log line)."""
    s = line.strip()
    if not s.startswith("{"):
        return None
    try:
        obj = json.loads(s)
    except ValueError:
        return None
    if isinstance(obj, dict) and isinstance(obj.get("type"), str):
        return obj
    return None


class NodeProcess:
    """Starts ``argv`` with ``env`` and calls ``on_line(stream, line, parsed)`` for each line.

    ``parsed`` is the JSON object of a contract line (stdout only, with a "type"), else None.
    ``on_exit(returncode)`` runs once, from the waiting thread, after both streams are drained.
    The child is spawned from a thread that lives until the child exits: PR_SET_PDEATHSIG fires
    when the *thread* that forked exits, so spawning from a short-lived Ray task thread would
    kill the child early.
    """

    def __init__(self, argv: list[str], env: dict[str, str], on_line: LineHandler,
                 on_exit: Callable[[int], None], cwd: Optional[str] = None):
        self.argv = argv
        self._env = env
        self._cwd = cwd
        self._on_line = on_line
        self._on_exit = on_exit
        self._proc: Optional[subprocess.Popen] = None
        self._started = threading.Event()
        self._start_error: Optional[BaseException] = None
        self.returncode: Optional[int] = None
        self._thread = threading.Thread(target=self._run, name="tg-node-child", daemon=True)

    def start(self, timeout_s: float = 30) -> int:
        """Spawns the child; returns its pid. Raises OSError if it cannot be started."""
        self._thread.start()
        if not self._started.wait(timeout_s):
            raise TimeoutError(f"spawning {self.argv[0]} took more than {timeout_s}s")
        if self._start_error is not None:
            raise self._start_error
        assert self._proc is not None
        return self._proc.pid

    @property
    def pid(self) -> Optional[int]:
        return self._proc.pid if self._proc else None

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _run(self) -> None:
        try:
            self._proc = subprocess.Popen(
                self.argv,
                env=self._env,
                cwd=self._cwd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
                preexec_fn=_pdeathsig_preexec(os.getpid()),
            )
        except BaseException as err:  # noqa: BLE001 - reported to start()
            self._start_error = err
            self._started.set()
            return
        self._started.set()
        readers = [
            threading.Thread(target=self._pump, args=("stdout", self._proc.stdout), daemon=True),
            threading.Thread(target=self._pump, args=("stderr", self._proc.stderr), daemon=True),
        ]
        for t in readers:
            t.start()
        code = self._proc.wait()
        for t in readers:
            # A grandchild holding the pipe open must not block death detection for long.
            t.join(5)
        self.returncode = code
        self._on_exit(code)

    def _pump(self, stream: Stream, pipe) -> None:
        for raw in iter(pipe.readline, b""):
            line = raw.decode("utf-8", errors="replace").rstrip("\n")
            parsed = parse_json_line(line) if stream == "stdout" else None
            try:
                self._on_line(stream, line, parsed)
            except Exception as err:  # noqa: BLE001 - a bad line must not stop log forwarding
                print(f"tensorguard: cannot handle a {stream} line of the child: {err!r}",
                      file=sys.stderr, flush=True)
        pipe.close()

    def kill(self, grace_s: float = 3.0) -> None:
        """SIGTERM to the child's process group, then SIGKILL after ``grace_s``. Idempotent."""
        proc = self._proc
        if proc is None:
            return
        for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(proc.pid, sig)
            except (ProcessLookupError, PermissionError):
                break
            deadline = time.monotonic() + wait_s
            while proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
            if proc.poll() is not None:
                # The leader is gone; its group may still hold grandchildren.
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
                break
