"""Mixed precision: choosing the precision, AMP op lists with two known 1.9 fixes, and a
dynamic loss scaler.

Precision (``resolve_precision``): ``--amp`` on GPUs → float16 with dynamic loss scaling; on
CPUs → bfloat16 only when the CPU has AVX-512 (oneDNN's bf16 kernels; ``avx512f`` in
/proc/cpuinfo, ``avx512_bf16`` makes them fast), otherwise one message and float32.

Op lists (``amp_op_lists``): MXNet's defaults, with
  * ``_zeros`` / ``_zeros_without_dtype`` removed from the fp32 list: wrapped by ``amp.init``
    they make ``rnn.LSTM`` inside a hybridized parent fail ("'NoneType' object is not
    iterable"; bfloat16 lists them as fp32);
  * ``Concat`` / ``concat`` forced to fp32 when the target's lists do not already give them
    widest-type casting (``amp_multicast``): otherwise Concat of an fp32 and a low-precision
    input fails with "Non-uniform data type in Concat" (bfloat16 lists them as lp16-or-fp32).

Probe (``probe_precision``): on a CPU with ``avx512_bf16``, ``--amp`` times a few training
steps of the model about to be trained in float32, in bfloat16 with the project's op lists and
in bfloat16 with MXNet's lists (``'bfloat16-mxnet'``), each in its own subprocess
(``amp.init`` is process-wide) and in interleaved rounds, keeps the fastest (bfloat16 only when
it beats float32 by :data:`PROBE_MARGIN`) and says which in one line.  The probe runs on
synthetic inputs in child processes: the training process's RNG states, parameters and
optimizer are untouched, so the chosen precision trains exactly as without a probe.

Loss scaling (``DynamicLossScaler``): MXNet 1.9 has ``mxnet.contrib.amp.LossScaler``, but it
checks only the first context's gradients, its skip lives in ``Trainer._update`` (too late when
``update_on_kvstore=True``: the kvstore has already applied the update), its growth window is a
hard-coded 2000 steps and ``amp.init_trainer`` requires the global ``amp.init``.  This scaler is
explicit: the training step multiplies the loss by ``scale``, all-reduces, asks
:meth:`DynamicLossScaler.check` and skips the update on overflow.
"""
import json
import logging
import os
import statistics
import subprocess
import sys
import time

import mxnet as mx

__all__ = ["cpu_flags", "cpu_has_avx512", "resolve_precision", "amp_op_lists", "init_amp",
           "convert_symbol", "PROBE_CHOICES", "PROBE_MARGIN", "choose_precision", "probe_precision", "decide_precision", "DynamicLossScaler", "grads_finite"]

log = logging.getLogger(__name__)


def cpu_flags(path="/proc/cpuinfo"):
    try:
        with open(path) as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_has_avx512(flags=None):
    flags = cpu_flags() if flags is None else flags
    return "avx512f" in flags


def resolve_precision(amp, contexts, flags=None):
    """``(dtype, message)``: dtype is 'float32', 'float16' or 'bfloat16'; message is None or
    the one line to print when ``--amp`` cannot be honoured as asked."""
    if not amp:
        return "float32", None
    if all(c.device_type == "gpu" for c in contexts):
        return "float16", None
    if any(c.device_type == "gpu" for c in contexts):
        return "float32", "--amp: mixed GPU and CPU contexts; training in float32"
    flags = cpu_flags() if flags is None else flags
    if cpu_has_avx512(flags):
        note = None if "avx512_bf16" in flags else \
            "--amp: CPU has AVX-512 but not avx512_bf16; bfloat16 runs emulated (slow)"
        return "bfloat16", note
    return "float32", ("--amp: float16 needs a GPU and bfloat16 needs a CPU with AVX-512 "
                       "(not found in /proc/cpuinfo); training in float32")


def _dtype_arg(target_dtype):
    if target_dtype == "bfloat16":
        from mxnet.contrib.amp.amp import bfloat16
        return bfloat16
    return target_dtype


# Ops MXNet's bf16 lists let follow their input into bfloat16 although oneDNN 1.9.1 has no fast
# bf16 kernel for them on CPU: BatchNorm falls to a generic kernel (5.1 s of an 8.5 s epoch,
# --amp 1.8x slower than fp32, measured on an AVX-512 machine).  Kept in fp32 (one cast in, the
# next Convolution casts back).  Not measured on the 2-core AVX2 CI machine: there --amp falls
# back to fp32 (resolve_precision) because oneDNN has no bf16 convolution without AVX-512.
BF16_SLOW_OPS = ("BatchNorm",)


def amp_op_lists(target_dtype, keep_fp32_slow_ops=True):
    """``dict(target_precision_ops, fp32_ops, conditional_fp32_ops)`` for ``amp.init`` /
    ``amp.convert_symbol`` with the two fixes described in the module docstring and, for
    bfloat16, :data:`BF16_SLOW_OPS` in fp32 (``keep_fp32_slow_ops=False``: MXNet's lists, for
    ``benchmarks/train_speed.py``)."""
    from mxnet.contrib import amp
    dt = _dtype_arg(target_dtype)
    fp32 = [op for op in amp.list_fp32_ops(dt) if op not in ("_zeros", "_zeros_without_dtype")]
    if target_dtype == "bfloat16" and keep_fp32_slow_ops:
        fp32 += [op for op in BF16_SLOW_OPS if op not in fp32]
    widest = set(amp.list_widest_type_cast(dt) or [])
    for op in ("Concat", "concat"):
        if op not in widest and op not in fp32:
            fp32.append(op)
    return {
        "target_precision_ops": list(amp.list_lp16_ops(dt)),
        "fp32_ops": fp32,
        "conditional_fp32_ops": list(amp.list_conditional_fp32_ops(dt) or []),
    }


def init_amp(target_dtype, keep_fp32_slow_ops=True):
    """Process-wide ``mxnet.contrib.amp.init`` (call once, before building the model).
    ``'bfloat16-mxnet'`` (a probe choice): bfloat16 with MXNet's op lists."""
    from mxnet.contrib import amp
    if target_dtype == "bfloat16-mxnet":
        target_dtype, keep_fp32_slow_ops = "bfloat16", False
    if target_dtype not in ("float16", "bfloat16"):
        raise ValueError(f"AMP target must be float16 or bfloat16, got {target_dtype!r}")
    amp.init(target_dtype=target_dtype, **amp_op_lists(target_dtype, keep_fp32_slow_ops))


def convert_symbol(sym, target_dtype, data_names):
    """``amp.convert_symbol`` with :func:`amp_op_lists` (graph pass, for inference/export)."""
    from mxnet.contrib import amp
    lists = amp_op_lists(target_dtype)
    return amp.convert_symbol(sym, target_dtype=target_dtype, data_names=list(data_names),
                              target_dtype_ops=lists["target_precision_ops"], fp32_ops=lists["fp32_ops"],
                              conditional_fp32_ops=lists["conditional_fp32_ops"])


PROBE_CHOICES = ("float32", "bfloat16", "bfloat16-mxnet")
PROBE_LABELS = {"float32": "fp32", "bfloat16": "bf16 (project op lists)", "bfloat16-mxnet": "bf16 (MXNet op lists)"}
# bfloat16 is kept only when its median samples/s beats float32's by this factor: within the
# noise of a short probe, float32 (exact, no casts) is the safer choice.
PROBE_MARGIN = 1.03


def choose_precision(rates, margin=PROBE_MARGIN, failed=None):
    """``(choice, line)`` from ``rates`` = {choice: [samples/s per round]} (``'float32'`` must be
    there): the fastest by median; a bfloat16 choice only if it is ``margin`` x faster than
    float32.  ``failed``: {choice: reason} for candidates that did not run."""
    if not rates.get("float32"):
        raise ValueError("the probe needs float32 timings")
    med = {k: statistics.median(v) for k, v in rates.items() if v}
    base = med["float32"]
    best = max(med, key=med.get)
    keep = best if best == "float32" or med[best] >= margin * base else "float32"
    parts = [f"{PROBE_LABELS['float32']} {base:.1f} samples/s"] + [
        f"{PROBE_LABELS[k]} {med[k] / base:.2f}x" for k in PROBE_CHOICES[1:] if k in med]
    parts += [f"{PROBE_LABELS[k]} failed ({r})" for k, r in (failed or {}).items()]
    if keep == "float32":
        why = ("bfloat16 was slower on this model" if best == "float32"
               else f"bfloat16's {med[best] / base:.2f}x is within the {margin:.2f}x noise margin")
        verdict = f"training in float32 ({why})"
    else:
        verdict = f"training in {PROBE_LABELS[keep]} ({med[keep] / base:.2f}x fp32)"
    n = max(len(v) for v in rates.values())
    return keep, f"--amp probe ({n} rounds): " + ", ".join(parts) + f"; {verdict}"


def _probe_child():
    """Child process: argv[1] = JSON job; prints samples/s of forward+backward+AdamW steps."""
    job = json.loads(sys.argv[1])
    import numpy as np
    from mxnet import autograd, gluon
    from ..contract import input_names, random_inputs
    from ..models import get_model
    from .optim import AdamW
    if job["precision"] != "float32":
        init_amp(job["precision"])
    mx.random.seed(0)
    net = get_model(job["model"], num_classes=job["num_classes"], modalities=job["modalities"], **job["kwargs"])
    net.initialize(mx.init.Xavier())
    if job.get("hybridize", True):
        net.hybridize(static_alloc=True)
    bs = job["batch_size"]
    names = input_names(job["modalities"])
    x = random_inputs({n: job["inputs"][n] for n in names}, batch_size=bs,
                      vocab_size=job["kwargs"].get("vocab_size", 50), seed=0, masks="full")
    data = [mx.nd.array(x[n]) for n in names]
    y = mx.nd.array(np.arange(bs) % job["num_classes"])
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    tr = gluon.Trainer(net.collect_params(), AdamW(learning_rate=1e-5))

    def step():
        with autograd.record():
            out = net(*data)
            out = out[0] if isinstance(out, (list, tuple)) else out
            loss = loss_fn(out.astype("float32"), y)
        loss.backward()
        tr.step(bs)
    for _ in range(2):
        step()
    mx.nd.waitall()
    t0 = time.perf_counter()
    for _ in range(job["steps"]):
        step()
    mx.nd.waitall()
    print(json.dumps(job["steps"] * bs / (time.perf_counter() - t0)))


def _measure_child(job):
    """Samples/s of one child run (:func:`_probe_child`); raises RuntimeError on failure."""
    code = "from emotion_mx.training.amp import _probe_child; _probe_child()"
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p))
    out = subprocess.run([sys.executable, "-c", code, json.dumps(job)], capture_output=True, text=True, env=env)
    if out.returncode:
        lines = [ln for ln in out.stderr.strip().splitlines() if ln.strip()]
        raise RuntimeError(lines[-1][:200] if lines else f"exit code {out.returncode}")
    return float(out.stdout.strip().splitlines()[-1])


def probe_precision(model, kwargs, modalities, num_classes, inputs, batch_size, *, rounds=2, steps=3,
                    measure=None, choices=PROBE_CHOICES, hybridize=True):
    """Time ``steps`` training steps of registry model ``model`` (``kwargs``, ``inputs`` =
    {input name: shape without batch}) in each of ``choices``, ``rounds`` interleaved rounds
    (one subprocess per run; ``measure(job) -> samples/s`` replaces it in tests).  Returns
    :func:`choose_precision`'s ``(choice, line)``; a bfloat16 candidate that fails is dropped
    (named in the line), a float32 failure is raised."""
    measure = measure or _measure_child
    rates = {c: [] for c in choices}
    failed = {}
    for _ in range(rounds):
        for c in choices:
            if c in failed:
                continue
            job = dict(model=model, kwargs=dict(kwargs), modalities=list(modalities), num_classes=int(num_classes),
                       inputs={k: [int(d) for d in v] for k, v in inputs.items()}, batch_size=int(batch_size),
                       steps=int(steps), precision=c, hybridize=bool(hybridize))
            try:
                rates[c].append(float(measure(job)))
            except RuntimeError as e:
                if c == "float32":
                    raise
                failed[c] = str(e)
                rates.pop(c, None)
    return choose_precision(rates, failed=failed)


def decide_precision(amp, contexts, probe=None, *, recorded=None, distributed=False, flags=None, measure=None):
    """``(precision, lines)`` for ``--amp`` (the training call site): :func:`resolve_precision`,
    then, when that gives bfloat16, :func:`probe_precision` with ``probe`` (its keyword
    arguments: model, kwargs, modalities, num_classes, inputs, batch_size).  ``recorded``: the
    precision of the run being resumed (kept, no probe, so a resumed run continues as it
    started); ``distributed``: no probe (every worker must train in the same precision)."""
    precision, note = resolve_precision(amp, contexts, flags=flags)
    lines = [note] if note else []
    if precision != "bfloat16":
        return precision, lines
    if recorded is not None:
        return recorded, lines + [f"--amp: resuming in {recorded}, the precision the run started with"]
    if distributed or probe is None:
        return precision, lines + (["--amp: no precision probe with a distributed kvstore; training in bfloat16"]
                                   if distributed else [])
    choice, line = probe_precision(measure=measure, **probe)
    return choice, lines + [line]


def grads_finite(params):
    """True iff every gradient of every context is finite (one fused check per context)."""
    grads = [g for p in params if p.grad_req != "null" for g in p.list_grad()]
    if not grads:
        return True
    by_ctx = {}
    for g in grads:
        by_ctx.setdefault(g.context, []).append(g)
    flags = []
    for ctx, gs in by_ctx.items():
        out = mx.nd.ones((1,), ctx=ctx)
        for i in range(0, len(gs), 200):
            chunk = gs[i:i + 200]
            mx.nd.multi_all_finite(*chunk, num_arrays=len(chunk), init_output=False, out=out)
        flags.append(out)
    return all(bool(f.asscalar()) for f in flags)


class DynamicLossScaler:
    """Dynamic loss scale: halve (``factor``) and skip the step on overflow; double after
    ``window`` consecutive clean steps, up to ``max_scale``."""

    def __init__(self, init_scale=2.0 ** 15, factor=2.0, window=1000, min_scale=1.0, max_scale=2.0 ** 24):
        if factor <= 1 or window < 1 or not (0 < min_scale <= init_scale <= max_scale):
            raise ValueError("need factor > 1, window >= 1, 0 < min_scale <= init_scale <= max_scale")
        self.scale = float(init_scale)
        self.factor = float(factor)
        self.window = int(window)
        self.min_scale = float(min_scale)
        self.max_scale = float(max_scale)
        self.clean_steps = 0
        self.skipped = 0

    def check(self, params):
        """Inspect the (already all-reduced) gradients; return True if the step may proceed.

        On overflow the scale is lowered and False is returned: the caller must skip the
        update (parameters and optimizer states stay unchanged).
        """
        if grads_finite(params):
            self.clean_steps += 1
            if self.clean_steps >= self.window:
                self.scale = min(self.max_scale, self.scale * self.factor)
                self.clean_steps = 0
            return True
        self.scale = max(self.min_scale, self.scale / self.factor)
        self.clean_steps = 0
        self.skipped += 1
        log.info("loss scale lowered to %g after a non-finite gradient; step skipped", self.scale)
        return False

    def state_dict(self):
        return {"scale": self.scale, "clean_steps": self.clean_steps, "skipped": self.skipped}

    def load_state_dict(self, state):
        self.scale = float(state["scale"])
        self.clean_steps = int(state["clean_steps"])
        self.skipped = int(state.get("skipped", 0))

    def __repr__(self):
        return f"DynamicLossScaler(scale={self.scale:g}, clean_steps={self.clean_steps})"

