"""Training, evaluation, cross-validation and distillation (docs/training.md).

Public API::

    TrainConfig, load_train_config                     (config)
    train(cfg, data_dir, out_dir, fold=, contexts=, amp=, kvstore=, resume=)   (run)
    fit(net, train: Split, valid: Split, cfg, run_dir=, labels=, modalities=, ...)  (trainer)
    evaluate_run(run_dir, data_dir, split='test', fold=None)                   (evaluate)
    cross_validate(cfg, data_dir, out_dir, folds='all', seeds=(0,))            (crossval)
    distill(teacher_run, student, data_dir, out_dir, alpha=, temperature=)     (distill)
    classification_metrics(y_true, y_pred, num_classes, labels)                (metrics)
    make_contexts(gpus=, cpus=), launch(command, num_workers, ...)             (distributed)
"""
from .config import TrainConfig, load_train_config
from .crossval import cross_validate
from .distill import distill, format_report
from .distributed import launch, make_contexts
from .evaluate import evaluate_run
from .metrics import classification_metrics
from .run import train
from .trainer import FitResult, Split, fit

__all__ = ["TrainConfig", "load_train_config", "train", "fit", "Split", "FitResult", "evaluate_run",
           "cross_validate", "distill", "format_report", "classification_metrics", "make_contexts", "launch"]
