"""The training loop: data-parallel over contexts, optionally over dist_sync workers, with
mixed precision, resumable checkpoints, model selection and early stopping on VALIDATION
unweighted accuracy (the test split never reaches this module).

Two entry points:

* :func:`fit` — train a built network on in-memory :class:`Split` s (train, valid) into a run
  directory; used by everything else and directly by tests.
* :func:`train` (in :mod:`emotion_mx.training.run`) — read a feature store, write the run's
  artifacts (config, labels, norm, vocab, model spec) and call :func:`fit`.

Determinism: the order of every epoch's batches, its augmentation and its MXNet seed are
functions of ``(seed, epoch, rank)``; with the checkpoint's parameters, optimizer states and
bookkeeping that makes ``--resume`` continue exactly where an uninterrupted run would be.
"""
import csv
import logging
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any, List, Optional

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon

from ..contract import input_names
from ..data import Split
from ..errors import EmotionMXError
from ..fileio import atomic_path, write_json
from ..models.fusion import training_outputs
from .amp import DynamicLossScaler
from .augment import augment_batch
from .checkpoint import latest_checkpoint, load_checkpoint, prune_checkpoints, save_checkpoint
from .distributed import GradientSync, Worker
from .losses import make_loss
from .metrics import SELECTION_METRIC, classification_metrics
from .optim import PlateauTracker, learning_rate, make_optimizer

__all__ = ["Split", "FitResult", "fit", "predict_logits", "evaluate_split", "epoch_batches",
           "materialize"]

log = logging.getLogger(__name__)

METRICS_CSV = "metrics.csv"
BEST_JSON = "best.json"
CURVES_PNG = "curves.png"
TB_DIR = "tensorboard"


@dataclass
class FitResult:
    best_epoch: int
    best_score: float
    epochs_run: int
    stopped_early: bool
    history: List[dict] = field(default_factory=list)
    run_dir: Optional[str] = None
    net: Any = None          # the trained block (last epoch's parameters; best ones in best.params)


# --------------------------------------------------------------------------------------------
# batching and inference
# --------------------------------------------------------------------------------------------

def epoch_batches(n, batch_size, *, seed, epoch, rank=0, min_rows=1, limit=None):
    """Index arrays of one epoch over ``range(n)``: a permutation seeded by ``(seed, epoch,
    rank)``, cut to ``limit`` rows (equal step counts on every worker), in batches; a last
    batch with fewer than ``min_rows`` rows (one per context) is dropped."""
    order = np.random.default_rng([seed, epoch, rank]).permutation(n)[:limit]
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    return [b for b in batches if len(b) >= min_rows]


def _to_nd(batch, names, ctx):
    return [mx.nd.array(batch[n], ctx=ctx, dtype="float32") for n in names]


def materialize(net, split, names, contexts):
    """Run one small forward pass per context so that deferred parameter shapes are set."""
    batch, _ = split.take(np.arange(min(2, len(split))))
    for ctx in contexts:
        net(*_to_nd(batch, names, ctx))


def fused_logits(out):
    """The model's logits: a model asked for more (``set_training_outputs``) returns a tuple
    whose first element is the logits."""
    return out[0] if isinstance(out, (list, tuple)) else out


def expert_loss(loss_fn, experts, presence, targets):
    """Sum over modalities of ``loss_fn(expert_m, *targets)`` for samples where m is present."""
    total = None
    for m in range(experts.shape[2]):
        l = loss_fn(experts[:, :, m], *targets) * presence[:, m]      # (B,)
        total = l if total is None else total + l
    return total


def predict_features(net, split, names, ctx, batch_size=64):
    """Features (N, D) float32 of every row (inference mode) of a model after
    ``set_training_outputs(features=True)``."""
    out = []
    for i in range(0, len(split), batch_size):
        batch, _ = split.take(np.arange(i, min(i + batch_size, len(split))))
        res = training_outputs(net, net(*_to_nd(batch, names, ctx)))
        out.append(res["features"].astype("float32").asnumpy())
    return np.concatenate(out, axis=0)


def predict_logits(net, split, names, ctx, batch_size=64):
    """Logits (N, K) float32 for every row of ``split`` (inference mode)."""
    out = []
    for i in range(0, len(split), batch_size):
        batch, _ = split.take(np.arange(i, min(i + batch_size, len(split))))
        out.append(fused_logits(net(*_to_nd(batch, names, ctx))).astype("float32").asnumpy())
    return np.concatenate(out, axis=0) if out else np.zeros((0, 0), np.float32)


def evaluate_split(net, split, names, ctx, labels, batch_size=64, loss_fn=None):
    """Metrics of :func:`~emotion_mx.training.metrics.classification_metrics` (+ ``loss``)."""
    logits = predict_logits(net, split, names, ctx, batch_size)
    metrics = classification_metrics(split.labels, logits.argmax(axis=1), len(labels), labels)
    if loss_fn is not None and len(split):
        l = loss_fn(mx.nd.array(logits, ctx=ctx), mx.nd.array(split.labels, ctx=ctx))
        metrics["loss"] = float(l.mean().asscalar())
    return metrics


# --------------------------------------------------------------------------------------------
# run-directory logging (rank 0 only)
# --------------------------------------------------------------------------------------------

_CSV_FIELDS = ["epoch", "lr", "train_loss", "train_accuracy", "valid_loss", "valid_accuracy",
               "valid_unweighted_accuracy", "valid_macro_f1", "valid_weighted_f1", "seconds",
               "skipped_steps", "loss_scale"]


def _write_csv(path, history):
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=_CSV_FIELDS, extrasaction="ignore")
            w.writeheader()
            for row in history:
                w.writerow(row)


def plot_curves(history, path):
    """Loss and metric curves (train/valid) as one PNG (matplotlib Agg)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    ep = [r["epoch"] for r in history]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
    a.plot(ep, [r["train_loss"] for r in history], label="train")
    a.plot(ep, [r["valid_loss"] for r in history], label="valid")
    a.set_xlabel("epoch"), a.set_ylabel("loss"), a.legend(), a.grid(alpha=0.3)
    b.plot(ep, [r["train_accuracy"] for r in history], label="train WA")
    b.plot(ep, [r["valid_accuracy"] for r in history], label="valid WA")
    b.plot(ep, [r["valid_unweighted_accuracy"] for r in history], label="valid UA")
    b.plot(ep, [r["valid_macro_f1"] for r in history], label="valid macro-F1")
    b.set_xlabel("epoch"), b.set_ylim(0, 1), b.legend(), b.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)


class _RunLogger:
    def __init__(self, run_dir, enabled, start_epoch, tensorboard=True):
        self.run_dir, self.enabled = run_dir, enabled
        self.tb = None
        if enabled and tensorboard:
            try:
                from tensorboardX import SummaryWriter
                # purge_step drops events of epochs after the checkpoint (resumed runs)
                self.tb = SummaryWriter(os.path.join(run_dir, TB_DIR), purge_step=start_epoch + 1)
            except ImportError:   # optional dependency: CSV and PNG still written
                log.warning("tensorboardX not installed; no TensorBoard logs")

    def epoch(self, history):
        if not self.enabled:
            return
        row = history[-1]
        _write_csv(os.path.join(self.run_dir, METRICS_CSV), history)
        plot_curves(history, os.path.join(self.run_dir, CURVES_PNG))
        if self.tb is not None:
            for k, v in row.items():
                if k != "epoch" and isinstance(v, (int, float)) and v is not None:
                    group = "train" if k.startswith("train") else "valid" if k.startswith("valid") else "opt"
                    self.tb.add_scalar(f"{group}/{k}", v, row["epoch"])
            self.tb.flush()

    def close(self):
        if self.tb is not None:
            self.tb.close()


# --------------------------------------------------------------------------------------------
# the loop
# --------------------------------------------------------------------------------------------

def _mx_seed(seed, epoch, rank):
    return int(np.random.default_rng([seed, epoch, rank, 7919]).integers(0, 2 ** 31 - 1))


def fit(net, train, valid, cfg, *, run_dir, labels, modalities, contexts=None, worker=None,
        precision="float32", resume=False, mel_bins=0, class_counts=None, progress=True,
        echo=print, loss_fn=None, tensorboard=True, warm_start=None, feature_loss=None):
    """Train ``net`` (built, not initialised) on ``train``; select on ``valid``.

    ``train`` is this worker's shard when distributed (``worker.num_workers`` > 1);
    ``valid`` is only needed on rank 0.  ``cfg`` is a :class:`TrainConfig` (its ``batch_size``
    is global).  ``class_counts`` (global training-split counts per class) defaults to the
    counts of ``train``.  Writes RUN/checkpoints, RUN/best.params, RUN/best.json,
    RUN/metrics.csv, RUN/curves.png and RUN/tensorboard (rank 0).  ``warm_start`` is
    ``(arrays, lr_mult)`` from :func:`~emotion_mx.training.warm_start.resolve_warm_start`, copied
    in after initialisation (a resumed run then loads its own checkpoint over them).
    ``feature_loss`` (e.g. :class:`~emotion_mx.training.losses.SimilarityKDLoss`) compares the
    model's features with ``train.teacher_features``.  Returns :class:`FitResult`.
    """
    contexts = list(contexts or [mx.cpu()])
    worker = worker or Worker(kvstore="device" if len(contexts) > 1 else None)
    chief = worker.is_chief
    names = input_names(modalities)
    num_classes = len(labels)
    missing = [n for n in names if n not in train.inputs]
    if missing:
        raise EmotionMXError(f"training data lacks the model inputs {missing}")
    if chief and (valid is None or len(valid) == 0):
        raise EmotionMXError("the validation split is empty: model selection and early stopping "
                             "need validation data (check the store's folds)")
    if len(train) == 0:
        raise EmotionMXError("the training split is empty")

    local_bs = max(1, cfg.batch_size // worker.num_workers)
    if local_bs < len(contexts):
        raise EmotionMXError(f"batch_size {cfg.batch_size} over {worker.num_workers} worker(s) leaves "
                             f"{local_bs} rows per worker for {len(contexts)} contexts; raise batch_size")
    if class_counts is None:
        class_counts = np.bincount(train.labels, minlength=num_classes)
    if (loss_fn is not None) != (train.teacher_logits is not None):
        raise ValueError("distillation needs both train.teacher_logits and a DistillationLoss loss_fn")
    if loss_fn is None:
        loss_fn = make_loss(cfg.loss, num_classes, class_counts)
    loss_fn.initialize(ctx=contexts)
    if feature_loss is not None:
        feature_loss.initialize(ctx=contexts)
    eval_loss = make_loss(cfg.loss, num_classes, class_counts)
    eval_loss.initialize(ctx=contexts[0])

    if (feature_loss is not None) != (train.teacher_features is not None):
        raise ValueError("feature distillation needs both train.teacher_features and a feature_loss")
    aux_weight = float(cfg.loss.aux_weight)
    if aux_weight > 0 and not getattr(net, "has_experts", False):
        raise EmotionMXError(f"loss.aux_weight is {aux_weight} but {type(net).__name__} has no unimodal "
                             "experts; use mid with experts: true or late with combine: product")
    if feature_loss is not None and not hasattr(net, "set_training_outputs"):
        raise EmotionMXError(f"{type(net).__name__} cannot return its features; feature distillation "
                             "needs an emotion_mx fusion model")
    if aux_weight > 0 or feature_loss is not None:
        net.set_training_outputs(experts=aux_weight > 0, features=feature_loss is not None)
    if aux_weight == 0 and getattr(net, "experts_need_loss", False):
        raise EmotionMXError(f"{type(net).__name__}'s unimodal experts learn only from their own losses; "
                             "set loss.aux_weight > 0 (e.g. 1.0)")

    # ---- parameters: same seed on every worker; the kvstore also broadcasts rank 0's values
    mx.random.seed(cfg.seed, ctx="all")
    net.initialize(mx.init.Xavier(), ctx=contexts)
    if cfg.hybridize:
        net.hybridize(static_alloc=True)
        loss_fn.hybridize(static_alloc=True)
    materialize(net, train, names, contexts)
    if warm_start is not None:
        from .warm_start import apply_warm_start
        apply_warm_start(net, *warm_start)

    opt_name, opt_params = make_optimizer(cfg.optim)
    # dist: the Trainer stays local (kvstore=None) and GradientSync all-reduces over the workers
    # (Trainer's own dist path reduces in place with pushpull, which raced in MXNet 1.9.1)
    trainer = gluon.Trainer(net.collect_params(), opt_name, opt_params,
                            kvstore=None if worker.distributed else worker.kvstore, update_on_kvstore=False)
    sync = GradientSync(worker, net.collect_params()) if worker.distributed else None
    scaler = DynamicLossScaler() if precision == "float16" else None
    plateau = PlateauTracker(cfg.optim.plateau_factor, cfg.optim.plateau_patience)
    state = {"best_score": -1.0, "best_epoch": 0, "bad_epochs": 0, "stopped_early": False, "history": []}

    start_epoch = 0
    if resume:
        stem = latest_checkpoint(run_dir)
        if stem is None:
            echo(f"--resume: no checkpoint in {run_dir}/checkpoints; starting from epoch 1")
        else:
            meta = load_checkpoint(stem, net, trainer, contexts)
            start_epoch = int(meta["epoch"])
            state = meta["state"]
            plateau.load_state_dict(state["plateau"])
            if scaler is not None and state.get("loss_scaler"):
                scaler.load_state_dict(state["loss_scaler"])
            if chief:
                echo(f"resuming {run_dir} after epoch {start_epoch} "
                     f"(best validation UA {state['best_score']:.4f} at epoch {state['best_epoch']})")
            if state["stopped_early"] or start_epoch >= cfg.epochs:
                echo("the run had already finished; nothing to do")
                return _result(state, start_epoch, run_dir, net)

    logger = _RunLogger(run_dir, chief, start_epoch, tensorboard=tensorboard)
    params = [p for p in net.collect_params().values() if p.grad_req != "null"]
    n_local = len(train)
    # every worker must take the same number of steps: round-robin shards differ by at most one
    # row, so each uses floor(total / workers) rows of its shard per epoch
    n_rows = int(round(worker.allreduce_sum([n_local])[0])) // worker.num_workers
    try:
        for epoch in range(start_epoch, cfg.epochs):
            t0 = time.time()
            mx.random.seed(_mx_seed(cfg.seed, epoch, worker.rank), ctx="all")
            batches = epoch_batches(n_local, local_bs, seed=cfg.seed, epoch=epoch, rank=worker.rank,
                                    min_rows=len(contexts), limit=n_rows)
            steps_per_epoch = len(batches)
            tot_rows, skipped, lr = 0, 0, cfg.optim.lr
            # running sums stay on the devices: reading them every step would block the Python
            # loop on each forward/backward instead of letting it prepare the next batch
            acc_loss = [mx.nd.zeros((1,), ctx=c) for c in contexts]
            acc_correct = [mx.nd.zeros((1,), ctx=c) for c in contexts]
            bar = _progress(batches, progress and chief, f"epoch {epoch + 1}/{cfg.epochs}")
            for step, idx in enumerate(bar):
                lr = learning_rate(cfg.optim, cfg.epochs, epoch, step, steps_per_epoch, plateau.scale)
                trainer.set_learning_rate(lr)
                batch, y = train.take(idx)
                batch = augment_batch(batch, idx, cfg.augment, seed=cfg.seed, epoch=epoch, mel_bins=mel_bins)
                xs = [gluon.utils.split_and_load(batch[n], contexts, even_split=False) for n in names]
                ys = gluon.utils.split_and_load(y.astype(np.float32), contexts, even_split=False)
                targets = [(yy,) for yy in ys]
                if train.teacher_logits is not None:   # DistillationLoss(student, teacher, label)
                    ts = gluon.utils.split_and_load(train.teacher_logits[idx], contexts, even_split=False)
                    targets = [(t, yy) for t, yy in zip(ts, ys)]
                tfeats = (gluon.utils.split_and_load(train.teacher_features[idx], contexts, even_split=False)
                          if feature_loss is not None else None)
                scale = scaler.scale if scaler is not None else 1.0
                with autograd.record():
                    raw = [training_outputs(net, net(*[x[i] for x in xs])) for i in range(len(contexts))]
                    outs = [r["logits"] for r in raw]
                    losses = [loss_fn(o, *tg) for o, tg in zip(outs, targets)]      # (B,) per context
                    if aux_weight > 0:      # + weighted expert losses
                        losses = [l + aux_weight * expert_loss(loss_fn, r["experts"], r["presence"], tg)
                                  for l, r, tg in zip(losses, raw, targets)]
                    if feature_loss is not None:   # + feature-level distillation
                        losses = [l + feature_loss(r["features"], tf) for l, r, tf in zip(losses, raw, tfeats)]
                    scaled = [l.sum() * scale for l in losses] if scaler is not None else losses
                autograd.backward(scaled)
                global_rows = len(idx) * worker.num_workers
                if sync is not None:
                    sync.allreduce_grads()          # over this worker's contexts, then the workers
                else:
                    trainer.allreduce_grads()       # over the contexts (kvstore 'device'/'local')
                if scaler is None or scaler.check(params):
                    trainer.update(global_rows * scale)
                else:
                    skipped += 1
                for i, (l, o, yy) in enumerate(zip(losses, outs, ys)):
                    acc_loss[i] += l.astype("float32").sum()
                    acc_correct[i] += (o.astype("float32").argmax(axis=1) == yy).sum()
                tot_rows += len(idx)
                if hasattr(bar, "set_postfix") and (step % 10 == 0 or step == steps_per_epoch - 1):
                    running = sum(float(a.asscalar()) for a in acc_loss)
                    bar.set_postfix(loss=f"{running / tot_rows:.4f}", lr=f"{lr:.2e}")
            tot_loss = sum(float(a.asscalar()) for a in acc_loss)
            tot_correct = int(round(sum(float(a.asscalar()) for a in acc_correct)))
            if not math.isfinite(tot_loss):
                raise EmotionMXError(f"epoch {epoch + 1}: the training loss is not finite; lower "
                                     "optim.lr or set optim.clip_gradient")

            # ---- validation on rank 0; every worker gets rank 0's numbers
            if chief:
                vm = evaluate_split(net, valid, names, contexts[0], labels, cfg.eval_batch_size, eval_loss)
                decided = worker.broadcast([vm[SELECTION_METRIC]])
            else:
                vm = None
                decided = worker.broadcast([0.0])
            score = float(decided[0])
            epoch_no = epoch + 1
            improved = score > state["best_score"]
            if improved:
                state["best_score"], state["best_epoch"], state["bad_epochs"] = score, epoch_no, 0
                if chief:
                    _save_best(net, run_dir, epoch_no, vm)
            else:
                state["bad_epochs"] += 1
            plateau.update(score)
            if cfg.patience is not None and state["bad_epochs"] >= cfg.patience:
                state["stopped_early"] = True
            row = {"epoch": epoch_no, "lr": lr, "train_loss": tot_loss / max(1, tot_rows),
                   "train_accuracy": tot_correct / max(1, tot_rows),
                   "valid_loss": vm.get("loss") if vm else None,
                   "valid_accuracy": vm["accuracy"] if vm else None,
                   "valid_unweighted_accuracy": score,
                   "valid_macro_f1": vm["macro_f1"] if vm else None,
                   "valid_weighted_f1": vm["weighted_f1"] if vm else None,
                   "seconds": round(time.time() - t0, 3), "skipped_steps": skipped,
                   "loss_scale": scaler.scale if scaler is not None else None}
            state["history"].append(row)
            state["plateau"] = plateau.state_dict()
            state["loss_scaler"] = scaler.state_dict() if scaler is not None else None
            if chief:
                save_checkpoint(run_dir, epoch_no, net, trainer, state)
                prune_checkpoints(run_dir, cfg.keep_checkpoints)
                logger.epoch(state["history"])
                echo(f"epoch {epoch_no}: train loss {row['train_loss']:.4f} WA {row['train_accuracy']:.3f} | "
                     f"valid loss {row['valid_loss']:.4f} WA {row['valid_accuracy']:.3f} "
                     f"UA {score:.3f}{' *' if improved else ''} | lr {lr:.2e} | {row['seconds']:.1f} s")
            if state["stopped_early"]:
                if chief:
                    echo(f"early stopping: validation UA has not improved for {cfg.patience} epochs "
                         f"(best {state['best_score']:.4f} at epoch {state['best_epoch']})")
                break
    finally:
        logger.close()
    worker.barrier()
    return _result(state, len(state["history"]), run_dir, net)


def _save_best(net, run_dir, epoch, vm):
    from ..artifacts import BEST_PARAMS
    with atomic_path(os.path.join(run_dir, BEST_PARAMS)) as tmp:
        net.save_parameters(tmp)
    write_json(os.path.join(run_dir, BEST_JSON), {"epoch": epoch, "split": "valid", "metrics": vm})


def _result(state, epochs_run, run_dir, net):
    return FitResult(best_epoch=state["best_epoch"], best_score=state["best_score"], epochs_run=epochs_run,
                     stopped_early=state["stopped_early"], history=state["history"], run_dir=run_dir, net=net)


def _progress(batches, enabled, desc):
    if not enabled:
        return batches
    from tqdm import tqdm
    # disable=None: no bar when stderr is not a terminal (CI logs, nohup)
    return tqdm(batches, desc=desc, leave=False, dynamic_ncols=True, disable=None)
