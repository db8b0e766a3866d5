"""One trial = one real training run; finished trials persist in ``OUT/trials.jsonl``.

:func:`run_trial` trains the trial's TrainConfig with :func:`emotion_mx.training.run.train` on
the fold's train split, selects on its VALIDATION split (the trainer never reads test), and
returns a plain record.  :class:`TrialLog` rewrites ``trials.jsonl`` atomically after each
finished trial, so an interrupted search loses at most the trial that was running.

Restart: backends replay the finished trials to their searcher by asking it for configurations
as usual; :meth:`TrialLog.lookup` answers a configuration already trained with its stored
result instead of training again (see :mod:`emotion_mx.search.run`).
"""
import math
import os
import shutil
import time
from datetime import datetime, timezone

import yaml

from .. import artifacts
from ..config import dump_config, from_dict, to_dict
from ..errors import EmotionMXError
from ..fileio import read_jsonl, write_jsonl
from ..training.config import TrainConfig
from ..training.run import train
from .config import _plain, trial_config

__all__ = ["TrialLog", "run_trial", "TrialFailed", "TRIALS_JSONL", "TRIALS_DIR", "METRIC"]

TRIALS_JSONL = "trials.jsonl"
TRIALS_DIR = "trials"
METRIC = "valid_ua"       # validation unweighted accuracy, the only selection score


class TrialFailed(Exception):
    """A trial that failed before (replayed as a failure, not trained again)."""


def _same(a, b):
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-15)
    return a == b


def same_params(a, b):
    return a.keys() == b.keys() and all(_same(_plain(a[k]), _plain(b[k])) for k in a)


class TrialLog:
    """``OUT/trials.jsonl``: one JSON record per finished (ok or failed) trial, in finishing order."""

    def __init__(self, out_dir):
        self.path = os.path.join(out_dir, TRIALS_JSONL)
        self.records = read_jsonl(self.path) if os.path.isfile(self.path) else []

    def __len__(self):
        return len(self.records)

    def add(self, record):
        self.records.append(record)
        write_jsonl(self.path, self.records)      # whole-file atomic rewrite (fileio)

    def lookup(self, params):
        """The finished record with exactly these parameters, or None."""
        for rec in self.records:
            if same_params(rec["params"], params):
                return rec
        return None

    def next_index(self):
        return 1 + max((r["index"] for r in self.records), default=-1)


def run_trial(search_cfg, params, *, trial_id, index, data_dir, out_dir, fold, seed, backend,
              contexts=None, echo=None):
    """Train one trial into ``OUT/trials/<trial_id>/``; return its record (``status`` ok)
    or raise (the caller records a failure).  ``params`` are the sampled dotted keys."""
    params = {k: _plain(v) for k, v in params.items()}
    cfg = trial_config(search_cfg, params, seed=seed, source=f"trial {trial_id}")
    run_rel = os.path.join(TRIALS_DIR, trial_id)
    run_dir = os.path.join(out_dir, run_rel)
    resume = _prepare_run_dir(run_dir, cfg)
    t0 = time.time()
    result = train(cfg, data_dir, run_dir, fold=fold, contexts=contexts, resume=resume,
                   progress=False, echo=echo or (lambda *a, **k: None))
    best = next((h for h in result.history if h.get("epoch") == result.best_epoch), {})
    return {
        "trial_id": trial_id, "index": index, "status": "ok", "params": params,
        METRIC: float(result.best_score), "valid_loss": _float(best.get("valid_loss")),
        "valid_accuracy": _float(best.get("valid_accuracy")),
        "best_epoch": int(result.best_epoch), "epochs_run": int(result.epochs_run),
        "stopped_early": bool(result.stopped_early), "seconds": round(time.time() - t0, 3),
        "fold": fold, "seed": cfg.seed, "run_dir": run_rel, "backend": backend,
        "config": to_dict(cfg), "finished": _now(),
    }


def failed_record(params, *, trial_id, index, fold, backend, error):
    return {"trial_id": trial_id, "index": index, "status": "failed",
            "params": {k: _plain(v) for k, v in params.items()}, METRIC: None,
            "error": str(error).splitlines()[0] if str(error) else type(error).__name__,
            "fold": fold, "run_dir": os.path.join(TRIALS_DIR, trial_id), "backend": backend,
            "finished": _now()}


def _prepare_run_dir(run_dir, cfg):
    """An interrupted trial's folder: resume it when it was started with the same config,
    otherwise start it afresh.  Returns the ``resume`` flag for ``train``."""
    if not os.path.isdir(run_dir):
        return False
    cfg_path = os.path.join(run_dir, artifacts.CONFIG)
    if os.path.isfile(os.path.join(run_dir, artifacts.MODEL_SPEC)) and os.path.isfile(cfg_path):
        with open(cfg_path, encoding="utf-8") as f:
            if yaml.safe_load(f) == yaml.safe_load(yaml.safe_dump(to_dict(cfg), sort_keys=False)):
                return True
    shutil.rmtree(run_dir)
    return False


def write_trial_config(record, path):
    """The trial's full TrainConfig as YAML (tools/train.py --config accepts it as is)."""
    if record.get("status") != "ok":
        raise EmotionMXError(f"trial {record['trial_id']} did not finish; it has no config to write")
    dump_config(from_dict(TrainConfig, record["config"], source=f"trial {record['trial_id']}"), path)


def _float(v):
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def _now():
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
