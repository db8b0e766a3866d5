"""Knowledge distillation of a trained run (teacher) into a smaller preset (student).

Loss: ``alpha * T^2 * KL(softmax(teacher/T) || softmax(student/T)) + (1 - alpha) * CE(label)``
on the fold's training split (teacher logits computed once, in inference mode; no
augmentation, so the soft targets match the inputs).  Selection and early stopping on the
validation UA as for any run.

Feature matching (``feature_weight`` > 0): the head's input representation of teacher and
student (``set_training_outputs(features=True)``; widths differ) is compared through their
batch similarity matrices (:class:`~emotion_mx.training.losses.SimilarityKDLoss`, Tung & Mori
2019), so no projection layer has to be trained and thrown away.  Teacher features are computed
once, like the logits.
"""
import os
import shutil
import time

import mxnet as mx
import numpy as np

from .. import artifacts
from ..config import dump_config, replace
from ..contract import DATA_MODEL_KWARGS, input_names
from ..errors import EmotionMXError
from ..fileio import write_json
from ..models import get_model
from ..store import FeatureStore
from .config import AugmentConfig, TrainConfig, load_train_config
from .losses import DistillationLoss, SimilarityKDLoss, SoftTargetCE, class_weights_from_counts
from .run import mel_bins_for
from .trainer import evaluate_split, fit, fused_logits, predict_features, predict_logits

__all__ = ["distill", "format_report", "measure_latency", "count_params"]


def count_params(net):
    return int(sum(np.prod(p.shape) for p in net.collect_params().values() if p.grad_req != "null"))


def measure_latency(net, example, ctx, repeats=50, warmup=5):
    """Median milliseconds of one forward pass at batch 1 (``example``: list of arrays)."""
    xs = [mx.nd.array(x[:1], ctx=ctx) for x in example]
    for _ in range(warmup):
        fused_logits(net(*xs)).wait_to_read()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fused_logits(net(*xs)).wait_to_read()
        times.append((time.perf_counter() - t0) * 1e3)
    return float(np.median(times))


def distill(teacher_run, student, data_dir, out_dir, *, cfg=None, alpha=0.5, temperature=4.0,
            feature_weight=0.0, contexts=None, split="test", epochs=None, resume=False, progress=True,
            echo=print):
    """Train preset ``student`` from ``teacher_run`` into ``out_dir``; return the report dict
    (also written to ``out_dir/distill.json``).  ``feature_weight`` > 0 adds feature matching."""
    contexts = list(contexts or [mx.cpu()])
    ctx = contexts[0]
    if feature_weight < 0:
        raise EmotionMXError(f"feature_weight must be >= 0, got {feature_weight}")
    teacher, tspec = artifacts.load_run_model(teacher_run, ctx=ctx)
    if feature_weight > 0:
        teacher.set_training_outputs(features=True)     # before the graph is traced
    teacher.hybridize(static_alloc=True)
    if cfg is None:
        tcfg_path = artifacts.run_file(teacher_run, artifacts.CONFIG)
        cfg = load_train_config(tcfg_path) if os.path.isfile(tcfg_path) else TrainConfig()
        # the student preset's own hyper-parameters; no expert losses (the preset has no experts)
        cfg = replace(cfg, model=replace(cfg.model, name=student, kwargs={}),
                      loss=replace(cfg.loss, aux_weight=0.0))
    if cfg.model.name != student:
        cfg = replace(cfg, model=replace(cfg.model, name=student))
    if epochs is not None:
        cfg = replace(cfg, epochs=epochs)
    if cfg.augment.enabled:
        echo("distillation: augmentation disabled (teacher soft targets are computed once on clean inputs)")
        cfg = replace(cfg, augment=AugmentConfig())

    modalities = tspec.modalities
    labels = list(tspec.labels)
    fold = tspec.get("fold", 0)
    store = FeatureStore(data_dir)
    names = input_names(modalities)
    train = artifacts.load_run_split(teacher_run, store, "train", fold)
    valid = artifacts.load_run_split(teacher_run, store, "valid", fold)
    train.teacher_logits = predict_logits(teacher, train, names, ctx, cfg.eval_batch_size)
    if feature_weight > 0:
        train.teacher_features = predict_features(teacher, train, names, ctx, cfg.eval_batch_size)

    data_kwargs = {k: v for k, v in tspec.kwargs.items() if k in DATA_MODEL_KWARGS}
    kwargs = dict(cfg.model.kwargs, **data_kwargs)
    net = get_model(student, num_classes=len(labels), modalities=modalities, **kwargs)
    feature_note = (f"feature matching: similarity-preserving, weight {feature_weight:g} "
                    f"(teacher {train.teacher_features.shape[1]}-d, student features of its own width)"
                    if feature_weight > 0 else "feature matching: off (--feature-weight > 0 turns it on)")

    if os.path.isfile(os.path.join(out_dir, artifacts.MODEL_SPEC)) and not resume:
        raise EmotionMXError(f"{out_dir} already holds a run; pass --resume or choose another --out")
    from ..fileio import ensure_output_dir
    ensure_output_dir(out_dir, "--out")
    dump_config(cfg, artifacts.run_file(out_dir, artifacts.CONFIG))
    for name in (artifacts.LABELS, artifacts.NORM, artifacts.VOCAB):
        src = artifacts.run_file(teacher_run, name)
        if os.path.isfile(src):
            shutil.copyfile(src, artifacts.run_file(out_dir, name))
    spec = replace(tspec, name=student, kwargs=kwargs, distilled_from=os.path.abspath(teacher_run))
    artifacts.save_model_spec(out_dir, spec)

    counts = np.bincount(train.labels, minlength=len(labels))
    hard = SoftTargetCE(len(labels), class_weights=class_weights_from_counts(counts, cfg.loss.class_weights),
                        label_smoothing=cfg.loss.label_smoothing)
    loss = DistillationLoss(hard, alpha=alpha, temperature=temperature)
    result = fit(net, train, valid, cfg, run_dir=out_dir, labels=labels, modalities=modalities,
                 contexts=contexts, resume=resume, loss_fn=loss, class_counts=counts, progress=progress,
                 feature_loss=SimilarityKDLoss(feature_weight) if feature_weight > 0 else None,
                 echo=echo, mel_bins=mel_bins_for(tspec.data.audio_feature,
                                                   data_kwargs.get("audio_dim", 0)))

    student_net, _ = artifacts.load_run_model(out_dir, ctx=ctx)
    student_net.hybridize(static_alloc=True)
    test = artifacts.load_run_split(teacher_run, store, split, fold)
    example = [test.inputs[n] for n in names]
    rows = {}
    for role, model in (("teacher", teacher), ("student", student_net)):
        m = evaluate_split(model, test, names, ctx, labels, cfg.eval_batch_size)
        rows[role] = {"model": tspec["name"] if role == "teacher" else student,
                      "params": count_params(model), "latency_ms_batch1": measure_latency(model, example, ctx),
                      "unweighted_accuracy": m["unweighted_accuracy"], "accuracy": m["accuracy"],
                      "macro_f1": m["macro_f1"]}
    report = {"split": split, "fold": fold, "alpha": alpha, "temperature": temperature,
              "feature_matching": feature_weight > 0, "feature_weight": feature_weight, "note": feature_note,
              "student_best_epoch": result.best_epoch,
              "student_valid_ua": result.best_score, **rows,
              "param_ratio": rows["student"]["params"] / max(1, rows["teacher"]["params"]),
              "speedup": rows["teacher"]["latency_ms_batch1"] / max(1e-9, rows["student"]["latency_ms_batch1"])}
    write_json(os.path.join(out_dir, "distill.json"), report)
    return report


def format_report(report):
    """Side-by-side table (plain text) of a :func:`distill` report."""
    head = f"{'':10s}{'model':>14s}{'params':>12s}{'latency ms':>12s}{'UA':>8s}{'WA':>8s}{'macro-F1':>10s}"
    lines = [head]
    for role in ("teacher", "student"):
        r = report[role]
        lines.append(f"{role:10s}{r['model']:>14s}{r['params']:>12,d}{r['latency_ms_batch1']:>12.2f}"
                     f"{r['unweighted_accuracy']:>8.3f}{r['accuracy']:>8.3f}{r['macro_f1']:>10.3f}")
    lines.append(f"split {report['split']} (fold {report['fold']}); params x{report['param_ratio']:.2f}, "
                 f"speed-up x{report['speedup']:.2f} at batch 1; {report['note']}")
    return "\n".join(lines)
