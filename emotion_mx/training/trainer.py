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

from ..artifacts import BEST_PARAMS
from ..contract import input_names
from ..data import Split
from ..errors import EmotionMXError
from ..fileio import atomic_path, write_json
from ..models.fusion import training_outputs
from ..progress import Progress
from .amp import DynamicLossScaler
from .augment import augment_batch
from .checkpoint import (latest_checkpoint, load_checkpoint, load_checkpoint_params, prune_checkpoints,
                         save_checkpoint)
from .distributed import GradientSync, Worker
from .losses import make_loss
from .metrics import SELECTION_METRIC, classification_metrics
from .optim import PlateauTracker, learning_rate, make_optimizer
from .warm_start import apply_warm_start

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
# the loop: Trainer (fit -> fit_batch -> compute_forward / compute_objectives, stage hooks)
# --------------------------------------------------------------------------------------------

def _mx_seed(seed, epoch, rank):
    return int(np.random.default_rng([seed, epoch, rank, 7919]).integers(0, 2 ** 31 - 1))


class Trainer:
    """One training run in the manner of SpeechBrain's ``Brain``: :meth:`fit` runs the epochs,
    :meth:`fit_batch` one optimisation step, which calls :meth:`compute_forward` and
    :meth:`compute_objectives`; :meth:`on_stage_start` / :meth:`on_stage_end` bracket each
    ``"train"`` and ``"valid"`` stage.  Variants override these hooks: :class:`ExpertLosses`
    (unimodal expert losses) and :class:`Distillation` (teacher soft targets and features).

    ``cfg`` is a :class:`TrainConfig` (its ``batch_size`` is global).  ``class_counts`` (global
    training-split counts per class) defaults to the counts of the training split.
    ``warm_start`` is ``(arrays, lr_mult)`` from
    :func:`~emotion_mx.training.warm_start.resolve_warm_start`, copied in after initialisation
    (a resumed run then loads its own checkpoint over them).
    """

    def __init__(self, net, cfg, *, run_dir, labels, modalities, contexts=None, worker=None,
                 precision="float32", mel_bins=0, class_counts=None, progress=True, echo=print,
                 loss_fn=None, tensorboard=True, warm_start=None):
        self.net, self.cfg, self.run_dir, self.labels = net, cfg, run_dir, labels
        self.contexts = list(contexts or [mx.cpu()])
        self.worker = worker or Worker(kvstore="device" if len(self.contexts) > 1 else None)
        self.chief = self.worker.is_chief
        self.names = input_names(modalities)
        self.precision, self.mel_bins, self.class_counts = precision, mel_bins, class_counts
        self.progress, self.echo, self.tensorboard, self.warm_start = progress, echo, tensorboard, warm_start
        self.loss_fn = loss_fn
        self.aux_weight = float(cfg.loss.aux_weight)

    # ---- hooks -------------------------------------------------------------------------------
    def outputs_wanted(self):
        """Keyword arguments of ``net.set_training_outputs`` (more than logits when needed)."""
        return {}

    def check(self, train, valid):
        """Argument checks before anything is built."""
        cfg, net, worker = self.cfg, self.net, self.worker
        missing = [n for n in self.names if n not in train.inputs]
        if missing:
            raise EmotionMXError(f"training data lacks the model inputs {missing}")
        if self.chief and (valid is None or len(valid) == 0):
            raise EmotionMXError("the validation split is empty: model selection and early stopping "
                                 "need validation data (check the store's folds)")
        if len(train) == 0:
            raise EmotionMXError("the training split is empty")
        self.local_bs = max(1, cfg.batch_size // worker.num_workers)
        if self.local_bs < len(self.contexts):
            raise EmotionMXError(f"batch_size {cfg.batch_size} over {worker.num_workers} worker(s) leaves "
                                 f"{self.local_bs} rows per worker for {len(self.contexts)} contexts; raise batch_size")
        if self.aux_weight > 0 and not getattr(net, "has_experts", False):
            raise EmotionMXError(f"loss.aux_weight is {self.aux_weight} but {type(net).__name__} has no unimodal "
                                 "experts; use mid with experts: true or late with combine: product")

    def targets(self, train, idx, ys):
        """Per-context argument tuples of the loss after the model output."""
        return [(yy,) for yy in ys]

    def compute_forward(self, xs):
        """Per context: :func:`~emotion_mx.models.fusion.training_outputs` of the model."""
        return [training_outputs(self.net, self.net(*[x[i] for x in xs])) for i in range(len(self.contexts))]

    def compute_objectives(self, outs, targets):
        """Per context: the loss (B,) of the model outputs."""
        return [self.loss_fn(o["logits"], *tg) for o, tg in zip(outs, targets)]

    def on_stage_start(self, stage, epoch):
        if stage == "train":
            mx.random.seed(_mx_seed(self.cfg.seed, epoch, self.worker.rank), ctx="all")

    def on_stage_end(self, stage, epoch, stats):
        """``valid``: selection, early stopping, checkpoint, logs; returns the history row."""
        if stage != "valid":
            return None
        cfg, state, chief = self.cfg, self.state, self.chief
        vm, score, epoch_no = stats["metrics"], stats["score"], epoch + 1
        improved = score > state["best_score"]
        if improved:
            state["best_score"], state["best_epoch"], state["bad_epochs"] = score, epoch_no, 0
            if chief:
                _save_best(self.net, self.run_dir, epoch_no, vm)
        else:
            state["bad_epochs"] += 1
        self.plateau.update(score)
        if cfg.patience is not None and state["bad_epochs"] >= cfg.patience:
            state["stopped_early"] = True
        tr = stats["train"]
        row = {"epoch": epoch_no, "lr": tr["lr"], "train_loss": tr["loss"] / max(1, tr["rows"]),
               "train_accuracy": tr["correct"] / max(1, tr["rows"]),
               "valid_loss": vm.get("loss") if vm else None,
               "valid_accuracy": vm["accuracy"] if vm else None,
               "valid_unweighted_accuracy": score,
               "valid_macro_f1": vm["macro_f1"] if vm else None,
               "valid_weighted_f1": vm["weighted_f1"] if vm else None,
               "seconds": round(time.time() - tr["t0"], 3), "skipped_steps": tr["skipped"],
               "loss_scale": self.scaler.scale if self.scaler is not None else None}
        state["history"].append(row)
        state["plateau"] = self.plateau.state_dict()
        state["loss_scaler"] = self.scaler.state_dict() if self.scaler is not None else None
        if chief:
            save_checkpoint(self.run_dir, epoch_no, self.net, self.trainer, state)
            prune_checkpoints(self.run_dir, cfg.keep_checkpoints)
            self.logger.epoch(state["history"])
            self.echo(f"epoch {epoch_no}: train loss {row['train_loss']:.4f} WA {row['train_accuracy']:.3f} | "
                      f"valid loss {row['valid_loss']:.4f} WA {row['valid_accuracy']:.3f} "
                      f"UA {score:.3f}{' *' if improved else ''} | lr {row['lr']:.2e} | {row['seconds']:.1f} s")
        return row

    # ---- set-up ------------------------------------------------------------------------------
    def setup(self, train):
        """Losses, parameters (same seed on every worker; the kvstore also broadcasts rank 0's
        values), optimizer, gradient sync, loss scaler and plateau tracker."""
        cfg, net, contexts, worker = self.cfg, self.net, self.contexts, self.worker
        num_classes = len(self.labels)
        if self.class_counts is None:
            self.class_counts = np.bincount(train.labels, minlength=num_classes)
        if self.loss_fn is None:
            self.loss_fn = make_loss(cfg.loss, num_classes, self.class_counts)
        self.loss_fn.initialize(ctx=contexts)
        self.setup_losses()
        self.eval_loss = make_loss(cfg.loss, num_classes, self.class_counts)
        self.eval_loss.initialize(ctx=contexts[0])
        wanted = self.outputs_wanted()
        if wanted:
            if not hasattr(net, "set_training_outputs"):
                raise EmotionMXError(f"{type(net).__name__} cannot return its features; feature distillation "
                                     "needs an emotion_mx fusion model")
            net.set_training_outputs(**wanted)
        if self.aux_weight == 0 and getattr(net, "experts_need_loss", False):
            raise EmotionMXError(f"{type(net).__name__}'s unimodal experts learn only from their own losses; "
                                 "set loss.aux_weight > 0 (e.g. 1.0)")
        mx.random.seed(cfg.seed, ctx="all")
        net.initialize(mx.init.Xavier(), ctx=contexts)
        self.setup_pretrained()
        if self.resume_stem is not None:
            # a resumed run's parameters go in before the first forward pass: oneDNN may keep a
            # frozen (grad_req 'null') weight in its own layout after one, and copying into it
            # then fails (MXNet 1.9.1, "to.IsDefaultData()")
            load_checkpoint_params(self.resume_stem, net, contexts)
        if cfg.hybridize:
            net.hybridize(static_alloc=True)
            self.loss_fn.hybridize(static_alloc=True)
        materialize(net, train, self.names, contexts)
        if self.warm_start is not None:
            # resumed: the checkpoint loaded above holds the trained encoder; keep its lr_mult only
            apply_warm_start(net, *self.warm_start, copy=self.resume_stem is None)
        opt_name, opt_params = make_optimizer(cfg.optim)
        # dist: the Trainer stays local (kvstore=None) and GradientSync all-reduces over the workers
        # (Trainer's own dist path reduces in place with pushpull, which raced in MXNet 1.9.1)
        self.trainer = gluon.Trainer(net.collect_params(), opt_name, opt_params,
                                     kvstore=None if worker.distributed else worker.kvstore,
                                     update_on_kvstore=False)
        self.sync = GradientSync(worker, net.collect_params()) if worker.distributed else None
        self.scaler = DynamicLossScaler() if self.precision == "float16" else None
        self.plateau = PlateauTracker(cfg.optim.plateau_factor, cfg.optim.plateau_patience)
        self.state = {"best_score": -1.0, "best_epoch": 0, "bad_epochs": 0, "stopped_early": False, "history": []}

    resume_stem = None   # the checkpoint a resumed fit() starts from (set by fit)

    def setup_pretrained(self):
        """Load the checkpoints of the model's pretrained encoders, freeze and scale their layers
        (``cfg.init``).  Runs before the first forward pass: a hybridized graph keeps the
        ``grad_req`` it was first run with.  A resumed run then loads its own checkpoint."""
        from ..models.pretrained import pretrained_slots
        if not pretrained_slots(self.net):
            return
        from ..pretrained.loader import prepare_pretrained
        i = self.cfg.init
        info = prepare_pretrained(self.net, checkpoints=i.checkpoints, load=i.pretrained,
                                  freeze_layers=i.freeze_layers, lr_mult=i.pretrained_lr_mult,
                                  layer_decay=i.layer_decay)
        if self.chief:
            for name, d in info.items():
                self.echo(f"pretrained {name}: {'weights from ' + d['checkpoint'] if d['checkpoint'] else 'random init'}; "
                          f"{d['frozen_groups']} of {d['groups']} layer groups frozen, "
                          f"{d['trainable_params']:,} encoder parameters trained")

    def setup_losses(self):
        """Initialise extra losses (variants)."""

    def resume(self):
        """Load the newest checkpoint; returns the epoch to start from, or None if finished."""
        stem = latest_checkpoint(self.run_dir)
        if stem is None:
            self.echo(f"--resume: no checkpoint in {self.run_dir}/checkpoints; starting from epoch 1")
            return 0
        meta = load_checkpoint(stem, self.net, self.trainer, self.contexts, params=stem != self.resume_stem)
        start_epoch = int(meta["epoch"])
        self.state = state = meta["state"]
        self.plateau.load_state_dict(state["plateau"])
        if self.scaler is not None and state.get("loss_scaler"):
            self.scaler.load_state_dict(state["loss_scaler"])
        if self.chief:
            self.echo(f"resuming {self.run_dir} after epoch {start_epoch} "
                      f"(best validation UA {state['best_score']:.4f} at epoch {state['best_epoch']})")
        if state["stopped_early"] or start_epoch >= self.cfg.epochs:
            self.echo("the run had already finished; nothing to do")
            self.finished_at = start_epoch
            return None
        return start_epoch

    # ---- the loop ----------------------------------------------------------------------------
    def fit(self, train, valid, resume=False):
        """Train on ``train`` (this worker's shard when distributed); select on ``valid`` (rank 0
        only).  Writes RUN/checkpoints, RUN/best.params, RUN/best.json, RUN/metrics.csv,
        RUN/curves.png and RUN/tensorboard (rank 0).  Returns :class:`FitResult`."""
        self.check(train, valid)
        self.resume_stem = latest_checkpoint(self.run_dir) if resume else None
        self.setup(train)
        start_epoch = self.resume() if resume else 0
        if start_epoch is None:
            return self._result(self.finished_at)
        cfg, worker = self.cfg, self.worker
        self.logger = _RunLogger(self.run_dir, self.chief, start_epoch, tensorboard=self.tensorboard)
        self.params = [p for p in self.net.collect_params().values() if p.grad_req != "null"]
        # every worker must take the same number of steps: round-robin shards differ by at most one
        # row, so each uses floor(total / workers) rows of its shard per epoch
        n_rows = int(round(worker.allreduce_sum([len(train)])[0])) // worker.num_workers
        try:
            for epoch in range(start_epoch, cfg.epochs):
                self.on_stage_start("train", epoch)
                batches = epoch_batches(len(train), self.local_bs, seed=cfg.seed, epoch=epoch, rank=worker.rank,
                                        min_rows=len(self.contexts), limit=n_rows)
                stats = self.train_epoch(train, batches, epoch)
                self.on_stage_start("valid", epoch)
                self.on_stage_end("valid", epoch, dict(self.validate(valid), train=stats))
                if self.state["stopped_early"]:
                    if self.chief:
                        self.echo(f"early stopping: validation UA has not improved for {cfg.patience} epochs "
                                  f"(best {self.state['best_score']:.4f} at epoch {self.state['best_epoch']})")
                    break
        finally:
            self.logger.close()
        worker.barrier()
        return self._result(len(self.state["history"]))

    def train_epoch(self, train, batches, epoch):
        cfg, contexts = self.cfg, self.contexts
        stats = {"t0": time.time(), "rows": 0, "skipped": 0, "lr": cfg.optim.lr}
        # running sums stay on the devices: reading them every step would block the Python
        # loop on each forward/backward instead of letting it prepare the next batch
        self.acc_loss = [mx.nd.zeros((1,), ctx=c) for c in contexts]
        self.acc_correct = [mx.nd.zeros((1,), ctx=c) for c in contexts]
        bar = _progress(batches, self.progress and self.chief, f"epoch {epoch + 1}/{cfg.epochs}")
        for step, idx in enumerate(bar):
            stats["lr"] = learning_rate(cfg.optim, cfg.epochs, epoch, step, len(batches), self.plateau.scale)
            self.trainer.set_learning_rate(stats["lr"])
            stats["skipped"] += self.fit_batch(train, idx, epoch)
            stats["rows"] += len(idx)
            if hasattr(bar, "set_postfix") and (step % 10 == 0 or step == len(batches) - 1):
                running = sum(float(a.asscalar()) for a in self.acc_loss)
                bar.set_postfix(loss=f"{running / stats['rows']:.4f}", lr=f"{stats['lr']:.2e}")
        stats["loss"] = sum(float(a.asscalar()) for a in self.acc_loss)
        stats["correct"] = int(round(sum(float(a.asscalar()) for a in self.acc_correct)))
        if not math.isfinite(stats["loss"]):
            raise EmotionMXError(f"epoch {epoch + 1}: the training loss is not finite; lower "
                                 "optim.lr or set optim.clip_gradient")
        self.on_stage_end("train", epoch, stats)
        return stats

    def fit_batch(self, train, idx, epoch):
        """One optimisation step on rows ``idx``; returns 1 if the loss scaler skipped it."""
        cfg, contexts = self.cfg, self.contexts
        batch, y = train.take(idx)
        batch = augment_batch(batch, idx, cfg.augment, seed=cfg.seed, epoch=epoch, mel_bins=self.mel_bins)
        xs = [gluon.utils.split_and_load(batch[n], contexts, even_split=False) for n in self.names]
        ys = gluon.utils.split_and_load(y.astype(np.float32), contexts, even_split=False)
        targets = self.targets(train, idx, ys)
        scale = self.scaler.scale if self.scaler is not None else 1.0
        with autograd.record():
            outs = self.compute_forward(xs)
            losses = self.compute_objectives(outs, targets)                        # (B,) per context
            scaled = [l.sum() * scale for l in losses] if self.scaler is not None else losses
        autograd.backward(scaled)
        global_rows = len(idx) * self.worker.num_workers
        if self.sync is not None:
            self.sync.allreduce_grads()          # over this worker's contexts, then the workers
        else:
            self.trainer.allreduce_grads()       # over the contexts (kvstore 'device'/'local')
        skipped = 0
        if self.scaler is None or self.scaler.check(self.params):
            self.trainer.update(global_rows * scale)
        else:
            skipped = 1
        for i, (l, o, yy) in enumerate(zip(losses, outs, ys)):
            self.acc_loss[i] += l.astype("float32").sum()
            self.acc_correct[i] += (o["logits"].astype("float32").argmax(axis=1) == yy).sum()
        return skipped

    def validate(self, valid):
        """Validation on rank 0; every worker gets rank 0's selection score."""
        if self.chief:
            vm = evaluate_split(self.net, valid, self.names, self.contexts[0], self.labels,
                                self.cfg.eval_batch_size, self.eval_loss)
            decided = self.worker.broadcast([vm[SELECTION_METRIC]])
        else:
            vm = None
            decided = self.worker.broadcast([0.0])
        return {"metrics": vm, "score": float(decided[0])}

    def _result(self, epochs_run):
        s = self.state
        return FitResult(best_epoch=s["best_epoch"], best_score=s["best_score"], epochs_run=epochs_run,
                         stopped_early=s["stopped_early"], history=s["history"], run_dir=self.run_dir, net=self.net)


class ExpertLosses(Trainer):
    """+ ``loss.aux_weight`` x the loss of each unimodal expert on the samples where its
    modality is present (models with experts: mid with experts=true, late with combine=product)."""

    def outputs_wanted(self):
        return dict(super().outputs_wanted(), experts=True)

    def compute_objectives(self, outs, targets):
        losses = super().compute_objectives(outs, targets)
        return [l + self.aux_weight * expert_loss(self.loss_fn, o["experts"], o["presence"], tg)
                for l, o, tg in zip(losses, outs, targets)]


class Distillation(Trainer):
    """Soft targets: ``loss_fn`` is a :class:`~emotion_mx.training.losses.DistillationLoss`
    called as ``loss(student, teacher_logits, label)``; with ``feature_loss`` (e.g.
    :class:`~emotion_mx.training.losses.SimilarityKDLoss`) + a comparison of the model's
    features with ``train.teacher_features``."""

    def __init__(self, net, cfg, *, feature_loss=None, **kw):
        super().__init__(net, cfg, **kw)
        self.feature_loss = feature_loss

    def check(self, train, valid):
        super().check(train, valid)
        if self.loss_fn is None or train.teacher_logits is None:
            raise ValueError("distillation needs both train.teacher_logits and a DistillationLoss loss_fn")
        if (self.feature_loss is not None) != (train.teacher_features is not None):
            raise ValueError("feature distillation needs both train.teacher_features and a feature_loss")

    def outputs_wanted(self):
        wanted = super().outputs_wanted()
        return dict(wanted, features=True) if self.feature_loss is not None else wanted

    def setup_losses(self):
        if self.feature_loss is not None:
            self.feature_loss.initialize(ctx=self.contexts)

    def targets(self, train, idx, ys):
        ts = gluon.utils.split_and_load(train.teacher_logits[idx], self.contexts, even_split=False)
        if self.feature_loss is not None:
            self.tfeats = gluon.utils.split_and_load(train.teacher_features[idx], self.contexts, even_split=False)
        return [(t, yy) for t, yy in zip(ts, ys)]

    def compute_objectives(self, outs, targets):
        losses = super().compute_objectives(outs, targets)
        if self.feature_loss is None:
            return losses
        return [l + self.feature_loss(o["features"], tf) for l, o, tf in zip(losses, outs, self.tfeats)]


def fit(net, train, valid, cfg, *, run_dir, labels, modalities, resume=False, loss_fn=None, feature_loss=None,
        **kw):
    """Train ``net`` (built, not initialised) with the :class:`Trainer` the configuration needs:
    + :class:`ExpertLosses` when ``cfg.loss.aux_weight`` > 0, + :class:`Distillation` when
    ``train`` carries teacher logits (then ``loss_fn`` is the distillation loss).  Other
    keywords: those of :class:`Trainer`.  Returns :class:`FitResult`."""
    variants = []
    if loss_fn is not None or train.teacher_logits is not None or feature_loss is not None:
        variants.append(Distillation)
        kw["feature_loss"] = feature_loss
    if float(cfg.loss.aux_weight) > 0:
        variants.append(ExpertLosses)
    cls = type("Trainer", (*variants, Trainer), {}) if variants else Trainer
    trainer = cls(net, cfg, run_dir=run_dir, labels=labels, modalities=modalities, loss_fn=loss_fn, **kw)
    return trainer.fit(train, valid, resume=resume)


def _save_best(net, run_dir, epoch, vm):
    with atomic_path(os.path.join(run_dir, BEST_PARAMS)) as tmp:
        net.save_parameters(tmp)
    write_json(os.path.join(run_dir, BEST_JSON), {"epoch": epoch, "split": "valid", "metrics": vm})


def _progress(batches, enabled, desc):
    if not enabled:
        return batches
    # a bar on a terminal; a line every $EMOTION_MX_PROGRESS_SECONDS otherwise (CI logs, nohup)
    return Progress(None, desc, unit="batch", iterable=batches)
