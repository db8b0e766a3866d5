"""``run_search``: the library behind tools/search.py.

Output folder::

    OUT/search.json      settings a restart must match (space, base, budget epochs, searcher,
                         scheduler, fold, seed, store) + the resolved search config
    OUT/trials.jsonl     one record per finished trial (config, validation UA, ...), atomic
    OUT/trials/<id>/     each trial's training run (a normal run directory)
    OUT/leaderboard.csv, OUT/leaderboard.md   validation UA descending
    OUT/best.yaml        the best trial's full TrainConfig (tools/train.py --config accepts it)
    OUT/scores.png       validation UA against trial
    OUT/ray/             Ray Tune's own experiment folders (--scheduler ray)
"""
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from typing import List, Optional

from ..config import to_dict
from ..errors import EmotionMXError
from ..fileio import read_json, write_json
from ..store import FeatureStore
from .config import check_search_config, space_fingerprint
from .local import check_local_searcher, run_local
from .ray_backend import check_ray_searcher, run_ray
from .report import LEADERBOARD_MD, leaderboard, write_reports
from .trials import METRIC, TRIALS_DIR, TrialFailed, TrialLog, failed_record, run_trial

__all__ = ["run_search", "SearchResult", "SEARCHERS", "SCHEDULERS"]

SEARCHERS = ("random", "grid", "bayes")
SCHEDULERS = ("local", "ray")
SEARCH_JSON = "search.json"


@dataclass
class SearchResult:
    out_dir: str
    records: List[dict]                 # every finished trial, in finishing order
    best: Optional[dict]                # best record by validation UA (None if none finished)
    trained: int                        # trials trained by this call (not replayed)
    leaderboard: List[dict] = field(default_factory=list)


def run_search(search_cfg, data_dir, out_dir, *, trials, searcher="random", scheduler="local",
               ray_address=None, fold=0, seed=None, progress=True, echo=print):
    """Search ``search_cfg`` (:class:`SearchConfig`) on fold ``fold`` of store ``data_dir`` until
    ``trials`` trials have finished in ``out_dir`` (finished ones from an earlier, interrupted
    call are kept and replayed, not trained again).  ``seed`` (default: ``base.seed``) seeds
    the searcher and every trial's training.  Returns :class:`SearchResult`."""
    if trials < 1:
        raise EmotionMXError(f"--trials must be >= 1, got {trials}")
    if searcher not in SEARCHERS:
        raise EmotionMXError(f"unknown searcher {searcher!r}; choose one of {', '.join(SEARCHERS)}")
    if scheduler not in SCHEDULERS:
        raise EmotionMXError(f"unknown scheduler {scheduler!r}; choose one of {', '.join(SCHEDULERS)}")
    if ray_address and scheduler != "ray":
        raise EmotionMXError("--ray-address needs --scheduler ray")
    if scheduler == "local":                     # fail before touching OUT
        check_local_searcher(searcher)
    else:
        check_ray_searcher(searcher)
    check_search_config(search_cfg)
    _check_store(data_dir, fold)
    seed = search_cfg.base.seed if seed is None else int(seed)
    from ..fileio import ensure_output_dir
    ensure_output_dir(out_dir, "--out")
    _check_settings(out_dir, search_cfg, searcher=searcher, scheduler=scheduler, fold=fold, seed=seed,
                    data_dir=data_dir)

    trial_log = TrialLog(out_dir)
    keys = list(search_cfg.space)
    state = {"trained": 0}

    def on_record(record):
        trial_log.add(record)
        write_reports(out_dir, trial_log.records, keys)
        if record["status"] == "ok":
            state["trained"] += 1
            params = ("" if record["backend"] == "local" else " | " +   # local: printed at the start
                      ", ".join(f"{k}={_short(v)}" for k, v in record["params"].items()))
            echo(f"trial {record['trial_id']} ({len(trial_log)}/{trials}): validation UA "
                 f"{record[METRIC]:.4f} at epoch {record['best_epoch']} in {record['seconds']:.1f} s{params}")
        else:
            echo(f"trial {record['trial_id']} ({len(trial_log)}/{trials}) failed: {record['error']}")

    if len(trial_log) >= trials:
        echo(f"{out_dir} already has {len(trial_log)} finished trial(s) (>= {trials}); nothing to train")
    else:
        if len(trial_log):
            echo(f"resuming: {len(trial_log)} finished trial(s) in {out_dir} are replayed to the "
                 f"searcher, {trials - len(trial_log)} to go")
        budget_s = search_cfg.budget.seconds
        if scheduler == "local":
            _search_local(search_cfg, trial_log, on_record, data_dir=data_dir, out_dir=out_dir, trials=trials,
                          searcher=searcher, seed=seed, fold=fold, time_out=budget_s, echo=echo)
        else:
            run_ray(search_cfg, data_dir=data_dir, out_dir=out_dir, num_trials=trials, searcher=searcher,
                    seed=seed, fold=fold, finished=list(trial_log.records), on_record=on_record,
                    next_index=trial_log.next_index, address=ray_address, time_out=budget_s,
                    verbose=1 if progress else 0, echo=echo)
            _remove_unfinished_ray_runs(out_dir, trial_log)

    records = list(trial_log.records)
    best = write_reports(out_dir, records, keys) if records else None
    if best:
        echo(f"best: trial {best['trial_id']} validation UA {best[METRIC]:.4f}; "
             f"{os.path.join(out_dir, LEADERBOARD_MD)}, {os.path.join(out_dir, 'best.yaml')}")
    return SearchResult(out_dir=out_dir, records=records, best=best, trained=state["trained"],
                        leaderboard=leaderboard(records))


def _search_local(search_cfg, trial_log, on_record, *, data_dir, out_dir, trials, searcher, seed, fold,
                  time_out, echo):

    def trial_fn(params, task_id):
        done = trial_log.lookup(params)
        if done is not None:                   # replay: the searcher gets the stored score
            if done["status"] != "ok":
                raise TrialFailed(done.get("error", "failed before"))
            return {**done, "replayed": True}
        index = trial_log.next_index()
        trial_id = f"{index:04d}"
        echo(f"trial {trial_id} ({len(trial_log) + 1}/{trials}) training: "
             + ", ".join(f"{k}={_short(v)}" for k, v in params.items()))
        try:
            record = run_trial(search_cfg, params, trial_id=trial_id, index=index, data_dir=data_dir,
                               out_dir=out_dir, fold=fold, seed=seed, backend="local")
        except Exception as e:                 # noqa: BLE001 — a failed trial is a result, not a crash
            on_record(failed_record(params, trial_id=trial_id, index=index, fold=fold, backend="local",
                                    error=e))
            raise
        on_record(record)
        return record

    run_local(search_cfg, trial_fn=trial_fn, num_trials=trials, searcher=searcher, seed=seed,
              time_out=time_out, echo=echo)


def _remove_unfinished_ray_runs(out_dir, trial_log):
    """Ray trials stopped once N trials had finished leave partial run folders under fresh
    trial ids that no later run can resume: remove them."""
    root = os.path.join(out_dir, TRIALS_DIR)
    known = {r["trial_id"] for r in trial_log.records}
    for name in (os.listdir(root) if os.path.isdir(root) else []):
        if name not in known:
            shutil.rmtree(os.path.join(root, name), ignore_errors=True)


def _check_store(data_dir, fold):
    store = FeatureStore(data_dir)
    for split in ("train", "valid"):
        if not store.ids(fold, split):
            raise EmotionMXError(f"{data_dir}: fold {fold} has no {split} items; the search selects on "
                                 "the validation split and never reads test")


def _check_settings(out_dir, search_cfg, **settings):
    """OUT/search.json pins what decides the trials: a restart with other settings would mix
    incomparable trials, so it is refused (trials, --ray-address and budget.seconds may change)."""
    path = os.path.join(out_dir, SEARCH_JSON)
    current = {**space_fingerprint(search_cfg), **settings, "data_dir": os.path.abspath(settings["data_dir"])}
    if os.path.isfile(path):
        saved = read_json(path)["settings"]
        diff = [k for k in sorted(set(saved) | set(current)) if saved.get(k) != _jsonable(current.get(k))]
        if diff:
            raise EmotionMXError(f"{out_dir} holds a search with different {', '.join(diff)}; "
                                 "use a new --out (or the original settings to continue it)")
        return
    write_json(path, {"settings": _jsonable(current), "search_config": to_dict(search_cfg),
                      "created": time.strftime("%Y-%m-%dT%H:%M:%S")})


def _jsonable(obj):
    return json.loads(json.dumps(obj))


def _short(v):
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)
