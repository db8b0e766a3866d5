"""Several contexts, mixed precision and dist_sync (CPU-only machine: 2 CPU contexts stand in for
2 GPUs; float16 graphs are built and type-inferred, not executed)."""
import json
import os
import subprocess
import sys
import textwrap

import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd, gluon

from emotion_mx.training.amp import DynamicLossScaler, amp_op_lists, convert_symbol, resolve_precision
from emotion_mx.training.distributed import launch, make_contexts, plan
from emotion_mx.training.trainer import fit

from test_training_support import LABELS, TinyNet, small_config, synth_split

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def test_gpus_fall_back_to_cpu_contexts_with_one_message():
    ctxs, note = make_contexts(gpus="0,1", num_gpus=0)
    assert ctxs == [mx.cpu(0), mx.cpu(1)]
    assert note.count("\n") == 0 and "no GPU" in note
    ctxs, note = make_contexts(cpus=3)
    assert ctxs == [mx.cpu(0), mx.cpu(1), mx.cpu(2)] and note is None


def test_replicas_stay_identical_on_two_cpu_contexts(tmp_path):
    cfg = small_config(epochs=2)
    res = fit(TinyNet(3), synth_split(64, 0), synth_split(24, 1), cfg, run_dir=str(tmp_path), labels=LABELS,
              modalities=("audio",), contexts=[mx.cpu(0), mx.cpu(1)], progress=False, echo=lambda *a: None,
              tensorboard=False)
    params = [p for p in res.net.collect_params().values() if p.grad_req != "null"]
    assert params
    for p in params:
        a, b = (d.asnumpy() for d in p.list_data())
        np.testing.assert_array_equal(a, b, err_msg=p.name)
    first = res.net.out.weight.list_data()[0].asnumpy()
    assert np.abs(first).sum() > 0 and len(res.history) == 2


def _trainer_with_grads(grad_value):
    net = gluon.nn.Dense(2, in_units=3)
    net.initialize(mx.init.Constant(0.5))
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.1}, update_on_kvstore=False)
    x = mx.nd.ones((4, 3))
    with autograd.record():
        loss = net(x).sum()
    loss.backward()
    if grad_value is not None:
        net.weight.grad()[:] = grad_value
    return net, trainer


def _scaled_step(net, trainer, scaler):
    trainer.allreduce_grads()
    if scaler.check(list(net.collect_params().values())):
        trainer.update(4 * scaler.scale)
        return True
    return False


@pytest.mark.parametrize("bad", [np.inf, np.nan])
def test_loss_scaler_skips_lowers_and_raises(bad):
    scaler = DynamicLossScaler(init_scale=1024.0, factor=2.0, window=3)
    net, trainer = _trainer_with_grads(bad)
    before = net.weight.data().asnumpy().copy()
    assert _scaled_step(net, trainer, scaler) is False
    np.testing.assert_array_equal(net.weight.data().asnumpy(), before)     # update skipped
    assert scaler.scale == 512.0 and scaler.skipped == 1
    for i in range(3):                                                     # N clean steps → raise
        net, trainer = _trainer_with_grads(None)
        w0 = net.weight.data().asnumpy().copy()
        assert _scaled_step(net, trainer, scaler) is True
        assert not np.allclose(net.weight.data().asnumpy(), w0)
        assert scaler.scale == (512.0 if i < 2 else 1024.0)
    state = scaler.state_dict()
    other = DynamicLossScaler()
    other.load_state_dict(state)
    assert other.scale == 1024.0 and other.clean_steps == 0


def test_mxnet_has_loss_scaler_but_we_use_our_own():
    from mxnet.contrib.amp.loss_scaler import LossScaler    # exists in 1.9 (checks context 0 only)
    assert LossScaler()._scale_seq_len == 2000


def test_precision_resolution():
    cpu2 = [mx.cpu(0), mx.cpu(1)]
    assert resolve_precision(False, cpu2) == ("float32", None)
    assert resolve_precision(True, [mx.gpu(0)]) == ("float16", None)
    dt, note = resolve_precision(True, cpu2, flags={"avx2", "fma"})
    assert dt == "float32" and "AVX-512" in note and "\n" not in note
    assert resolve_precision(True, cpu2, flags={"avx512f", "avx512_bf16"}) == ("bfloat16", None)


class _Fusion(gluon.HybridBlock):
    """Audio Dense branch (lp16) + LSTM + fp32 text statistic, concatenated: the AMP pitfalls."""

    def __init__(self, **kw):
        super().__init__(**kw)
        with self.name_scope():
            self.a = gluon.nn.Dense(8, flatten=False)
            self.lstm = gluon.rnn.LSTM(8, layout="NTC")
            self.b = gluon.nn.Dense(4)
            self.out = gluon.nn.Dense(3)

    def hybrid_forward(self, F, audio, audio_mask, text, text_mask):
        h = self.lstm(self.a(F.broadcast_mul(audio, F.expand_dims(audio_mask, axis=2))))
        t = F.sum(text * text_mask, axis=1, keepdims=True)
        return self.out(F.concat(self.b(F.mean(h, axis=1)), t, dim=1))


NAMES = ["audio", "audio_mask", "text", "text_mask"]


def _fp32_symbol():
    net = _Fusion()
    net.initialize()
    return net(*[mx.sym.var(n) for n in NAMES])


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_amp_converted_graph_has_casts(dtype):
    sym = convert_symbol(_fp32_symbol(), dtype, NAMES)
    internals = sym.get_internals()
    _, types, _ = internals.infer_type(**{n: "float32" for n in NAMES})     # build + infer, no run
    t = {name.split("_", 2)[-1] if name.startswith("_fusion") else name: str(np.dtype(ty)) if ty is not None else None
         for name, ty in zip(internals.list_outputs(), types)}
    low = "float16" if dtype == "float16" else "[('bfloat16', '<u2')]"
    lowname = dtype
    # FullyConnected runs in low precision on cast inputs and weights
    for fc in ("dense0", "dense1", "dense2"):
        assert t[f"{fc}_fwd_output"] == low, fc
        assert t[f"{fc}_weight_amp_cast_{lowname}_output"] == low
    assert t[f"broadcast_mul0_0_amp_cast_{lowname}_output"] == low
    # LSTM: float16 runs RNN in low precision with cast _zeros begin states; bfloat16 keeps it fp32
    if dtype == "float16":
        assert t["lstm0_rnn0_output"] == low
        assert any(k.endswith(f"h0_0_0_amp_cast_{lowname}_output") for k in t)
    else:
        assert t["lstm0_rnn0_output"] == "float32"
    # Concat pitfall: the low-precision branch is cast back so both Concat inputs are float32
    assert t["dense1_fwd_output_amp_cast_float32_output"] == "float32"
    assert t["concat0_output"] == "float32" and t["sum0_output"] == "float32"
    # logits come out in float32
    assert t["dense2_fwd_output_amp_cast_float32_output"] == "float32"
    assert sym.infer_type(**{n: "float32" for n in NAMES})[1] == [np.float32]
    assert "_zeros" not in amp_op_lists(dtype)["fp32_ops"]


def test_bf16_keeps_batchnorm_fp32():
    """bfloat16 AMP: Conv runs in bf16, BatchNorm gets an fp32 input (oneDNN has no fast bf16
    BatchNorm); MXNet's own lists (keep_fp32_slow_ops=False) would run it in bf16."""
    from mxnet.contrib import amp
    from emotion_mx.training.amp import BF16_SLOW_OPS
    assert "BatchNorm" in BF16_SLOW_OPS and "BatchNorm" in amp_op_lists("bfloat16")["fp32_ops"]
    assert "BatchNorm" not in amp_op_lists("bfloat16", keep_fp32_slow_ops=False)["fp32_ops"]
    assert "BatchNorm" not in amp_op_lists("float16")["fp32_ops"] or "BatchNorm" in amp.list_fp32_ops("float16")
    x = mx.sym.var("x")
    net = mx.sym.BatchNorm(mx.sym.Convolution(x, num_filter=4, kernel=(3, 3), name="conv"), name="bn")
    bf16 = "[('bfloat16', '<u2')]"
    for keep, bn_type in ((True, "float32"), (False, bf16)):
        lists = amp_op_lists("bfloat16", keep_fp32_slow_ops=keep)
        conv = amp.convert_symbol(net, target_dtype="bfloat16", data_names=["x"],
                                  target_dtype_ops=lists["target_precision_ops"], fp32_ops=lists["fp32_ops"],
                                  conditional_fp32_ops=lists["conditional_fp32_ops"], cast_optional_params=False)
        internals = conv.get_internals()
        _, types, _ = internals.infer_type(x="float32")
        t = {n: str(np.dtype(ty)) for n, ty in zip(internals.list_outputs(), types) if ty is not None}
        assert t["conv_output"] == bf16
        assert t["bn_output"] == bn_type, keep


_PITFALL = textwrap.dedent("""
    import sys, mxnet as mx
    from mxnet.contrib import amp
    sys.path.insert(0, {here!r})
    from emotion_mx.training.amp import amp_op_lists, init_amp
    from test_training_parallel import _Fusion, NAMES
    if sys.argv[1] == "fixed":
        init_amp("bfloat16")
    else:
        amp.init("bfloat16")             # MXNet's default op lists
    net = _Fusion(); net.initialize(); net.hybridize()
    out = net(*[mx.sym.var(n) for n in NAMES])
    out.infer_type(**{{n: "float32" for n in NAMES}})
    print("OK")
""")


def test_amp_init_pitfalls_concat_and_lstm_fixed_by_our_op_lists(tmp_path):
    script = tmp_path / "pitfall.py"
    script.write_text(_PITFALL.format(here=HERE))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, HERE]))
    default = subprocess.run([sys.executable, str(script), "default"], capture_output=True, text=True,
                             env=env, timeout=120)
    assert default.returncode != 0
    assert "NoneType" in default.stderr or "Non-uniform data type in Concat" in default.stderr
    fixed = subprocess.run([sys.executable, str(script), "fixed"], capture_output=True, text=True,
                           env=env, timeout=120)
    assert fixed.returncode == 0 and "OK" in fixed.stdout, fixed.stderr[-2000:]


def test_launch_plan_env():
    procs = plan(["python", "w.py"], num_workers=2, num_servers=1, port=9123)
    roles = [r for r, _, _ in procs]
    assert roles == ["scheduler", "server", "worker", "worker"]
    for role, _, env in procs:
        assert env["DMLC_ROLE"] == role and env["DMLC_PS_ROOT_PORT"] == "9123"
        assert env["DMLC_NUM_WORKER"] == "2" and env["DMLC_NUM_SERVER"] == "1"
        assert env["DMLC_PS_ROOT_URI"] == "127.0.0.1"
    ssh = plan(["python", "w.py"], 2, 1, hosts=["h1", "h2"], port=9124, root_uri="10.0.0.5", cwd="/x")
    worker_cmds = [argv for role, argv, _ in ssh if role == "worker"]
    assert [c[c.index("--") + 1] for c in worker_cmds] == ["h2", "h1"]   # round robin after the server on h1
    assert "DMLC_ROLE=worker" in worker_cmds[0][-1] and "DMLC_PS_ROOT_URI=10.0.0.5" in worker_cmds[0][-1]


def test_launch_kills_everything_when_a_worker_fails(tmp_path):
    code = launch([sys.executable, "-c", "import sys; sys.exit(3)"], num_workers=2, timeout=60,
                  log=lambda *a: None)
    assert code == 3


def test_dist_sync_two_workers_on_loopback(tmp_path):
    env_path = os.pathsep.join([ROOT, HERE, os.environ.get("PYTHONPATH", "")])
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = env_path
    try:
        code = launch([sys.executable, os.path.join(HERE, "test_training_support.py"), str(tmp_path)],
                      num_workers=2, num_servers=1, timeout=85, log=print)
    finally:
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old
    assert code == 0
    w0, w1 = (np.load(tmp_path / f"weights-rank{r}.npz") for r in (0, 1))
    assert sorted(w0.files) == sorted(w1.files) and w0.files
    for k in w0.files:
        np.testing.assert_array_equal(w0[k], w1[k], err_msg=k)
    h0, h1 = (json.load(open(tmp_path / f"history-rank{r}.json")) for r in (0, 1))
    assert h0["num_workers"] == 2 and h0["rows"] + h1["rows"] == 96       # each read its shard
    for h in (h0, h1):
        assert h["train_loss"][-1] < h["train_loss"][0]
    assert h0["valid_ua"] == h1["valid_ua"]           # rank 0's validation decision broadcast
    assert os.path.isfile(tmp_path / "run" / "best.params")               # written by rank 0 only
