"""Evaluating a finished run on a split of a feature store (the library behind
tools/evaluate.py): RUN/eval/metrics.json (+ ``-<split>`` suffix for non-test splits) and a
confusion-matrix PNG.  The run's own norm.json and vocab.json are used, never the store's."""
import os

import matplotlib
import mxnet as mx
import numpy as np

from .. import artifacts
from ..contract import input_names
from ..errors import EmotionMXError
from ..fileio import atomic_path, write_json
from .trainer import evaluate_split

__all__ = ["evaluate_run", "plot_confusion"]

SPLITS = ("train", "valid", "test")


def evaluate_run(run_dir, data_dir, split="test", fold=None, ctx=None, batch_size=64, params=None,
                 out_name=None):
    """Evaluate RUN's best parameters on ``split`` of fold ``fold`` (default: the run's fold).

    Writes ``RUN/eval/metrics[-split].json`` and ``confusion[-split].png``; returns the metrics.
    """
    if split not in SPLITS:
        raise EmotionMXError(f"unknown split {split!r}; choose from {', '.join(SPLITS)}")
    ctx = ctx or mx.cpu()
    net, spec = artifacts.load_run_model(run_dir, ctx=ctx, params=params)
    fold = spec.get("fold", 0) if fold is None else fold
    if fold != spec.get("fold", fold):
        print(f"note: the run was trained on fold {spec['fold']}; evaluating fold {fold}")
    data = artifacts.load_run_split(run_dir, data_dir, split, fold)
    net.hybridize(static_alloc=True)
    metrics = evaluate_split(net, data, input_names(spec["modalities"]), ctx, spec["labels"], batch_size)
    metrics.update({"split": split, "fold": fold, "run": os.path.abspath(run_dir)})
    suffix = out_name or ("" if split == "test" else f"-{split}")
    out = os.path.join(run_dir, "eval")
    write_json(os.path.join(out, f"metrics{suffix}.json"), metrics)
    plot_confusion(metrics["confusion_matrix"], spec["labels"], os.path.join(out, f"confusion{suffix}.png"),
                   title=f"{split} (fold {fold}): UA {metrics['unweighted_accuracy']:.3f}, "
                         f"WA {metrics['accuracy']:.3f}")
    return metrics


def plot_confusion(cm, labels, path, title=None):
    """Row-normalised confusion matrix with counts, as a PNG (matplotlib Agg)."""
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt   # after choosing the Agg backend
    cm = np.asarray(cm, dtype=np.float64)
    rows = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    k = len(labels)
    fig, ax = plt.subplots(figsize=(1.0 + 0.8 * k, 0.8 + 0.8 * k))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(k)), ax.set_yticks(range(k))
    ax.set_xticklabels(labels, rotation=45, ha="right"), ax.set_yticklabels(labels)
    ax.set_xlabel("predicted"), ax.set_ylabel("true")
    for i in range(k):
        for j in range(k):
            ax.text(j, i, f"{int(cm[i, j])}", ha="center", va="center",
                    color="white" if norm[i, j] > 0.5 else "black", fontsize=8)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
