"""Helpers for service tests and benchmarks: the service in a subprocess on a free loopback port."""
import contextlib
import os
import socket
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``python -m emotion_mx.serve ARGS`` on 127.0.0.1:<free port>; ``faults``: the test-only
    ``EMOTION_MX_SERVE_FAULTS`` value (never inherited from the caller's environment)."""

    def __init__(self, args, log_path, faults=None, nice=0):
        from .settings import FAULTS_ENV
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
                   EMOTION_MX_LOG="WARNING")
        env.pop(FAULTS_ENV, None)
        if faults:
            env[FAULTS_ENV] = faults
        self.log_path = log_path
        self.log = open(log_path, "w")
        cmd = [sys.executable, "-m", "emotion_mx.serve", "--port", str(self.port), "--log-level", "warning", *args]
        if nice:
            cmd = ["nice", "-n", str(nice)] + cmd
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT)

    def tail(self, n=2000):
        with open(self.log_path) as f:
            return f.read()[-n:]

    def wait_ready(self, timeout=120):
        import httpx
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.tail()}")
            try:
                if httpx.get(self.url + "/ready", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"server not ready in {timeout} s: {self.tail()}")

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def resident_mb():
    """Resident memory of this process, MB (Linux /proc)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


@contextlib.contextmanager
def memory_bound(limit_mb, what):
    """Assert the resident memory grows by less than ``limit_mb`` over the block; print it."""
    before = resident_mb()
    yield
    grown = resident_mb() - before
    print(f"\nresident memory over {what}: {before:.0f} MB -> {before + grown:.0f} MB ({grown:+.0f} MB)")
    assert grown < limit_mb, f"{what}: resident memory grew by {grown:.0f} MB"
