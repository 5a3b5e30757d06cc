"""NodeProcess without Ray: line parsing, exit detection, process-group kill, PDEATHSIG."""

import os
import subprocess
import sys
import textwrap
import threading
import time

from tensorguard_ray import NodeProcess, parse_json_line


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def _wait_gone(pid: int, timeout_s: float = 10) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if _gone(pid):
            return True
        time.sleep(0.05)
    return False


def test_parse_json_line():
    assert parse_json_line('{"type":"metrics","round":1}') == {"type": "metrics", "round": 1}
    assert parse_json_line('{"level":30,"msg":"x"}') is None  # a pino log line, not contract
    assert parse_json_line("plain log") is None
    assert parse_json_line("{broken") is None


def test_lines_and_exit_code():
    lines, exits = [], []
    done = threading.Event()
    script = 'console.log(JSON.stringify({type:"metrics",round:1})); console.log("hello"); ' \
             'console.error("on stderr"); process.exit(3)'
    p = NodeProcess(["node", "-e", script], dict(os.environ),
                    lambda s, line, parsed: lines.append((s, line, parsed)),
                    lambda code: (exits.append(code), done.set()))
    p.start()
    assert done.wait(20)
    assert exits == [3]
    assert ("stdout", '{"type":"metrics","round":1}', {"type": "metrics", "round": 1}) in lines
    assert ("stdout", "hello", None) in lines
    assert ("stderr", "on stderr", None) in lines


def test_kill_reaches_the_whole_process_group():
    # The child spawns a grandchild; kill() must take both down.
    script = ("const {spawn}=require('child_process');"
              "const g=spawn('sleep',['60'],{stdio:'ignore'});"
              "console.log(JSON.stringify({type:'grandchild',pid:g.pid}));"
              "setInterval(()=>{},1000)")
    got = {}
    ready = threading.Event()

    def on_line(stream, line, parsed):
        if parsed and parsed["type"] == "grandchild":
            got["pid"] = parsed["pid"]
            ready.set()

    p = NodeProcess(["node", "-e", script], dict(os.environ), on_line, lambda c: None)
    pid = p.start()
    assert ready.wait(20)
    assert os.getpgid(pid) == pid  # its own group
    p.kill(grace_s=2)
    assert _wait_gone(pid) and _wait_gone(got["pid"])


def test_child_dies_with_its_supervisor_process():
    # A supervisor process that is SIGKILLed runs no cleanup: PR_SET_PDEATHSIG must kill the
    # child anyway (the case of an actor process killed by Ray or the OOM killer).
    sup = textwrap.dedent("""
        import os, sys, time
        from tensorguard_ray import NodeProcess
        p = NodeProcess(["node", "-e", "setInterval(()=>{},1000)"], dict(os.environ),
                        lambda *a: None, lambda c: None)
        print(p.start(), flush=True)
        time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", sup], stdout=subprocess.PIPE, text=True)
    child = int(proc.stdout.readline())
    assert not _gone(child)
    proc.kill()
    proc.wait()
    assert _wait_gone(child), "the Node child outlived its SIGKILLed supervisor"


def test_child_env_follows_the_contract():
    from tensorguard_ray._internal.launch import child_env

    env = child_env({"PATH": "/bin", "CUDA_VISIBLE_DEVICES": "0,1"}, job_id="j", role="worker",
                    worker_index=2, cpus=0.5, gpu_ids=[])
    assert env["TF_NUM_INTRAOP_THREADS"] == env["TF_NUM_INTEROP_THREADS"] == "1"
    assert env["CUDA_VISIBLE_DEVICES"] == ""  # a CPU bundle sees no GPU
    assert (env["TENSORGUARD_JOB_ID"], env["TENSORGUARD_ROLE"], env["TENSORGUARD_WORKER_INDEX"]) \
        == ("j", "worker", "2")
    env = child_env({}, job_id="j", role="aggregator", worker_index=None, cpus=3.0,
                    gpu_ids=["1", "3"])
    assert env["TF_NUM_INTRAOP_THREADS"] == "3" and env["CUDA_VISIBLE_DEVICES"] == "1,3"
    assert env["TENSORGUARD_WORKER_INDEX"] == ""
