"""Ray backend: parallel trials on a local Ray or an existing cluster, through
``autogluon.core.hpo.ray_hpo.run`` (ray.tune ``Tuner`` with autogluon's searcher presets:
``random`` = ``BasicVariantGenerator``, ``bayes`` = ``HyperOptSearch``; FIFO scheduler) and
autogluon's CPU/GPU resource calculators, via a small ``RayTuneAdapter`` for our trainable.

Every trial runs :func:`emotion_mx.search.trials.run_trial` in a Ray worker process and reports
its validation UA; the driver records each finished or failed trial in ``trials.jsonl`` from a
``ray.tune.Callback`` (so the file lives where the search was started).  On a multi-machine
cluster ``--data`` must exist at the same path on every node and ``--out`` should be shared
storage (the trial run folders are written by the node that trains them).

Restart: the trainable answers a configuration that already finished from its stored record at
once (no training), so the searcher sees its score as usual.  ``random`` regenerates its seeded
sequence (finished configurations come back and are answered from the records); ``bayes`` gets
the finished configurations first through ``points_to_evaluate``, so HyperOpt learns their
scores before it suggests new ones.  Either way the search continues up to N trials.
"""
import json
import logging
import os
import time

from ..config import to_dict
from ..errors import EmotionMXError
from ..optional import require
from .config import _default, to_autogluon_space
from .trials import METRIC, TrialFailed, failed_record, run_trial, same_params

__all__ = ["ray_searchers", "check_ray_searcher", "run_ray"]


def _import_ray():
    ray = require("ray", "search", "--scheduler ray")
    require("ray.tune", "search", "--scheduler ray")           # ray 2.10 needs pyarrow 17 for this import
    require("autogluon.core.hpo.ray_hpo", "search", "--scheduler ray")
    return ray


def ray_searchers():
    """Searcher names autogluon.core's Ray Tune backend offers (1.1.1: random, bayes)."""
    _import_ray()
    from autogluon.core.hpo.ray_tune_constants import SEARCHER_PRESETS
    return list(SEARCHER_PRESETS)


def check_ray_searcher(name):
    available = ray_searchers()
    if name not in available:
        raise EmotionMXError(f"searcher {name!r} is not available with --scheduler ray; "
                             f"autogluon.core's Ray Tune backend offers: {', '.join(available)} "
                             f"(grid search: --scheduler local --searcher grid)")
    if name == "bayes":
        # hyperopt 0.2.7 imports pkg_resources (setuptools < 81, pinned in the extra)
        require("hyperopt", "search", "--searcher bayes")


def _make_adapter():
    from autogluon.core.hpo.ray_hpo import RayTuneAdapter
    from autogluon.core.ray.resources_calculator import ResourceCalculatorFactory

    class EmotionRayTuneAdapter(RayTuneAdapter):
        """Trials are single training processes: CPU calculator, or one GPU per trial."""
        supported_searchers = ["random", "bayes"]
        supported_schedulers = ["FIFO"]

        @property
        def adapter_type(self):
            return "emotion_mx"

        def get_resource_calculator(self, num_gpus=0, **kwargs):
            return ResourceCalculatorFactory.get_resource_calculator(
                calculator_type="cpu" if num_gpus == 0 else "non_parallel_gpu")

        def trainable_args_update_method(self, trainable_args):
            trainable_args["num_gpus"] = int(self.gpu_per_job or 0)
            return trainable_args

    return EmotionRayTuneAdapter()


def ray_trainable(config, *, search_dict, keys, finished, data_dir, out_dir, fold, seed, num_gpus=0):
    """Ray Tune function trainable: one trial (or the stored answer of a finished one).
    ``search_dict`` is the SearchConfig as plain data (configs hold read-only mapping proxies,
    which do not pickle)."""
    from ray import train as ray_train
    from ..config import from_dict
    from .config import SearchConfig
    params = {k: config[k] for k in keys}
    done = next((r for r in finished if same_params(r["params"], params)), None)
    if done is not None:
        if done["status"] != "ok":
            raise TrialFailed(f"trial {done['trial_id']} failed before: {done.get('error')}")
        ray_train.report({METRIC: done[METRIC], "replayed": True, "record": ""})
        return
    import mxnet as mx
    contexts = [mx.gpu(i) for i in range(num_gpus)] if num_gpus else [mx.cpu()]
    trial_id = ray_train.get_context().get_trial_id()
    search_cfg = from_dict(SearchConfig, search_dict, source="search config (Ray worker)")
    record = run_trial(search_cfg, params, trial_id=trial_id, index=-1, data_dir=data_dir,
                       out_dir=out_dir, fold=fold, seed=seed, backend="ray", contexts=contexts)
    ray_train.report({METRIC: record[METRIC], "replayed": False, "record": json.dumps(record)})


def _callbacks(keys, on_record, next_index, fold, finished, target):
    """Driver-side Ray Tune hooks: a Callback that records every trial as it finishes
    (completion order) and a Stopper that ends the experiment at ``target`` finished trials.
    The Stopper is pickled with the experiment state, so it holds plain data only."""
    from ray.tune import Callback, Stopper

    class EnoughTrials(Stopper):
        # counts trials once Recorder has persisted them: a trial whose final result is in but
        # not yet recorded must not end the experiment (it would be stopped before its record)
        def __init__(self, done_ids, target):
            self.done_ids, self.target = done_ids, target

        def __call__(self, trial_id, result):
            return False

        def stop_all(self):
            return len(self.done_ids) >= self.target

    stopper = EnoughTrials({r["trial_id"] for r in finished}, target)

    def replayed_failure(params):
        return any(r["status"] != "ok" and same_params(r["params"], params) for r in finished)

    class Recorder(Callback):
        def on_trial_complete(self, iteration, trials, trial, **info):
            result = trial.last_result or {}
            if result.get("replayed") or not result.get("record"):
                return
            record = json.loads(result["record"])
            record["index"] = next_index()
            stopper.done_ids.add(record["trial_id"])
            on_record(record)

        def on_trial_error(self, iteration, trials, trial, **info):
            params = {k: trial.config[k] for k in keys}
            if replayed_failure(params):
                return
            err = trial.get_error()
            lines = [ln for ln in str(err or "").splitlines() if ln.strip()]
            stopper.done_ids.add(trial.trial_id)
            on_record(failed_record(params, trial_id=trial.trial_id, index=next_index(), fold=fold,
                                    backend="ray", error=lines[-1] if lines else "trial failed"))

    return Recorder(), stopper


def run_ray(search_cfg, *, data_dir, out_dir, num_trials, searcher, seed, fold, finished,
            on_record, next_index, address=None, time_out=None, verbose=0, echo=print):
    """Run the search on Ray until ``num_trials`` trials (``finished`` ones included)."""
    ray = _import_ray()
    check_ray_searcher(searcher)
    from autogluon.core.hpo import ray_hpo

    started_here = not ray.is_initialized()
    if started_here:
        if address:
            # the driver's emotion_mx goes to the cluster with the job (nodes need its dependencies)
            import emotion_mx
            ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False,
                     runtime_env={"py_modules": [os.path.dirname(emotion_mx.__file__)]})
        else:
            ray.init(address="local", include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    elif address:
        echo("Ray is already initialised in this process; --ray-address is ignored")
    try:
        resources = ray.cluster_resources()
        total = {"num_cpus": int(resources.get("CPU", 1)), "num_gpus": int(resources.get("GPU", 0))}
        echo(f"Ray: {total['num_cpus']} CPU(s), {total['num_gpus']} GPU(s) in the cluster")

        space = to_autogluon_space(search_cfg)
        keys = list(space)
        # autogluon's default point first, then the searcher's seeded sequence.  On a restart the
        # sequence is generated again: finished configurations are answered from their records
        # (HyperOpt sees their scores as before) and the rest are trained.
        default = {k: _default(d) for k, d in search_cfg.space.items()}
        seed_arg = "random_state" if searcher == "random" else "random_state_seed"
        init_args = {"points_to_evaluate": [default], seed_arg: int(seed)}
        # room to replay every finished trial; the stopper ends the run at num_trials records
        samples = num_trials + len(finished)
        hpo_kwargs = {"searcher": searcher, "scheduler": "FIFO", "num_trials": samples,
                      "searcher_init_args": init_args}

        trainable_args = dict(search_dict=to_dict(search_cfg), keys=keys, finished=list(finished),
                              data_dir=os.path.abspath(data_dir), out_dir=os.path.abspath(out_dir),
                              fold=fold, seed=seed)
        recorder, stopper = _callbacks(keys, on_record, next_index, fold, finished, num_trials)
        save_dir = os.path.join(os.path.abspath(out_dir), "ray", time.strftime("run-%Y%m%d-%H%M%S"))
        ray_hpo.run(
            trainable=ray_trainable, trainable_args=trainable_args, search_space=space,
            hyperparameter_tune_kwargs=hpo_kwargs, metric=METRIC, mode="max", save_dir=save_dir,
            ray_tune_adapter=_make_adapter(), total_resources=total,
            minimum_gpu_per_trial=1 if total["num_gpus"] else 0.0,
            time_budget_s=time_out, verbose=verbose,
            run_config_kwargs={"callbacks": [recorder], "stop": stopper})
    finally:
        if started_here:
            ray.shutdown()
