"""Warm start: per-modality encoder weights copied from earlier runs of the same fold.

A fusion model trained from scratch on a composed set can reach 100 % training accuracy
through the easiest modality (a memorisable text or face) before the harder one (speech) has
learnt anything; the unimodal runs of the same fold already hold good encoders.  Encoders
have the same structural parameter names in every fusion family (``audio_enc.convs.0...``),
so they are copied by name.

Honesty guard: a source run must have been trained on the same store and the same fold: a
run of another fold has this fold's test speakers in its training split.

Stages: (1) resolve each modality's run directory (``{fold}``/``{seed}`` filled in),
(2) check its spec (store, fold, modality, feature settings), (3) read ``best.params`` and keep
``{modality}_enc.*``, (4) :func:`apply_warm_start` copies them into the initialised network.
"""
import os

import mxnet as mx

from .. import artifacts
from ..errors import EmotionMXError

__all__ = ["resolve_warm_start", "apply_warm_start", "SPEC_KEYS_MUST_MATCH"]

# data settings a copied encoder depends on (its input features)
SPEC_KEYS_MUST_MATCH = ("audio_feature", "audio_norm", "max_audio_frames", "max_tokens", "num_frames")


def expand_run_template(template, *, fold, seed, where="init.encoders"):
    """``template`` with ``{fold}`` and ``{seed}`` replaced (plain replacement: ``str.format``
    would evaluate attribute lookups such as ``{fold.__class__}``); any other brace is refused."""
    out = str(template).replace("{fold}", str(int(fold))).replace("{seed}", str(int(seed)))
    if "{" in out or "}" in out:
        raise EmotionMXError(f"{where}: {template!r} may use only {{fold}} and {{seed}}")
    return out


def resolve_warm_start(init_cfg, *, fold, seed, store_path, spec):
    """``{structural param name: NDArray}`` for every encoder named in ``init_cfg.encoders``,
    plus ``{modality: run_dir}`` for the record.  ``spec`` is the new run's model spec."""
    arrays, sources = {}, {}
    for m, template in sorted(init_cfg.encoders.items()):
        # 1. the source run of this fold
        run_dir = expand_run_template(template, fold=fold, seed=seed, where=f"init.encoders.{m}")
        where = f"init.encoders.{m} ({run_dir})"
        params_file = artifacts.run_file(run_dir, artifacts.BEST_PARAMS)
        if not os.path.isfile(params_file):
            raise EmotionMXError(f"{where}: no {artifacts.BEST_PARAMS}; train that run first "
                                 f"(tools/train.py --fold {fold} --out {run_dir})")
        # 2. same store, same fold, same modality and input features
        src = artifacts.load_model_spec(run_dir)
        if int(src.get("fold", -1)) != int(fold):
            raise EmotionMXError(f"{where}: trained on fold {src.get('fold')}, this run is fold {fold}; "
                                 "its training split holds this fold's test items")
        if os.path.abspath(src.get("store", "")) != os.path.abspath(store_path):
            raise EmotionMXError(f"{where}: trained on store {src.get('store')}, this run uses "
                                 f"{os.path.abspath(store_path)}; folds of different stores do not match")
        if m not in src.get("modalities", []):
            raise EmotionMXError(f"{where}: that run has no {m} encoder (modalities {src.get('modalities')})")
        for key in SPEC_KEYS_MUST_MATCH:
            there, here = getattr(src.data, key), getattr(spec.data, key)
            if there is not None and here is not None and there != here:
                raise EmotionMXError(f"{where}: {key} is {there!r} there and {here!r} here")
        # 3. the encoder's weights (structural names, as Block.save_parameters writes them)
        prefix = f"{m}_enc."
        try:
            saved = mx.nd.load(params_file)
        except mx.base.MXNetError:
            raise EmotionMXError(f"{where}: {params_file} is not a readable parameter file; "
                                 "retrain that run or point init.encoders elsewhere") from None
        found = {k: v for k, v in saved.items() if k.startswith(prefix)} if isinstance(saved, dict) else {}
        if not found:
            raise EmotionMXError(f"{where}: {params_file} holds no '{prefix}*' parameters")
        arrays.update(found)
        sources[m] = os.path.abspath(run_dir)
    return arrays, sources


def apply_warm_start(net, arrays, lr_mult=1.0, copy=True):
    """Copy ``arrays`` into the (initialised, shape-known) ``net`` by structural name and set
    their ``lr_mult``.  Every array must find its parameter with the same shape.  ``copy=False``
    (a resumed run: its checkpoint already holds the trained values) sets ``lr_mult`` only."""
    params = net._collect_params_with_prefix()
    for name, value in sorted(arrays.items()):
        p = params.get(name)
        if p is None:
            raise EmotionMXError(f"warm start: the model has no parameter {name!r}; the source "
                                 "encoder was built with different hyper-parameters")
        if tuple(p.shape) != tuple(value.shape):
            raise EmotionMXError(f"warm start: {name} has shape {tuple(value.shape)} in the source run "
                                 f"and {tuple(p.shape)} here; use the same encoder hyper-parameters")
        if copy:
            p.set_data(value.astype(p.dtype))
        p.lr_mult = lr_mult
    return len(arrays)
