"""Classification metrics for emotion recognition (plain numpy, no scikit-learn).

* ``accuracy`` — weighted accuracy (WA): fraction of correct predictions.
* ``unweighted_accuracy`` — UA: mean per-class recall over classes present in ``y_true``.
* ``macro_f1`` — mean F1 over classes present in ``y_true`` or predicted;
  ``weighted_f1`` — F1 weighted by true support.
* ``confusion_matrix[i][j]`` — count of true class ``i`` predicted as ``j``.

Classes absent from both truth and predictions are left out of the means (as scikit-learn
does for ``labels=None``); their per-class entries are reported with ``support`` 0.
"""
import numpy as np

__all__ = ["confusion_matrix", "classification_metrics", "unweighted_accuracy", "SELECTION_METRIC"]

SELECTION_METRIC = "unweighted_accuracy"   # model selection / early stopping (validation only)


def confusion_matrix(y_true, y_pred, num_classes):
    y_true = np.asarray(y_true, dtype=np.int64).ravel()
    y_pred = np.asarray(y_pred, dtype=np.int64).ravel()
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true and y_pred differ in length: {y_true.shape} vs {y_pred.shape}")
    if y_true.size and (min(y_true.min(), y_pred.min()) < 0 or max(y_true.max(), y_pred.max()) >= num_classes):
        raise ValueError(f"class ids must be in [0, {num_classes})")
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (y_true, y_pred), 1)
    return cm


def _from_cm(cm):
    cm = np.asarray(cm, dtype=np.float64)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    tp = np.diag(cm)
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = np.where(support > 0, tp / support, 0.0)
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    return support, predicted, tp, recall, precision, f1


def unweighted_accuracy(y_true, y_pred, num_classes):
    support, _, _, recall, _, _ = _from_cm(confusion_matrix(y_true, y_pred, num_classes))
    present = support > 0
    return float(recall[present].mean()) if present.any() else 0.0


def classification_metrics(y_true, y_pred, num_classes, labels=None):
    """All metrics as plain JSON-serialisable Python values."""
    labels = list(labels) if labels is not None else [str(i) for i in range(num_classes)]
    if len(labels) != num_classes:
        raise ValueError(f"{len(labels)} labels for {num_classes} classes")
    cm = confusion_matrix(y_true, y_pred, num_classes)
    n = int(cm.sum())
    support, predicted, tp, recall, precision, f1 = _from_cm(cm)
    present = support > 0
    seen = present | (predicted > 0)
    return {
        "num_samples": n,
        "accuracy": float(tp.sum() / n) if n else 0.0,
        "unweighted_accuracy": float(recall[present].mean()) if present.any() else 0.0,
        "macro_f1": float(f1[seen].mean()) if seen.any() else 0.0,
        "weighted_f1": float((f1 * support).sum() / support.sum()) if n else 0.0,
        "per_class": {
            lab: {"precision": float(precision[i]), "recall": float(recall[i]),
                  "f1": float(f1[i]), "support": int(support[i])}
            for i, lab in enumerate(labels)
        },
        "confusion_matrix": cm.tolist(),
        "labels": labels,
    }
