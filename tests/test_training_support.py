"""Shared helpers for the training tests: a tiny stand-in model obeying the model-input
contract, synthetic splits, and the dist_sync worker entry point (run as a script)."""
import json
import os
import sys

import mxnet as mx
import numpy as np
from mxnet import gluon

from emotion_mx.training.config import load_train_config
from emotion_mx.training.trainer import Split


class TinyNet(gluon.HybridBlock):
    """(audio, audio_mask) → logits: Dense per frame, BatchNorm, masked mean pool, dropout, Dense."""

    def __init__(self, num_classes=3, hidden=16, dropout=0.2, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.proj = gluon.nn.Dense(hidden, flatten=False, activation="relu")
            self.bn = gluon.nn.BatchNorm(axis=2)
            self.drop = gluon.nn.Dropout(dropout)
            self.out = gluon.nn.Dense(num_classes)

    def hybrid_forward(self, F, x, m):
        h = F.broadcast_mul(self.bn(self.proj(x)), F.expand_dims(m, 2))
        pooled = F.broadcast_div(F.sum(h, axis=1), F.sum(m, axis=1, keepdims=True) + 1e-6)
        return self.out(self.drop(pooled))


def synth_split(n, seed, num_classes=3, frames=12, dims=8):
    """Learnable synthetic audio split: class k raises feature k; last frames are padding."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, num_classes, n).astype(np.int32)
    x = rng.normal(size=(n, frames, dims)).astype(np.float32)
    x[:, :, :num_classes] += np.eye(num_classes, dtype=np.float32)[y][:, None, :] * 1.5
    m = np.ones((n, frames), np.float32)
    m[:, frames - 3:] = 0.0
    x *= m[:, :, None]
    return Split({"audio": x, "audio_mask": m}, y, [f"s{seed}_{i}" for i in range(n)])


def small_config(**over):
    base = {"epochs": 4, "batch_size": 16, "patience": None, "hybridize": True,
            "optim": {"lr": 0.01, "warmup_epochs": 1.0},
            "augment": {"noise_std": 0.05, "time_stretch": 0.1, "time_masks": 1, "time_mask_width": 3}}
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            base[k] = dict(base[k], **v)
        else:
            base[k] = v
    return load_train_config(None, base)


LABELS = ["a", "b", "c"]


def dist_worker(out_dir):
    """One dist_sync worker: train on this rank's shard, dump final weights and loss history."""
    from emotion_mx.training.distributed import make_worker, shard_indices
    from emotion_mx.training.trainer import fit
    worker = make_worker("dist_sync")
    train = synth_split(96, 0)
    train = train.subset(shard_indices(len(train), worker.rank, worker.num_workers))
    valid = synth_split(32, 1)
    cfg = small_config(epochs=3, augment={"noise_std": 0.0, "time_stretch": 0.0, "time_masks": 0})
    res = fit(TinyNet(3, dropout=0.0), train, valid if worker.is_chief else None, cfg,
              run_dir=os.path.join(out_dir, "run"), labels=LABELS, modalities=("audio",),
              worker=worker, progress=False, echo=lambda *a: None, tensorboard=False)
    # network weights of this worker (trainable only: BatchNorm running stats are not synced)
    net_params = res.net.collect_params()
    np.savez(os.path.join(out_dir, f"weights-rank{worker.rank}.npz"),
             **{k: p.data().asnumpy() for k, p in net_params.items() if p.grad_req != "null"})
    with open(os.path.join(out_dir, f"history-rank{worker.rank}.json"), "w") as f:
        json.dump({"rank": worker.rank, "num_workers": worker.num_workers, "rows": len(train),
                   "train_loss": [r["train_loss"] for r in res.history],
                   "valid_ua": [r["valid_unweighted_accuracy"] for r in res.history]}, f)


if __name__ == "__main__":
    dist_worker(sys.argv[1])


def test_similarity_kd_loss_matches_numpy_and_ignores_width_and_scale():
    from emotion_mx.training.losses import SimilarityKDLoss
    rng = np.random.default_rng(0)
    ft = rng.normal(size=(6, 5)).astype(np.float32)
    fs = rng.normal(size=(6, 9)).astype(np.float32)
    loss = SimilarityKDLoss(weight=2.0)
    loss.initialize()

    def gram(f):
        g = f @ f.T
        return g / np.linalg.norm(g, axis=1, keepdims=True)
    ref = 2.0 * ((gram(fs) - gram(ft)) ** 2).mean(axis=1)
    got = loss(mx.nd.array(fs), mx.nd.array(ft)).asnumpy()
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-6)
    assert got.mean() > 0.01
    # a wider student that holds the teacher's features up to rotation and scale matches exactly
    q, _ = np.linalg.qr(rng.normal(size=(9, 9)))
    same = 3.0 * ft @ q[:5, :].astype(np.float32)                  # (6, 9), orthonormal rows
    np.testing.assert_allclose(loss(mx.nd.array(same), mx.nd.array(ft)).asnumpy(), 0, atol=1e-6)
