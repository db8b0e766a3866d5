"""Evaluating a finished run on a split of a feature store (the library behind
tools/evaluate.py): RUN/eval/metrics.json (+ ``-<split>`` suffix for non-test splits) and a
confusion-matrix PNG.  The run's own norm.json and vocab.json are used, never the store's."""
import os

from .. import artifacts
from ..errors import EmotionMXError
from ..fileio import atomic_path, read_json, write_json
from ..contract import input_names
from .trainer import evaluate_split

__all__ = ["evaluate_run", "plot_confusion", "load_run_split"]

SPLITS = ("train", "valid", "test")


def load_run_split(run_dir, spec, store, split, fold):
    """Arrays of ``split`` prepared exactly as the run was trained (its norm/vocab/settings)."""
    from .run import load_split
    if split not in SPLITS:
        raise EmotionMXError(f"unknown split {split!r}; choose from {', '.join(SPLITS)}")
    if list(store.labels) != list(spec["labels"]):
        raise EmotionMXError(f"{store.path} has labels {store.labels}, the run was trained on {spec['labels']}")
    ids = store.ids(fold, split)
    if not ids:
        raise EmotionMXError(f"{store.path}: fold {fold} has no {split} items")
    norm = read_json(artifacts.run_file(run_dir, artifacts.NORM))
    vocab = None
    if "text" in spec["modalities"]:
        from ..features.text import load_vocab
        vocab = load_vocab(artifacts.run_file(run_dir, artifacts.VOCAB))
    from ..data import load_settings
    settings = load_settings(spec)
    return load_split(store, ids, tuple(spec["modalities"]), fold, settings, norm=norm, vocab=vocab)


def evaluate_run(run_dir, data_dir, split="test", fold=None, ctx=None, batch_size=64, params=None,
                 out_name=None):
    """Evaluate RUN's best parameters on ``split`` of fold ``fold`` (default: the run's fold).

    Writes ``RUN/eval/metrics[-split].json`` and ``confusion[-split].png``; returns the metrics.
    """
    import mxnet as mx
    from .run import open_store
    ctx = ctx or mx.cpu()
    net, spec = artifacts.load_run_model(run_dir, ctx=ctx, params=params)
    fold = spec.get("fold", 0) if fold is None else fold
    if fold != spec.get("fold", fold):
        print(f"note: the run was trained on fold {spec['fold']}; evaluating fold {fold}")
    store = open_store(data_dir)
    data = load_run_split(run_dir, spec, store, split, fold)
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
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
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
