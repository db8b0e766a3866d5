"""Devices, kvstores and the local/ssh launcher for ``dist_sync`` training.

* :func:`make_contexts` — ``--gpus 0,1`` / ``--cpus N`` → contexts (GPU ids fall back to the
  same number of CPU contexts, with one message, on a machine without GPUs).
* :class:`Worker` — rank, number of workers, the kvstore and collectives (sum, broadcast of
  rank 0's validation score) so that every worker takes the same decisions.
* :class:`GradientSync` — gradient all-reduce over dist workers (the Gluon Trainer's own dist
  path with ``update_on_kvstore=False`` gave wrong updates in MXNet 1.9.1; see the class).
* :func:`launch` — starts a scheduler, servers and workers with the DMLC_* environment
  locally (subprocesses) or on hosts over ssh; always cleans up its processes.  Written for
  Python 3.11 (MXNet's own ``tools/launch.py``/dmlc_tracker uses ``Thread.isAlive``).
"""
import contextlib
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import mxnet as mx
import numpy as np

from ..errors import EmotionMXError

__all__ = ["parse_device_list", "make_contexts", "Worker", "GradientSync", "make_worker", "shard_indices",
           "free_port", "launch", "read_hosts"]

KVSTORES = ("device", "local", "dist_sync", "dist_device_sync", "dist_async")
_BROADCAST_KEY = 999_983    # an int key well above the Trainer's parameter indices


def parse_device_list(text):
    try:
        ids = [int(t) for t in str(text).split(",") if t.strip() != ""]
    except ValueError:
        raise EmotionMXError(f"--gpus: expected comma-separated device ids such as 0,1, got {text!r}") from None
    if not ids or any(i < 0 for i in ids) or len(set(ids)) != len(ids):
        raise EmotionMXError(f"--gpus: expected distinct non-negative ids such as 0,1, got {text!r}")
    return ids


def make_contexts(gpus=None, cpus=None, num_gpus=None):
    """``(contexts, message)``; message is the one line to print on a GPU → CPU fallback."""
    if gpus is not None and cpus is not None:
        raise EmotionMXError("give either --gpus or --cpus, not both")
    if cpus is not None:
        if int(cpus) < 1:
            raise EmotionMXError(f"--cpus must be >= 1, got {cpus}")
        return [mx.cpu(i) for i in range(int(cpus))], None
    if gpus is None:
        return [mx.cpu(0)], None
    ids = parse_device_list(gpus) if isinstance(gpus, str) else list(gpus)
    available = mx.context.num_gpus() if num_gpus is None else num_gpus
    if available == 0:
        return [mx.cpu(i) for i in range(len(ids))], (
            f"--gpus {','.join(map(str, ids))}: no GPU on this machine (or a CPU-only MXNet build); "
            f"using {len(ids)} CPU context(s) instead (same data-parallel code path, no speed-up)")
    missing = [i for i in ids if i >= available]
    if missing:
        raise EmotionMXError(f"--gpus: device {missing[0]} does not exist ({available} GPU(s) visible)")
    return [mx.gpu(i) for i in ids], None


@dataclass
class Worker:
    rank: int = 0
    num_workers: int = 1
    kvstore: Any = "device"          # 'device'/'local'/None for gluon.Trainer, or the dist KVStore
    distributed: bool = False
    _keys: set = field(default_factory=set, repr=False)

    @property
    def is_chief(self):
        return self.rank == 0

    def allreduce_sum(self, values):
        """Sum of ``values`` (list of floats) over all workers (identity when not distributed).

        A collective: every worker must call it the same number of times, in the same order."""
        values = np.asarray(values, dtype=np.float32)
        if not self.distributed:
            return values
        kv = self.kvstore
        key = _BROADCAST_KEY + len(values)
        if key not in self._keys:
            kv.init(key, mx.nd.zeros(values.shape, dtype="float32"))
            self._keys.add(key)
        out = mx.nd.zeros(values.shape, dtype="float32")
        kv.pushpull(key, mx.nd.array(values, dtype="float32"), out=out)   # no optimizer on servers: summed
        return out.asnumpy()

    def broadcast(self, values):
        """Rank 0's ``values`` on every worker (a collective, like :meth:`allreduce_sum`)."""
        values = np.asarray(values, dtype=np.float32)
        return self.allreduce_sum(values if self.is_chief else np.zeros_like(values))

    def barrier(self):
        if self.distributed:
            self.kvstore._barrier()   # MXNet 1.9 has no public barrier


class GradientSync:
    """All-reduce of gradients over dist workers through the kvstore (keys 0..n-1).

    On creation every worker takes rank 0's parameter values (a collective).
    :meth:`allreduce_grads` sums each gradient over the worker's contexts, then over the
    workers (``pushpull`` into a separate buffer, never in place), and copies the result into
    every context's gradient, so each worker then applies the same
    update locally and replicas stay identical.  BatchNorm running statistics (grad_req
    'null') are not synchronised.
    """

    def __init__(self, worker, params):
        self.worker = worker
        self.params = [p for p in params.values() if p.grad_req != "null"]
        kv = worker.kvstore
        self._bufs = []
        for i, p in enumerate(self.params):
            data = p.list_data()
            kv.init(i, mx.nd.zeros(p.shape, dtype=data[0].dtype))
            out = mx.nd.zeros(p.shape, dtype=data[0].dtype)
            value = data[0].copy() if worker.is_chief else mx.nd.zeros(p.shape, dtype=data[0].dtype)
            kv.pushpull(i, value, out=out)            # rank 0's values on every worker
            for d in data:
                out.copyto(d)
            self._bufs.append(mx.nd.zeros(p.shape, ctx=data[0].context, dtype=data[0].dtype))

    def allreduce_grads(self):
        kv = self.worker.kvstore
        for i, p in enumerate(self.params):
            grads = p.list_grad()
            local = grads[0] if len(grads) == 1 else \
                mx.nd.add_n(*[g.as_in_context(grads[0].context) for g in grads])
            kv.pushpull(i, local, out=self._bufs[i], priority=-i)
            for g in grads:
                self._bufs[i].copyto(g)


def make_worker(kvstore="device"):
    """Worker for a kvstore type; ``dist_*`` creates the kvstore (needs the DMLC_* env)."""
    if kvstore not in KVSTORES:
        raise EmotionMXError(f"--kvstore must be one of {', '.join(KVSTORES)}, got {kvstore!r}")
    if not kvstore.startswith("dist"):
        return Worker(kvstore=kvstore)
    if "DMLC_ROLE" not in os.environ:
        raise EmotionMXError(f"--kvstore {kvstore} needs the DMLC_* environment: start training "
                             "with tools/launch.py")
    if kvstore == "dist_async":
        raise EmotionMXError("--kvstore dist_async is not supported: early stopping and resumption "
                             "need synchronous workers (use dist_sync)")
    kv = mx.kv.create(kvstore)
    return Worker(rank=kv.rank, num_workers=kv.num_workers, kvstore=kv, distributed=True)


def shard_indices(n, rank, num_workers):
    """This worker's static shard of ``range(n)`` (round robin)."""
    return np.arange(rank, n, num_workers, dtype=np.int64)


# --------------------------------------------------------------------------------------------
# launcher
# --------------------------------------------------------------------------------------------

def free_port(host="127.0.0.1"):
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def read_hosts(path):
    try:
        with open(path, encoding="utf-8") as f:
            hosts = [ln.split("#", 1)[0].strip() for ln in f]
    except OSError as e:
        raise EmotionMXError(f"{path}: cannot read hosts file ({e.strerror})") from None
    hosts = [h for h in hosts if h]
    for n, h in enumerate(hosts, 1):
        check_host(h, where=f"{path}: host {n}")
    if not hosts:
        raise EmotionMXError(f"{path}: no hosts listed (one host name or user@host per line)")
    return hosts


_HOST = re.compile(r"^[A-Za-z0-9_.@:\[\]%+-]+$")


def check_host(host, where="host"):
    """A hostfile entry is an ssh target, never an option: refuse a leading ``-``, whitespace,
    control characters or shell metacharacters (``-oProxyCommand=...`` would run a command)."""
    if not isinstance(host, str) or not host or host.startswith("-") or not _HOST.match(host):
        raise EmotionMXError(f"{where}: {host!r} is not a host name (user@host or host; no leading '-', "
                             "spaces or control characters)")
    return host


def _dmlc_env(role, root_uri, port, num_servers, num_workers):
    return {"DMLC_ROLE": role, "DMLC_PS_ROOT_URI": str(root_uri), "DMLC_PS_ROOT_PORT": str(port),
            "DMLC_NUM_SERVER": str(num_servers), "DMLC_NUM_WORKER": str(num_workers)}


def _ssh_command(host, env, command, cwd, ssh="ssh", check_host_keys=True):
    """ssh argv for ``command`` on ``host``.  Host keys are checked against known_hosts (an
    unknown or changed key fails); ``check_host_keys=False`` is the explicit opt-out."""
    check_host(host)
    exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
    remote = f"cd {shlex.quote(cwd)} && env {exports} {' '.join(shlex.quote(c) for c in command)}"
    strict = "yes" if check_host_keys else "no"
    return [ssh, "-o", f"StrictHostKeyChecking={strict}", "-o", "BatchMode=yes", "--", host, remote]


@dataclass
class _Proc:
    role: str
    popen: subprocess.Popen


def _kill(procs, grace=5.0):
    for p in procs:
        if p.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(p.popen.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for p in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.popen.wait(timeout=max(0.0, deadline - time.monotonic()))
        if p.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(p.popen.pid, signal.SIGKILL)
            p.popen.wait()


def plan(command, num_workers, num_servers=1, hosts=None, port=None, root_uri=None,
         python=sys.executable, cwd=None, check_host_keys=True):
    """The processes :func:`launch` starts: list of ``(role, argv, env)`` (scheduler first)."""
    if num_workers < 1 or num_servers < 1:
        raise EmotionMXError("need at least one worker and one server")
    cwd = cwd or os.getcwd()
    if hosts:
        root_uri = root_uri or socket.gethostbyname(socket.gethostname())
    else:
        root_uri = root_uri or "127.0.0.1"
    port = port or free_port("" if hosts else root_uri)
    server_cmd = [python, "-c", "import mxnet"]     # DMLC_ROLE=server/scheduler run on import
    out = [("scheduler", server_cmd, _dmlc_env("scheduler", root_uri, port, num_servers, num_workers))]
    roles = [("server", server_cmd)] * num_servers + [("worker", list(command))] * num_workers
    for i, (role, cmd) in enumerate(roles):
        env = _dmlc_env(role, root_uri, port, num_servers, num_workers)
        if hosts:
            host = hosts[i % len(hosts)]
            out.append((role, _ssh_command(host, env, cmd, cwd, check_host_keys=check_host_keys), {}))
        else:
            out.append((role, cmd, env))
    return out


def launch(command, num_workers, num_servers=1, hosts=None, port=None, root_uri=None,
           timeout=None, python=sys.executable, log=print, check_host_keys=True):
    """Run ``command`` (argv list) as ``num_workers`` dist workers; return the exit code.

    Locally (``hosts`` None) everything runs on 127.0.0.1; with ``hosts`` (list of ssh
    targets) the scheduler runs here and servers/workers round-robin over the hosts (same
    working directory path; password-less ssh required).  Returns the first non-zero worker
    exit code (0 if all succeed); on a failure, a timeout or Ctrl-C every process is killed.
    """
    procs = []
    try:
        for role, argv, env in plan(command, num_workers, num_servers, hosts, port, root_uri, python,
                                    check_host_keys=check_host_keys):
            full_env = dict(os.environ, **env)
            if role != "worker":
                full_env.setdefault("PS_VERBOSE", "0")
            procs.append(_Proc(role, subprocess.Popen(argv, env=full_env, start_new_session=True)))
        workers = [p for p in procs if p.role == "worker"]
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            codes = [p.popen.poll() for p in workers]
            failed = [c for c in codes if c not in (None, 0)]
            if failed:
                log(f"launch: a worker exited with code {failed[0]}; stopping the others")
                return failed[0]
            if all(c == 0 for c in codes):
                break
            others_dead = [p for p in procs if p.role != "worker" and p.popen.poll() not in (None, 0)]
            if others_dead:
                log(f"launch: the {others_dead[0].role} exited with code {others_dead[0].popen.returncode}")
                return others_dead[0].popen.returncode or 1
            if deadline is not None and time.monotonic() > deadline:
                log(f"launch: timed out after {timeout:.0f} s; killing all processes")
                return 124
            time.sleep(0.1)
        # workers finished: servers and scheduler exit on their own once workers finalize
        for p in procs:
            if p.role != "worker":
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.popen.wait(timeout=10)
        return 0
    except KeyboardInterrupt:
        log("launch: interrupted; killing all processes")
        return 130
    finally:
        _kill(procs)
