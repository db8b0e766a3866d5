"""AdamW: the fused MXNet kernel follows the reference formula; states and checkpoints of the
hand-written version still load."""
import pickle

import mxnet as mx
import numpy as np
import pytest
from mxnet import gluon

from emotion_mx.training.optim import AdamW


def _reference(w, grads, lr, wd, rescale, clip, b1=0.9, b2=0.999, eps=1e-8):
    """The AdamW formula in numpy (bias correction folded into the step, eps not rescaled)."""
    m, v = np.zeros_like(w), np.zeros_like(w)
    for t, g in enumerate(grads, 1):
        g = g * rescale
        if clip is not None:
            g = np.clip(g, -clip, clip)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        step = lr * np.sqrt(1 - b2 ** t) / (1 - b1 ** t)
        w = w - step * m / (np.sqrt(v) + eps) - lr * wd * w
    return w, m, v


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("clip", [None, 0.05])
def test_adamw_matches_the_formula(fused, clip):
    rng = np.random.RandomState(0)
    w0 = rng.randn(30, 7).astype(np.float32)
    grads = [rng.randn(30, 7).astype(np.float32) for _ in range(15)]
    opt = AdamW(learning_rate=0.01, wd=0.05, clip_gradient=clip, rescale_grad=0.5, fused=fused)
    w = mx.nd.array(w0)
    state = opt.create_state(0, w)
    for g in grads:
        opt.update(0, w, mx.nd.array(g), state)
    ref_w, ref_m, ref_v = _reference(w0.astype(np.float64), [g.astype(np.float64) for g in grads],
                                     0.01, 0.05, 0.5, clip)
    np.testing.assert_allclose(w.asnumpy(), ref_w, atol=1e-5)
    np.testing.assert_allclose(state[0].asnumpy(), ref_m, atol=1e-6)
    np.testing.assert_allclose(state[1].asnumpy(), ref_v, atol=1e-6)
    assert float(np.abs(w.asnumpy() - w0).max()) > 1e-3       # it did move


def test_fused_uses_the_kernel_and_equals_the_ndarray_version():
    net_args = dict(learning_rate=0.003, wd=0.01, rescale_grad=1 / 8)
    out = {}
    for fused in (True, False):
        mx.random.seed(0)
        net = gluon.nn.Dense(5, in_units=6)
        net.initialize(mx.init.Xavier())
        tr = gluon.Trainer(net.collect_params(), AdamW(fused=fused, **net_args))
        x = mx.nd.array(np.random.RandomState(1).randn(8, 6))
        for _ in range(5):
            with mx.autograd.record():
                loss = (net(x) ** 2).sum()
            loss.backward()
            tr.step(8)
        out[fused] = net.weight.data().asnumpy()
    np.testing.assert_allclose(out[True], out[False], atol=2e-6)


def test_states_of_the_handwritten_optimizer_resume_with_the_fused_one(tmp_path):
    """A checkpoint's pickled optimizer (written before ``fused`` existed) loads and updates with
    the kernel, continuing from its saved moments."""
    mx.random.seed(0)
    net = gluon.nn.Dense(3, in_units=4)
    net.initialize()
    old = AdamW(learning_rate=0.01, fused=False)
    tr = gluon.Trainer(net.collect_params(), old)
    x = mx.nd.ones((2, 4))
    for _ in range(2):
        with mx.autograd.record():
            loss = net(x).sum()
        loss.backward()
        tr.step(2)
    path = str(tmp_path / "old.states")
    del old.__dict__["fused"]                        # what an older checkpoint pickled
    tr.save_states(path)
    tr2 = gluon.Trainer(net.collect_params(), "adamw", {"learning_rate": 0.01})
    tr2.load_states(path)
    opt = tr2._updaters[0].optimizer
    assert isinstance(opt, AdamW) and getattr(opt, "fused", True) is True
    assert opt._index_update_count[0] == 2
    before = net.weight.data().asnumpy().copy()
    with mx.autograd.record():
        loss = net(x).sum()
    loss.backward()
    tr2.step(2)
    assert np.abs(net.weight.data().asnumpy() - before).max() > 0
    pickle.loads(pickle.dumps(opt))                  # and it pickles again (no NDArray cache)
