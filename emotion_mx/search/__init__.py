"""Architecture / hyper-parameter search with autogluon.core, locally or on Ray (docs/search.md).

Public API::

    SearchConfig, Dimension, Budget, load_search_config(path)        (config)
    to_autogluon_space(cfg) -> {key: Categorical | Real | Int}         (config)
    trial_config(cfg, params, seed=None) -> TrainConfig                (config)
    run_search(cfg, data_dir, out_dir, trials=, searcher=, scheduler=, ray_address=, fold=, seed=)
        -> SearchResult                                                (run)
    TrialLog(out_dir), run_trial(...)                                  (trials)
    leaderboard(records), write_reports(out_dir, records, keys)        (report)
    local_searchers(), ray_searchers()                                 (local, ray_backend)
"""
from .config import (Budget, Dimension, SearchConfig, check_search_config, load_search_config,
                     to_autogluon_space, trial_config)
from .local import local_searchers
from .ray_backend import ray_searchers
from .report import leaderboard, write_reports
from .run import SCHEDULERS, SEARCHERS, SearchResult, run_search
from .trials import METRIC, TrialLog, run_trial


__all__ = ["SearchConfig", "Dimension", "Budget", "load_search_config", "check_search_config",
           "to_autogluon_space", "trial_config", "run_search", "SearchResult", "SEARCHERS", "SCHEDULERS",
           "TrialLog", "run_trial", "METRIC", "leaderboard", "write_reports", "local_searchers",
           "ray_searchers"]
