"""Cross-validation: train and evaluate every (fold, seed), then mean ± std per metric.

Each run selects its epoch on its fold's validation split only; the test split of each fold is
evaluated once, after training.  Runs live in ``OUT/fold{k}-seed{s}`` and are resumed (or
skipped when finished) when the command is run again.
"""
import os

import numpy as np

from ..config import replace
from ..errors import EmotionMXError
from ..fileio import ensure_output_dir, read_json, write_json, write_text
from ..store import FeatureStore
from .evaluate import evaluate_run
from .run import train

__all__ = ["cross_validate", "summarize_results", "parse_folds", "METRICS"]

METRICS = ("accuracy", "unweighted_accuracy", "macro_f1", "weighted_f1")


def parse_folds(text, num_folds):
    if str(text).strip().lower() == "all":
        return list(range(num_folds))
    try:
        folds = sorted({int(t) for t in str(text).split(",") if t.strip()})
    except ValueError:
        raise EmotionMXError(f"--folds: expected 'all' or ids like 0,2, got {text!r}") from None
    bad = [f for f in folds if not 0 <= f < num_folds]
    if bad or not folds:
        raise EmotionMXError(f"--folds: fold {bad[0] if bad else text} does not exist (store has 0..{num_folds - 1})")
    return folds


def summarize_results(rows):
    """``{metric: {"mean", "std", "values"}}`` over runs (population std, ddof=0)."""
    out = {}
    for m in METRICS:
        vals = np.array([r[m] for r in rows], dtype=np.float64)
        out[m] = {"mean": float(vals.mean()), "std": float(vals.std()), "values": vals.tolist()}
    return out


def _markdown(rows, summary):
    head = "| fold | seed | best epoch | valid UA | " + " | ".join(METRICS) + " |"
    lines = [head, "|" + "---|" * (4 + len(METRICS))]
    for r in rows:
        lines.append(f"| {r['fold']} | {r['seed']} | {r['best_epoch']} | {r['valid_ua']:.4f} | "
                     + " | ".join(f"{r[m]:.4f}" for m in METRICS) + " |")
    lines.append("| **mean ± std** | | | | " +
                 " | ".join(f"**{summary[m]['mean']:.4f} ± {summary[m]['std']:.4f}**" for m in METRICS) + " |")
    return "\n".join(lines) + "\n"


def cross_validate(cfg, data_dir, out_dir, *, folds="all", seeds=(0,), contexts=None, amp=False,
                   progress=True, echo=print):
    """Train + evaluate (test split) each fold × seed; write OUT/results.{json,md}."""
    ensure_output_dir(out_dir, "--out")
    store = FeatureStore(data_dir)
    folds = parse_folds(folds, store.num_folds)
    rows = []
    for fold in folds:
        for seed in seeds:
            run_dir = os.path.join(out_dir, f"fold{fold}-seed{seed}")
            echo(f"== fold {fold}, seed {seed} → {run_dir}")
            resume = os.path.isfile(os.path.join(run_dir, "model.json"))
            result = train(replace(cfg, seed=int(seed)), data_dir, run_dir, fold=fold, contexts=contexts,
                           amp=amp, resume=resume, progress=progress, echo=echo)
            metrics = evaluate_run(run_dir, data_dir, split="test", fold=fold)
            best = read_json(os.path.join(run_dir, "best.json"))
            rows.append({"fold": fold, "seed": int(seed), "run": run_dir, "best_epoch": best["epoch"],
                         "valid_ua": best["metrics"]["unweighted_accuracy"],
                         **{m: metrics[m] for m in METRICS}})
            echo(f"fold {fold} seed {seed}: test UA {metrics['unweighted_accuracy']:.4f} "
                 f"WA {metrics['accuracy']:.4f} (best epoch {result.best_epoch} by validation UA)")
    summary = summarize_results(rows)
    write_json(os.path.join(out_dir, "results.json"), {"runs": rows, "summary": summary, "split": "test",
                                                       "selection": "validation unweighted_accuracy"})
    table = _markdown(rows, summary)
    write_text(os.path.join(out_dir, "results.md"), table)
    return {"runs": rows, "summary": summary, "markdown": table}
