"""Training throughput: fp32 vs ``--amp`` (bfloat16 on CPU), hand-written vs fused AdamW.

    nice -n 10 .venv/bin/python benchmarks/train_speed.py [--models audio_cnn,late_base|all] [--rounds 3]

Every preset runs at its own input sizes (``emotion_mx.models.model_input_sizes``: Whisper takes 80
mel bins, MiniLM its WordPiece vocabulary, mini-Xception 64 px faces); ``all``: every registered
preset.  The CPU's ISA flags and thread settings are printed above the tables.

Two tables, both same-run ratios (median and min..max over interleaved rounds):

* **optimizer step** — ``gluon.Trainer.step`` alone (gradients already computed) with
  ``AdamW(fused=False)`` (the former ndarray expression) vs ``AdamW()`` (MXNet's fused
  ``contrib.adamw_update``), one process, alternating blocks of steps; and fp32 samples/s of
  forward + backward + step with each;
* **training samples/s** — forward + backward + fused AdamW step on synthetic inputs in three
  precisions: ``fp32``; ``amp`` as the trainer runs it (``init_amp('bfloat16')`` with the
  project's op lists: BatchNorm & co. kept fp32); ``amp-default`` (MXNet's bf16 lists, where
  BatchNorm follows its input into bf16); and ``--amp (probe)``: what ``--amp`` trains in after
  its start-of-training probe (``amp.probe_precision``, run once per model before the rounds; its
  line is printed), timed as a fourth subprocess.  ``amp.init`` is process-wide, so each
  precision runs in its own subprocess; rounds alternate the subprocesses so load drifts hit all.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)

FEATURES = dict(audio_dim=64, audio_frames=300, max_tokens=32, num_frames=8, frame_size=48)


def features_for(model):
    """The benchmark's input sizes, except where the preset fixes its own (pretrained encoders)."""
    from emotion_mx.models import model_input_sizes
    fixed = model_input_sizes(model)
    return {k: v for k, v in FEATURES.items() if k not in fixed}


def isa_line():
    from emotion_mx.deploy.pipeline import cpu_info
    cpu = cpu_info()
    return (f"{cpu['model']}, {cpu['cores']} cores ({', '.join(cpu['flags']) or 'no AVX2'}); "
            f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, MXNET_CPU_WORKER_NTHREADS="
            f"{os.environ.get('MXNET_CPU_WORKER_NTHREADS')}")


def _setup(model, batch_size, precision):
    import mxnet as mx
    import numpy as np
    from mxnet import autograd, gluon
    from emotion_mx.deploy.testing import spec_for, synthetic_inputs
    from emotion_mx.training.amp import init_amp
    if precision != "fp32":
        init_amp("bfloat16", keep_fp32_slow_ops=precision == "amp")
    net, spec = spec_for(model, **features_for(model))
    net.initialize(mx.init.Xavier())
    net.hybridize(static_alloc=True)
    names = list(spec["inputs"])
    x = synthetic_inputs(spec, batch_size=batch_size, seed=0)
    data = [mx.nd.array(x[n]) for n in names]
    y = mx.nd.array(np.arange(batch_size) % spec["num_classes"])
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()

    def out_of(o):
        return o[0] if isinstance(o, (list, tuple)) else o

    def backward():
        with autograd.record():
            loss = loss_fn(out_of(net(*data)).astype("float32"), y)
        loss.backward()
        return loss
    backward()
    return net, backward


def _samples_per_s(model, batch_size, precision, steps):
    """Child process: forward+backward+fused AdamW steps/s × batch."""
    from mxnet import gluon
    from emotion_mx.training.optim import AdamW
    net, backward = _setup(model, batch_size, precision)
    tr = gluon.Trainer(net.collect_params(), AdamW(learning_rate=1e-4))
    for _ in range(2):
        backward().wait_to_read()
        tr.step(batch_size)
    import mxnet as mx
    mx.nd.waitall()
    t0 = time.perf_counter()
    for _ in range(steps):
        backward()
        tr.step(batch_size)
    mx.nd.waitall()
    return steps * batch_size / (time.perf_counter() - t0)


def optimizer_steps(model, batch_size, rounds, steps):
    """ms per Trainer.step, hand-written vs fused, alternating in one process."""
    import mxnet as mx
    from mxnet import gluon
    from emotion_mx.training.optim import AdamW
    net, backward = _setup(model, batch_size, "fp32")
    backward()
    mx.nd.waitall()
    trainers = {k: gluon.Trainer(net.collect_params(), AdamW(learning_rate=1e-9, fused=(k == "fused")))
                for k in ("hand-written", "fused")}
    per = {k: [] for k in trainers}
    sps = {k: [] for k in trainers}
    for r in range(rounds + 1):
        for k, tr in trainers.items():
            total, whole = 0.0, 0.0
            for _ in range(steps):
                t_b = time.perf_counter()
                backward()              # fresh gradients (timed into samples/s only)
                mx.nd.waitall()
                t0 = time.perf_counter()
                tr.step(batch_size)
                mx.nd.waitall()
                total += time.perf_counter() - t0
                whole += time.perf_counter() - t_b
            if r:                       # round 0 warms up (state creation)
                per[k].append(total * 1e3 / steps)
                sps[k].append(steps * batch_size / whole)
    n = sum(p.data().size for p in net.collect_params().values())
    return per, sps, n


def _spread(xs):
    return f"{statistics.median(xs):.2f} ({min(xs):.2f}..{max(xs):.2f})"


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="audio_cnn,late_base")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=10, help="training steps per round and precision")
    p.add_argument("--child", nargs=3, metavar=("MODEL", "PRECISION", "STEPS"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        model, precision, steps = args.child
        print(json.dumps(_samples_per_s(model, args.batch_size, precision, int(steps))))
        return
    if args.models == "all":
        from emotion_mx.models import list_models
        models = list_models()
    else:
        models = args.models.split(",")
    print(f"# {isa_line()}; batch {args.batch_size}; medians (min..max) over {args.rounds} interleaved rounds\n")
    print("## optimizer step (ms per Trainer.step)\n")
    print("| model | params | step, hand-written | step, fused | speed-up | fp32 samples/s, hand-written | "
          "fp32 samples/s, fused | speed-up |")
    print("|---|---|---|---|---|---|---|---|")
    for model in models:
        per, sps, n = optimizer_steps(model, args.batch_size, args.rounds, args.steps)
        ratio = [a / b for a, b in zip(per["hand-written"], per["fused"])]
        ratio_s = [b / a for a, b in zip(sps["hand-written"], sps["fused"])]
        print(f"| {model} | {n / 1e6:.2f} M | {_spread(per['hand-written'])} | {_spread(per['fused'])} | "
              f"{_spread(ratio)}x | {_spread(sps['hand-written'])} | {_spread(sps['fused'])} | {_spread(ratio_s)}x |",
              flush=True)
    import mxnet as mx
    from emotion_mx.training.amp import resolve_precision
    dtype, note = resolve_precision(True, [mx.cpu()])
    if dtype == "float32":
        print(f"\n## training samples/s: fp32 vs amp not measured on this CPU\n\n{note}")
        return
    print("\n## training samples/s (forward + backward + fused AdamW)\n")
    print("| model | fp32 | amp (ours: BatchNorm etc. fp32) | amp-default (MXNet lists) | --amp (probe) | "
          "amp / fp32 | amp-default / fp32 | --amp (probe) / fp32 |")
    print("|---|---|---|---|---|---|---|---|")
    from emotion_mx.deploy.testing import spec_for
    from emotion_mx.training.amp import probe_precision
    as_child = {"float32": "fp32", "bfloat16": "amp", "bfloat16-mxnet": "amp-default"}
    probe_lines = []
    for model in models:
        _, spec = spec_for(model, **features_for(model))
        choice, line = probe_precision(model, spec.kwargs, spec.modalities, spec.num_classes, spec.inputs,
                                       args.batch_size)
        probe_lines.append(f"{model}: {line}")
        precisions = {"fp32": "fp32", "amp": "amp", "amp-default": "amp-default", "probe": as_child[choice]}
        res = {k: [] for k in precisions}
        for _ in range(args.rounds):
            for key, prec in precisions.items():
                out = subprocess.run([sys.executable, __file__, "--batch-size", str(args.batch_size),
                                      "--child", model, prec, str(args.steps)],
                                     capture_output=True, text=True, cwd=ROOT)
                if out.returncode:
                    sys.exit(f"{model} {prec} failed:\n{out.stderr[-2000:]}")
                res[key].append(float(out.stdout.strip().splitlines()[-1]))
        r1, r2, r3 = ([a / b for a, b in zip(res[k], res["fp32"])] for k in ("amp", "amp-default", "probe"))
        print(f"| {model} | {_spread(res['fp32'])} | {_spread(res['amp'])} | {_spread(res['amp-default'])} | "
              f"{_spread(res['probe'])} ({as_child[choice]}) | {_spread(r1)}x | {_spread(r2)}x | {_spread(r3)}x |",
              flush=True)
    print("\n" + "\n".join(f"- {ln}" for ln in probe_lines))


if __name__ == "__main__":
    main()
