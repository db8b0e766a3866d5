"""Unimodal experts: late fusion as a product of experts and mid fusion's expert residual.

The experts' log-posteriors enter the output behind BlockGrad, so the fused loss never trains
them; the trainer's auxiliary losses (loss.aux_weight) do.  Tests: the product is exactly the
sum of the present experts' log-softmax, gradients reach the experts only through their own
losses, hybridize/export/reload give the same logits, and the trainer refuses the
configurations that would leave the experts untrained."""
import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd, gluon

from emotion_mx.errors import EmotionMXError
from emotion_mx import artifacts as A
from emotion_mx.models import MODALITIES, input_names
from emotion_mx.training.trainer import expert_loss, fit, fused_logits

from test_models import NUM_CLASSES, _build, _fixture, _inputs, _with_masks
from test_training_support import LABELS, TinyNet, small_config, synth_split

VARIANTS = [("late_tiny", {"combine": "product"}), ("mid_tiny", {"experts": True}),
            ("mid_tiny", {"experts": True, "cross_expert": True})]
IDS = ["late-product", "mid-residual", "mid-cross-expert"]


def _log_softmax(x, axis):
    x = x - x.max(axis=axis, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=axis, keepdims=True))


@pytest.mark.parametrize("name,kw", VARIANTS, ids=IDS)
def test_experts_outputs_hybridize_and_export(name, kw, tmp_path):
    net = _build(name, **kw)
    inputs = _with_masks(MODALITIES, _inputs(MODALITIES))         # sample 2 lacks audio
    ref = net(*inputs).asnumpy()
    assert ref.shape == (3, NUM_CLASSES) and np.isfinite(ref).all()
    net.hybridize(static_alloc=True)
    np.testing.assert_allclose(net(*inputs).asnumpy(), ref, rtol=1e-4, atol=1e-5)
    out, names = str(tmp_path / "m"), input_names(MODALITIES)
    sym = A.trace_symbol(net, names)
    A.save_symbol_params(out, sym, *A.block_arrays(net, sym))
    loaded = gluon.SymbolBlock.imports(f"{out}/{A.EXPORT_SYMBOL}", names, f"{out}/{A.EXPORT_PARAMS}")
    np.testing.assert_allclose(loaded(*inputs).asnumpy(), ref, rtol=1e-4, atol=1e-5)

    # the training outputs: (logits, experts (B, K, M), presence (B, M))
    fresh = _build(name, **kw)
    fresh.set_training_outputs(True)
    logits, experts, pres = (o.asnumpy() for o in fresh(*inputs))
    np.testing.assert_allclose(logits, ref, rtol=1e-5, atol=1e-6)
    n = 4 if kw.get("cross_expert") else 3                         # + the cross-modal head
    assert experts.shape == (3, NUM_CLASSES, n)
    np.testing.assert_array_equal(pres, [[1, 1, 1, 1][:n], [1, 1, 1, 1][:n], [0, 1, 1, 1][:n]])
    poe = (_log_softmax(experts, axis=1) * pres[:, None, :]).sum(axis=2)
    if name == "late_tiny" or kw.get("cross_expert"):
        np.testing.assert_allclose(logits, poe, rtol=1e-5, atol=1e-5)    # exactly the product
    else:
        assert not np.allclose(logits, poe)                              # + cross-modal residual


@pytest.mark.parametrize("name,kw", VARIANTS, ids=IDS)
def test_experts_learn_only_from_their_own_losses(name, kw):
    net = _build(name, **kw)
    net.set_training_outputs(True)
    inputs, y = _fixture(6, np.random.RandomState(0))
    ce = gluon.loss.SoftmaxCrossEntropyLoss()
    expert_params = [p for k, p in net._collect_params_with_prefix().items()
                     if ("_expert." in k or "_head." in k) and p.grad_req != "null"]
    assert len(expert_params) == 4 * len(MODALITIES)                 # 2 Dense per modality
    net.hybridize(static_alloc=True)
    # 1. the fused loss (+ 0 x the experts' losses: MXNet 1.9.1 autograd crashes when a
    #    parameter's only path is cut; the trainer never asks for that): no expert gradient
    with autograd.record():
        logits, experts, pres = net(*inputs)
        loss = ce(logits, y) + 0.0 * expert_loss(ce, experts, pres, (y,))
    loss.backward()
    for p in expert_params:
        assert not np.abs(p.grad().asnumpy()).any(), p.name
    # 2. the experts' own losses train every expert
    with autograd.record():
        logits, experts, pres = net(*inputs)
        loss = expert_loss(ce, experts, pres, (y,))
    loss.backward()
    for p in expert_params:
        assert np.abs(p.grad().asnumpy()).sum() > 0, p.name
    if kw.get("cross_expert"):          # the cross-modal head too is trained by its own loss only
        assert np.abs(net.output.weight.grad().asnumpy()).sum() > 0


def test_trainer_needs_aux_loss_for_experts_and_experts_for_aux_loss(tmp_path):
    from emotion_mx.models import get_model
    train, valid = synth_split(32, 0), synth_split(16, 1)
    late = get_model("late_tiny", 3, modalities=("audio",), combine="product", audio_dim=8, audio_frames=12)
    with pytest.raises(EmotionMXError, match="set loss.aux_weight > 0"):
        fit(late, train, valid, small_config(epochs=1), run_dir=str(tmp_path / "a"), labels=LABELS,
            modalities=("audio",), progress=False, echo=lambda *a: None)
    with pytest.raises(EmotionMXError, match="has no unimodal experts"):
        fit(TinyNet(), train, valid, small_config(epochs=1, loss={"aux_weight": 1.0}), run_dir=str(tmp_path / "b"),
            labels=LABELS, modalities=("audio",), progress=False, echo=lambda *a: None)


def test_product_of_experts_trains_with_aux_loss(tmp_path):
    from emotion_mx.models import get_model
    train, valid = synth_split(96, 0), synth_split(48, 1)
    net = get_model("late_tiny", 3, modalities=("audio",), combine="product", audio_dim=8, audio_frames=12)
    res = fit(net, train, valid, small_config(epochs=12, loss={"aux_weight": 1.0}), run_dir=str(tmp_path / "r"),
              labels=LABELS, modalities=("audio",), progress=False, echo=lambda *a: None)
    assert res.best_score >= 0.8, res.best_score                     # chance 1/3
    assert fused_logits(net(mx.nd.array(valid.inputs["audio"]), mx.nd.array(valid.inputs["audio_mask"]))).shape \
        == (48, 3)


@pytest.mark.parametrize("name", ["early_tiny", "mid_tiny", "late_tiny"])
def test_feature_outputs_named_and_logits_unchanged(name):
    from emotion_mx.models.fusion import training_outputs
    from emotion_mx.models.registry import PRESETS
    inputs = _with_masks(MODALITIES, _inputs(MODALITIES))
    net = _build(name)
    ref = net(*inputs).asnumpy()
    net.set_training_outputs(features=True)
    net.hybridize(static_alloc=True)
    res = training_outputs(net, net(*inputs))
    np.testing.assert_allclose(res["logits"].asnumpy(), ref, rtol=1e-4, atol=1e-5)
    hp = PRESETS[name][2]
    width = 3 * hp["units"] if name == "late_tiny" else hp["hidden_units"]
    assert res["features"].shape == (3, width) and res["experts"] is None
