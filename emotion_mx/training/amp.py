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

Loss scaling (``DynamicLossScaler``): MXNet 1.9 has ``mxnet.contrib.amp.LossScaler``, but it
checks only the first context's gradients, its skip lives in ``Trainer._update`` (too late when
``update_on_kvstore=True``: the kvstore has already applied the update), its growth window is a
hard-coded 2000 steps and ``amp.init_trainer`` requires the global ``amp.init``.  This scaler is
explicit: the training step multiplies the loss by ``scale``, all-reduces, asks
:meth:`DynamicLossScaler.check` and skips the update on overflow.
"""
import logging

import mxnet as mx

__all__ = ["cpu_flags", "cpu_has_avx512", "resolve_precision", "amp_op_lists", "init_amp",
           "convert_symbol", "DynamicLossScaler", "grads_finite"]

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
    """Process-wide ``mxnet.contrib.amp.init`` (call once, before building the model)."""
    from mxnet.contrib import amp
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

