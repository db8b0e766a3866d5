"""Training from a feature store into a run directory (the library behind tools/train.py).

Only the fold's ``train`` and ``valid`` splits are read here; ``test`` is for
:mod:`emotion_mx.training.evaluate` after training.  With a ``dist_*`` kvstore every worker
reads only its round-robin shard of the training ids; rank 0 alone reads the validation split
and writes the run directory.
"""
import os
import shutil
from dataclasses import replace

import mxnet as mx
import numpy as np
import yaml

from .. import artifacts
from .. import store as st
from ..config import dump_config, to_dict
from ..contract import DATA_MODEL_KWARGS, input_names, input_shapes
from ..data import data_spec, load_split
from ..errors import ConfigError, EmotionMXError
from ..fileio import atomic_path, ensure_output_dir, write_json
from ..models import get_model, model_input_settings
from ..store import FeatureStore
from .amp import decide_precision, init_amp
from .augment import check_augment
from .distributed import make_worker, shard_indices
from .trainer import fit
from .warm_start import resolve_warm_start

__all__ = ["train", "model_kwargs", "mel_bins_for"]


def model_kwargs(cfg, data_kwargs):
    """Config kwargs + the store's feature-dependent kwargs (a conflict is a ConfigError)."""
    kwargs = dict(cfg.model.kwargs)
    clash = sorted(k for k in kwargs if k in DATA_MODEL_KWARGS)
    if clash:
        raise ConfigError(f"model.kwargs sets {', '.join(clash)}: these come from the feature store "
                          "(use data.max_audio_frames / data.max_tokens / data.num_frames to change lengths)")
    kwargs.update(data_kwargs)
    return kwargs


def mel_bins_for(audio_feature, audio_dim, n_mels=None):
    """Leading audio dims that are mel bins (for pitch shift / frequency masks); 0 if none."""
    if not audio_feature.startswith("logmel"):
        return 0
    if audio_feature == "logmel":
        return audio_dim
    return n_mels or 64   # logmel+... : the store's log-mel has 64 bins (DESIGN.md)


def _check_out(out_dir, resume):
    exists = os.path.isfile(os.path.join(out_dir, artifacts.MODEL_SPEC))
    if exists and not resume:
        raise EmotionMXError(f"{out_dir} already holds a training run; pass --resume to continue it "
                             "or choose another --out")
    if resume and not exists:
        return False
    return resume


def train(cfg, data_dir, out_dir, *, fold=0, contexts=None, amp=False, kvstore="device", resume=False,
          progress=True, echo=print):
    """Train ``cfg`` (:class:`TrainConfig`) on fold ``fold`` of store ``data_dir`` into run
    directory ``out_dir``.  Returns :class:`~emotion_mx.training.trainer.FitResult`."""
    ensure_output_dir(out_dir, "--out")          # before any work: a bad --out fails in one line
    contexts = list(contexts or [mx.cpu()])
    worker = make_worker(kvstore)
    chief = worker.is_chief
    store = FeatureStore(data_dir)
    d = cfg.data
    # the data settings are resolved here, once, and travel as one DataSettings from now on;
    # pretrained encoders fix their own input features
    needs = model_input_settings(cfg.model.name, d.modalities, **cfg.model.kwargs)
    if d.audio_feature not in ("logmel", needs.get("audio_feature", d.audio_feature)):
        raise ConfigError(f"data.audio_feature is {d.audio_feature!r}, but {cfg.model.name} takes "
                          f"{needs['audio_feature']!r} (its pretrained encoder's front end); remove the setting")
    spec_data = data_spec(store, fold, d.modalities, **dict(
        dict(audio_feature=d.audio_feature, audio_norm=d.audio_norm, max_audio_frames=d.max_audio_frames,
             max_tokens=d.max_tokens, num_frames=d.num_frames), **needs))
    settings = spec_data["settings"]
    modalities = settings.modalities
    if "audio" in modalities:       # before any work: masks wider than the clips are a config error
        check_augment(cfg.augment, settings.max_audio_frames,
                      mel_bins_for(settings.audio_feature, spec_data["model_kwargs"].get("audio_dim", 0)))
    labels = list(store.labels)

    train_ids = store.ids(fold, "train")
    valid_ids = store.ids(fold, "valid")
    if not train_ids:
        raise EmotionMXError(f"{data_dir}: fold {fold} has no training items")
    if not valid_ids:
        raise EmotionMXError(f"{data_dir}: fold {fold} has no validation items; model selection needs them")
    # global class counts (balanced class weights) without loading every array on every worker
    counts = np.bincount([store.label_index[store.by_id[i].label] for i in train_ids], minlength=len(labels))
    if worker.distributed:
        train_ids = [train_ids[i] for i in shard_indices(len(train_ids), worker.rank, worker.num_workers)]

    kwargs = model_kwargs(cfg, spec_data["model_kwargs"])
    # --amp: bfloat16 only where a short timed probe finds it faster (amp.decide_precision)
    recorded = None
    if amp and resume and os.path.isfile(artifacts.run_file(out_dir, artifacts.MODEL_SPEC)):
        recorded = artifacts.load_model_spec(out_dir).to_dict().get("precision")
    precision, lines = decide_precision(
        amp, contexts, dict(model=cfg.model.name, kwargs=kwargs, modalities=modalities, num_classes=len(labels),
                            inputs=input_shapes(modalities, **kwargs), batch_size=cfg.batch_size),
        recorded=recorded, distributed=worker.distributed)
    for line in lines if chief else ():
        echo(line)
    if precision != "float32":
        init_amp(precision)     # before the first forward pass builds the graph
    net = get_model(cfg.model.name, num_classes=len(labels), modalities=modalities, **kwargs)

    train_split = load_split(store, fold, "train", settings, ids=train_ids)
    valid_split = load_split(store, fold, "valid", settings, ids=valid_ids) if chief else None
    spec = artifacts.ModelSpec(
        name=cfg.model.name, kwargs=kwargs, modalities=modalities, num_classes=len(labels), labels=labels,
        inputs={n: list(train_split.inputs[n].shape[1:]) for n in input_names(modalities)},
        data=settings, fold=fold, store=os.path.abspath(data_dir), precision=precision)
    warm = None
    if cfg.init.encoders:
        arrays, sources = resolve_warm_start(cfg.init, fold=fold, seed=cfg.seed, store_path=data_dir, spec=spec)
        spec = replace(spec, warm_start={"encoders": sources, "encoder_lr_mult": cfg.init.encoder_lr_mult})
        warm = (arrays, cfg.init.encoder_lr_mult)
        if chief:
            echo("warm start: " + ", ".join(f"{m} encoder from {d}" for m, d in sources.items()))
    resume = _check_out(out_dir, resume) if chief else resume
    if chief:
        _write_run_files(out_dir, cfg, store, fold, spec, resume)
    audio_dim = spec_data["model_kwargs"].get("audio_dim", 0)
    result = fit(net, train_split, valid_split, cfg, run_dir=out_dir, labels=labels, modalities=modalities,
                 contexts=contexts, worker=worker, precision=precision, resume=resume,
                 mel_bins=mel_bins_for(settings.audio_feature, audio_dim),
                 class_counts=counts, progress=progress, echo=echo, warm_start=warm)
    return result


def _config_diff(old, new, prefix=""):
    """First dotted key where two plain-data configs differ, or None."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new), key=str):
            d = _config_diff(old.get(key), new.get(key), f"{prefix}{key}.")
            if d:
                return d
        return None
    return None if old == new else prefix.rstrip(".")


def _check_same_config(out_dir, cfg):
    """``--resume`` continues the same run: the resolved config must equal the one it started with
    (a changed setting would silently give a model no config describes)."""
    path = artifacts.run_file(out_dir, artifacts.CONFIG)
    try:
        with open(path, encoding="utf-8") as f:
            old = yaml.safe_load(f)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise EmotionMXError(f"--resume: cannot read {path} ({str(e).splitlines()[0]}); use a new --out") from None
    new = yaml.safe_load(yaml.safe_dump(to_dict(cfg), sort_keys=False, allow_unicode=True))
    key = _config_diff(old, new)
    if key is not None:
        def get(d, k):
            for part in k.split("."):
                d = d.get(part) if isinstance(d, dict) else None
            return d
        raise EmotionMXError(f"--resume: {out_dir} was started with {key} = {get(old, key)!r}, now "
                             f"{get(new, key)!r}; resume with the same settings or use a new --out")


def _write_run_files(out_dir, cfg, store, fold, spec, resume):
    os.makedirs(out_dir, exist_ok=True)
    if resume:
        old = artifacts.load_model_spec(out_dir).to_dict()
        new = spec.to_dict()
        for key in ("fold", "store", "precision", "name", "kwargs", "modalities", "labels", "inputs"):
            if old.get(key) != new.get(key):
                raise EmotionMXError(f"--resume: {out_dir} was trained with a different {key} "
                                     f"({old.get(key)!r} vs {new.get(key)!r}); use a new --out")
        _check_same_config(out_dir, cfg)
    dump_config(cfg, artifacts.run_file(out_dir, artifacts.CONFIG))
    write_json(artifacts.run_file(out_dir, artifacts.LABELS), spec["labels"])
    write_json(artifacts.run_file(out_dir, artifacts.NORM), store.norm(fold))
    wordpiece = spec.data.text_ids == "wordpiece"
    vocab_src = st.wordpiece_file() if wordpiece else st.vocab_path(store.path, fold)
    if "text" in spec["modalities"] and os.path.isfile(vocab_src):
        name = artifacts.TOKENIZER if wordpiece else artifacts.VOCAB
        with atomic_path(artifacts.run_file(out_dir, name)) as tmp:
            shutil.copyfile(vocab_src, tmp)
    artifacts.save_model_spec(out_dir, spec)

