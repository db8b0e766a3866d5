"""Small heads on cached frozen embeddings, selected on validation speakers only.

Per fold of the store's speaker/subject-independent folds: for every configuration of a small
grid (one fixed layer or a learned softmax weighting over layers; linear or MLP head; weight
decay) a :class:`~emotion_mx.models.layer_head.LayerWeightedHead` per cache (several caches =
several modalities: their logits are summed, i.e. one linear layer on the concatenation) is
trained on the training split with balanced class weights; the epoch and the configuration
with the best validation score are kept.  Only then is the test split read, once, for the
chosen head.  Features are standardised with the training split's statistics (stored in the
head, so the head runs unchanged after the encoder).
"""
import itertools
import time

import numpy as np

from ..errors import EmotionMXError
from ..progress import Progress

__all__ = ["HeadConfig", "default_grid", "train_head", "crossval_heads", "scores", "predict_logits"]

LAYER_WEIGHTED = "weighted"


class HeadConfig(dict):
    """``layer`` ('weighted' or an int, one per cache), ``hidden_units``, ``dropout``, ``wd``."""

    def label(self):
        return ",".join(f"{k}={v}" for k, v in sorted(self.items()))


def default_grid(num_states, hidden=(256,), wds=(1e-4, 1e-2), single_layers=True):
    """Layer options x head sizes x weight decay.  ``num_states``: one int per cache; with several
    caches (or ``single_layers=False``) only the learned weighting is searched."""
    if len(num_states) == 1 and single_layers:
        layers = [(LAYER_WEIGHTED,)] + [(i,) for i in range(num_states[0])]
    else:
        layers = [tuple(LAYER_WEIGHTED for _ in num_states)]
    # linear heads on every layer option; the MLP only on the learned weighting
    out = [HeadConfig(layer=layer, hidden_units=0, dropout=0.0, wd=wd)
           for layer, wd in itertools.product(layers, wds)]
    out += [HeadConfig(layer=layers[0], hidden_units=h, dropout=0.3, wd=wds[0]) for h in hidden if h]
    return out


def scores(y_true, y_pred, num_classes):
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score
    labels = list(range(num_classes))
    return {"ua": float(balanced_accuracy_score(y_true, y_pred)), "wa": float(accuracy_score(y_true, y_pred)),
            "macro_f1": float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
            "weighted_f1": float(f1_score(y_true, y_pred, labels=labels, average="weighted", zero_division=0))}


def _build(shapes, num_classes, cfg):
    import mxnet as mx
    from mxnet.gluon import HybridBlock

    from ..models.layer_head import LayerWeightedHead

    class SumHeads(HybridBlock):
        def __init__(self, prefix=None):
            super().__init__(prefix=prefix)
            with self.name_scope():
                self.heads = [LayerWeightedHead(L, D, num_classes, hidden_units=cfg["hidden_units"],
                                                dropout=cfg["dropout"],
                                                layer=None if layer == LAYER_WEIGHTED else int(layer),
                                                prefix=f"head{i}_")
                              for i, ((L, D), layer) in enumerate(zip(shapes, cfg["layer"]))]
                for i, h in enumerate(self.heads):
                    self.register_child(h, f"head{i}")

        def hybrid_forward(self, F, *xs):
            out = self.heads[0](xs[0])
            for h, x in zip(self.heads[1:], xs[1:]):
                out = out + h(x)
            return out                                                         # (B, num_classes)

    net = SumHeads(prefix="heads_")
    net.initialize(mx.init.Xavier())
    return net


def predict_logits(net, xs, batch=512):
    """Logits ``(N, K)`` of a head network on per-cache arrays ``xs``, ``batch`` rows at a time."""
    import mxnet as mx
    out = []
    for a in range(0, len(xs[0]), batch):
        out.append(net(*[mx.nd.array(x[a:a + batch]) for x in xs]).asnumpy())
    return np.concatenate(out)


def train_head(train, valid, num_classes, cfg, metric="ua", epochs=None, lr=3e-3, seed=0, on_epoch=None):
    """Train one head: ``train``/``valid`` = ``(list of (N, L, D) arrays, labels (N,))``.
    Returns ``(net, best valid score, best epoch)``; the kept parameters are the best epoch's.
    ``valid=None``: train exactly ``epochs`` epochs and keep the last (refit on train + valid).
    ``on_epoch(epoch, epochs)`` is called after each epoch (progress)."""
    import mxnet as mx
    from mxnet import autograd, gluon
    xs, y = train
    n = len(y)
    mx.random.seed(seed)
    rng = np.random.RandomState(seed)
    net = _build([x.shape[1:] for x in xs], num_classes, cfg)
    # the training split once as NDArrays: batches are row gathers (numpy fancy indexing and a
    # copy per batch dominated the time on 50,000 texts)
    data_nd = [mx.nd.array(x) for x in xs]                                     # (N, L, D) each
    for head, x in zip(net.heads, data_nd):                                    # training-split statistics
        mean = x.mean(axis=0)                                                  # (L, D)
        std = mx.nd.sqrt(mx.nd.broadcast_sub(x, mean.expand_dims(0)).square().mean(axis=0))
        head.feat_mean.set_data(mean)
        head.feat_std.set_data(std + 1e-5)
    net.hybridize(static_alloc=True)
    counts = np.bincount(y, minlength=num_classes).astype(np.float64)
    class_w = np.where(counts > 0, n / (num_classes * np.maximum(counts, 1)), 0.0).astype(np.float32)
    batch = 128 if n < 2000 else 512
    epochs = epochs or (60 if n < 2000 else 25)
    trainer = gluon.Trainer(net.collect_params(), "adam", {"learning_rate": lr, "wd": cfg["wd"]})
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    best = (-1.0, 0, None)
    for epoch in range(epochs):
        order = rng.permutation(n)
        for a in range(0, n, batch):
            idx = order[a:a + batch]
            rows = mx.nd.array(idx, dtype="int64")
            data = [mx.nd.take(x, rows) for x in data_nd]
            label = mx.nd.array(y[idx])
            with autograd.record():
                loss = loss_fn(net(*data), label, mx.nd.array(class_w[y[idx]]))
            loss.backward()
            trainer.step(len(idx), ignore_stale_grad=True)
        if on_epoch is not None:
            on_epoch(epoch + 1, epochs)
        if valid is None:
            continue
        score = scores(valid[1], predict_logits(net, valid[0]).argmax(1), num_classes)[metric]
        if score > best[0]:
            best = (score, epoch + 1, {k: p.data().copy() for k, p in net.collect_params().items()})
    if valid is None:
        return net, None, epochs
    for k, p in net.collect_params().items():
        p.set_data(best[2][k])
    return net, best[0], best[1]


def _split(store, caches, fold, split):
    ids = [i for i in store.ids(fold, split) if all(i in c for c in caches)]
    xs = [np.stack([c[i] for i in ids]).astype(np.float32) for c in caches]
    y = np.array([store.label_index[store.by_id[i].label] for i in ids], dtype=np.int64)
    return xs, y


def crossval_heads(store, caches, grid=None, folds=None, metric="ua", refit=True, single_layers=True,
                   log=print, progress=True):
    """Per fold: choose the head on validation, then read test once.  ``caches``: list of
    ``{item id: (L, D)}``.  Returns a list of per-fold dicts (chosen config, valid, test scores).

    ``refit``: the chosen configuration is trained again on train + valid for the chosen number
    of epochs (more speakers; nothing is chosen after this), and ``test`` is that head's score;
    ``test_train_only`` is the score of the head trained on the training split alone.
    ``progress``: per fold, heads trained so far (a bar on a terminal, else a line now and then)."""
    import mxnet as mx
    k = len(store.labels)
    grid = grid or default_grid([next(iter(c.values())).shape[0] for c in caches], single_layers=single_layers)
    results = []
    for fold in (range(store.num_folds) if folds is None else folds):
        tr, va = _split(store, caches, fold, "train"), _split(store, caches, fold, "valid")
        if not len(tr[1]) or not len(va[1]):
            raise EmotionMXError(f"fold {fold}: empty train or validation split for these embeddings")
        t0 = time.time()
        best = None
        bar = Progress(len(grid) + bool(refit), f"fold {fold} heads", unit="head", enabled=progress)

        def tick(epoch, epochs):
            bar.set_postfix(refresh=True, epoch=f"{epoch}/{epochs}")

        for cfg in grid:
            net, score, epoch = train_head(tr, va, k, cfg, metric=metric, on_epoch=tick)
            bar.update(1)
            if best is None or score > best[1]:
                best = (cfg, score, epoch, net)
        cfg, vscore, epoch, net = best
        heads_net = net
        if refit:
            both = ([np.concatenate([a, b]) for a, b in zip(tr[0], va[0])], np.concatenate([tr[1], va[1]]))
            net, _, _ = train_head(both, None, k, cfg, epochs=epoch, on_epoch=tick)
            bar.update(1)
        bar.close()
        te = _split(store, caches, fold, "test")                                # read once, for the chosen head
        test = scores(te[1], predict_logits(net, te[0]).argmax(1), k)
        test_train_only = scores(te[1], predict_logits(heads_net, te[0]).argmax(1), k) if refit else test
        weights = [h.layer_weights(mx.nd, h.layer_logits.data()).asnumpy().ravel().round(3).tolist()
                   for h in net.heads]
        row = {"fold": fold, "config": dict(cfg, layer=list(cfg["layer"])), "valid_" + metric: vscore,
               "epochs": epoch, "test": test, "test_train_only": test_train_only, "refit": bool(refit), "n_train": int(len(tr[1])), "n_valid": int(len(va[1])),
               "n_test": int(len(te[1])), "layer_weights": weights, "seconds": round(time.time() - t0, 1)}
        log(f"fold {fold}: chose {HeadConfig(cfg).label()} (valid {metric} {vscore:.3f}, epoch {epoch}); "
            f"test UA {test['ua']:.3f} WA {test['wa']:.3f} mF1 {test['macro_f1']:.3f} wF1 {test['weighted_f1']:.3f}"
            + (f" (head on train only: UA {test_train_only['ua']:.3f})" if refit else ""))
        results.append(row)
    return results
