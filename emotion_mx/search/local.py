"""Local backend: autogluon.core's ``LocalSequentialScheduler`` with its local searchers
(``LocalRandomSearcher`` / ``LocalGridSearcher``), one trial after another in this process.

Restart replays the whole sequence: the searchers are deterministic for a given seed, so the
scheduler asks for the same configurations again; the trial function answers finished ones
from ``trials.jsonl`` (the searcher is updated with the stored score) and trains only the rest.
"""
import logging

from ..errors import EmotionMXError
from ..optional import require
from .config import to_autogluon_space
from .trials import METRIC

__all__ = ["local_searchers", "check_local_searcher", "run_local"]

# our names → autogluon.core.searcher.searcher_factory names
_AG_NAMES = {"random": "local_random", "grid": "local_grid", "bayes": "bayes"}


def local_searchers():
    """``{name: searcher class}`` of the searchers autogluon.core really offers locally (a
    name that autogluon maps onto another searcher's class, as 1.1.1 does for 'bayes', is left
    out)."""
    SEARCHER_CONFIGS = require("autogluon.core.searcher.searcher_factory", "search",
                               "the architecture search").SEARCHER_CONFIGS
    classes = {n: c["searcher_cls"] for n, c in SEARCHER_CONFIGS.items()}
    ours = {name: classes[ag] for name, ag in _AG_NAMES.items() if ag in classes}
    real = {}
    for name, cls in ours.items():
        if cls not in real.values():
            real[name] = cls
    return real


def check_local_searcher(name):
    available = local_searchers()
    if name not in available:
        detail = ""
        if name == "bayes":
            detail = (" (autogluon.core 1.1.1's searcher_factory maps 'bayes' onto LocalRandomSearcher: "
                      "there is no local Bayesian searcher); for Bayesian optimisation use "
                      "--scheduler ray --searcher bayes (ray.tune HyperOptSearch through "
                      "autogluon.core.hpo.ray_hpo)")
        raise EmotionMXError(f"searcher {name!r} is not available with --scheduler local{detail}; "
                             f"local searchers: {', '.join(available)}")
    return _AG_NAMES[name]


def run_local(search_cfg, *, trial_fn, num_trials, searcher, seed, time_out=None, echo=print):
    """Run until ``num_trials`` trials (finished ones included) have been asked for.

    ``trial_fn(params, task_id)`` returns the trial's record (``status`` ok) or raises; a record
    with ``replayed`` set was answered from ``trials.jsonl``."""
    from autogluon.core.scheduler import LocalSequentialScheduler
    space = to_autogluon_space(search_cfg)
    keys = list(space)

    def train_fn(args, reporter, **_):
        record = trial_fn({k: args[k] for k in keys}, args["task_id"])
        reporter(**{METRIC: record[METRIC]})      # the searcher learns the validation UA

    options = {"random_seed": int(seed)} if searcher == "random" else {}
    scheduler = LocalSequentialScheduler(
        train_fn, search_space=space, searcher=check_local_searcher(searcher), search_options=options,
        reward_attr=METRIC, num_trials=num_trials, time_out=time_out,
        resource={"num_cpus": 1, "num_gpus": 0})
    if searcher == "grid":
        size = len(scheduler.searcher)
        if num_trials > size:
            echo(f"the grid has {size} configuration(s) (real/int ranges at autogluon's default of "
                 f"4 points); running {size}, not {num_trials}")
            scheduler.num_trials = size
    ag_log = logging.getLogger("autogluon.core.scheduler.seq_scheduler")
    ag_log.addFilter(_drop_trial_errors)
    try:
        scheduler.run()
    finally:
        ag_log.removeFilter(_drop_trial_errors)
    return scheduler


def _drop_trial_errors(record):
    """autogluon logs each failed trial's exception; ours are reported and recorded already."""
    return not str(record.msg).startswith("Exception during a trial")
