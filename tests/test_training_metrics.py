"""Metrics, losses, schedules and config of emotion_mx.training (fast, no training)."""
import math

import mxnet as mx
import numpy as np
import pytest

from emotion_mx.errors import ConfigError
from emotion_mx.training.config import load_train_config
from emotion_mx.training.losses import (DistillationLoss, FocalLoss, SoftTargetCE,
                                        class_weights_from_counts)
from emotion_mx.training.metrics import classification_metrics, confusion_matrix
from emotion_mx.training.optim import PlateauTracker, learning_rate


def test_metrics_hand_computed():
    # 3 classes; true counts 4/2/2
    y_true = [0, 0, 0, 0, 1, 1, 2, 2]
    y_pred = [0, 0, 1, 2, 1, 0, 2, 2]
    m = classification_metrics(y_true, y_pred, 3, ["a", "b", "c"])
    assert m["confusion_matrix"] == [[2, 1, 1], [1, 1, 0], [0, 0, 2]]
    assert m["accuracy"] == pytest.approx(5 / 8)
    # recalls 2/4, 1/2, 2/2 -> UA = (0.5 + 0.5 + 1) / 3
    assert m["unweighted_accuracy"] == pytest.approx(2 / 3)
    # precisions 2/3, 1/2, 2/3; F1 a = 2*(2/3*1/2)/(2/3+1/2) = 4/7, b = 1/2, c = 2*(2/3)/(5/3) = 4/5
    f1 = [4 / 7, 1 / 2, 4 / 5]
    assert m["macro_f1"] == pytest.approx(sum(f1) / 3)
    assert m["weighted_f1"] == pytest.approx((4 * f1[0] + 2 * f1[1] + 2 * f1[2]) / 8)
    assert m["per_class"]["a"] == pytest.approx({"precision": 2 / 3, "recall": 0.5, "f1": 4 / 7, "support": 4})


def test_metrics_match_sklearn_on_random_data():
    sk = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    y, p = rng.integers(0, 5, 300), rng.integers(0, 5, 300)
    keep = rng.random(300) < 0.4
    p[keep] = y[keep]        # 40 % forced correct, so the metrics are not all near chance
    m = classification_metrics(y, p, 5)
    assert m["accuracy"] == pytest.approx(sk.accuracy_score(y, p))
    assert m["unweighted_accuracy"] == pytest.approx(sk.balanced_accuracy_score(y, p))
    assert m["macro_f1"] == pytest.approx(sk.f1_score(y, p, average="macro"))
    assert m["weighted_f1"] == pytest.approx(sk.f1_score(y, p, average="weighted"))
    assert (np.array(m["confusion_matrix"]) == sk.confusion_matrix(y, p, labels=range(5))).all()


def test_confusion_matrix_rejects_out_of_range():
    with pytest.raises(ValueError):
        confusion_matrix([0, 3], [0, 1], 3)


def _logits():
    rng = np.random.default_rng(1)
    return mx.nd.array(rng.normal(size=(6, 4)) * 2), mx.nd.array([0, 1, 2, 3, 1, 2])


@pytest.mark.parametrize("hybridize", [False, True])
def test_focal_gamma0_equals_ce(hybridize):
    x, y = _logits()
    ref = mx.gluon.loss.SoftmaxCrossEntropyLoss()(x, y).asnumpy()
    for block in (SoftTargetCE(4), FocalLoss(4, gamma=0.0)):
        block.initialize()
        if hybridize:
            block.hybridize()
        np.testing.assert_allclose(block(x, y).asnumpy(), ref, rtol=1e-5, atol=1e-6)
    focal = FocalLoss(4, gamma=2.0)
    focal.initialize()
    assert (focal(x, y).asnumpy() < ref).all()      # down-weights every example


def test_label_smoothing_value():
    logits = mx.nd.array([[2.0, 0.0, -1.0]])
    y = mx.nd.array([0])
    ce = SoftTargetCE(3, label_smoothing=0.3)
    ce.initialize()
    logp = np.log(np.exp([2.0, 0.0, -1.0]) / np.exp([2.0, 0.0, -1.0]).sum())
    target = np.array([0.7 + 0.1, 0.1, 0.1])
    assert ce(logits, y).asscalar() == pytest.approx(-(target * logp).sum(), rel=1e-5)


def test_class_weights():
    w = class_weights_from_counts([6, 2, 0, 4], "balanced")
    np.testing.assert_allclose(w, [12 / (3 * 6), 12 / (3 * 2), 0.0, 12 / (3 * 4)], rtol=1e-6)
    x, y = _logits()
    ce_w = SoftTargetCE(4, class_weights=[1, 2, 3, 4])
    ce = SoftTargetCE(4)
    ce_w.initialize(), ce.initialize()
    np.testing.assert_allclose(ce_w(x, y).asnumpy(), ce(x, y).asnumpy() * np.array([1, 2, 3, 4, 2, 3]), rtol=1e-5)


def test_distillation_loss():
    x, y = _logits()
    hard = SoftTargetCE(4)
    d = DistillationLoss(hard, alpha=0.0, temperature=3.0)
    d.initialize()
    np.testing.assert_allclose(d(x, x * 0.5, y).asnumpy(), hard(x, y).asnumpy(), rtol=1e-5)
    d1 = DistillationLoss(SoftTargetCE(4), alpha=1.0, temperature=2.0)
    d1.initialize()
    np.testing.assert_allclose(d1(x, x, y).asnumpy(), 0.0, atol=1e-5)     # KL(p||p) = 0


def test_schedules():
    cfg = load_train_config(None, {"optim": {"lr": 1.0, "warmup_epochs": 2, "schedule": "cosine"}}).optim
    # warm-up: linear per step (4 steps per epoch): after step 0 of epoch 0 -> 0.25 epochs of 2
    assert learning_rate(cfg, 10, 0, 0, 4) == pytest.approx(0.125)
    assert learning_rate(cfg, 10, 1, 3, 4) == pytest.approx(1.0)
    mid = learning_rate(cfg, 10, 5, 3, 4)                 # 6 epochs done: halfway through cosine
    assert mid == pytest.approx(0.5)
    assert learning_rate(cfg, 10, 9, 3, 4) == pytest.approx(0.0, abs=1e-12)
    const = load_train_config(None, {"optim": {"lr": 0.1, "schedule": "constant"}}).optim
    assert learning_rate(const, 10, 7, 0, 4) == pytest.approx(0.1)
    p = PlateauTracker(factor=0.5, patience=2)
    scales = [p.update(s) for s in (0.5, 0.6, 0.6, 0.55, 0.7, 0.7, 0.7)]
    assert scales == [1, 1, 1, 0.5, 0.5, 0.5, 0.25]
    q = PlateauTracker(0.5, 2)
    q.load_state_dict(p.state_dict())
    assert (q.scale, q.best, q.bad) == (p.scale, p.best, p.bad)


def test_config_errors_name_the_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim:\n  lr: 0.1\n  shedule: cosine\n")
    with pytest.raises(ConfigError, match="optim.shedule"):
        load_train_config(str(bad))
    with pytest.raises(ConfigError, match="unknown modality 'smell'"):
        load_train_config(None, {"data": {"modalities": ["audio", "smell"]}})
    with pytest.raises(ConfigError, match="loss.type"):
        load_train_config(None, {"loss": {"type": "hinge"}})
    cfg = load_train_config(None, {"data": {"modalities": ["video", "audio"]}})
    assert cfg.data.modalities == ("audio", "video")


def test_shipped_presets_load():
    import glob
    import os
    root = os.path.join(os.path.dirname(__file__), "..", "configs", "train")
    paths = sorted(glob.glob(os.path.join(root, "*.yaml")))
    assert {"demo.yaml", "emodb_audio.yaml", "trimodal_mid.yaml"} <= {os.path.basename(p) for p in paths}
    for p in paths:
        cfg = load_train_config(p)
        assert cfg.epochs > 0 and not math.isnan(cfg.optim.lr)
