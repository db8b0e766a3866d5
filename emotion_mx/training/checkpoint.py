"""Resumable epoch checkpoints in ``RUN/checkpoints``.

An epoch's checkpoint is three files written atomically, the JSON last (it is the commit
marker: a checkpoint counts only when its JSON exists and names both other files)::

    epoch-NNNN.params       network parameters (Block.save_parameters)
    epoch-NNNN.trainer.npz  optimizer state arrays (momentum, Adam moments...), plain ``.npz``
    epoch-NNNN.json         {"epoch", "state": trainer bookkeeping (best score, early-stopping
                             counter, plateau/loss-scale state, history), "rng": python/numpy
                             states, "trainer": optimizer counters and the layout of the arrays}

Nothing in a run folder is unpickled: MXNet's ``Trainer.save_states`` pickles the optimizer, so
a crafted run folder could run code on ``--resume``.  The optimizer's state arrays are written
as ``.npz`` (loaded with ``allow_pickle=False``) and its counters as JSON.  A legacy
``epoch-NNNN.states`` (pickle) checkpoint is refused unless the user says they trust it:
``--trust-pickle`` (environment: ``EMOTION_MX_TRUST_PICKLE=1``).

``epoch`` is the number of finished epochs.  The data order, augmentation and the MXNet seed
of every epoch are derived from ``(seed, epoch)``, so restoring these files continues a killed
run exactly.
"""
import glob
import os
import random
import re

import numpy as np

from ..artifacts import first_error_line
from ..errors import EmotionMXError
from ..fileio import atomic_path, read_json, write_json

__all__ = ["checkpoint_dir", "save_checkpoint", "latest_checkpoint", "load_checkpoint",
           "rng_state", "set_rng_state", "prune_checkpoints", "TRUST_PICKLE_ENV"]

TRUST_PICKLE_ENV = "EMOTION_MX_TRUST_PICKLE"
_TRAINER_EXT = ".trainer.npz"
_EXTS = (".params", _TRAINER_EXT, ".states")

_NAME = re.compile(r"^epoch-(\d{4,})\.json$")


def checkpoint_dir(run_dir):
    return os.path.join(run_dir, "checkpoints")


def _stem(run_dir, epoch):
    return os.path.join(checkpoint_dir(run_dir), f"epoch-{epoch:04d}")


def rng_state():
    """Python and numpy global RNG states as JSON-serialisable data."""
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {"python": [version, list(internal), gauss],
            "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)]}


def set_rng_state(state):
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))


def _updaters(trainer):
    """The trainer's updaters (MXNet keeps one per device; they hold the same states)."""
    if not trainer._kv_initialized:
        trainer._init_kvstore()
    if trainer._params_to_init:
        trainer._init_params()
    if trainer._update_on_kvstore:
        return [trainer._kvstore._updater]
    return list(trainer._updaters)


def _encode(state, arrays):
    """A nested optimizer state (NDArray / tuple / list / None) as JSON; arrays into ``arrays``."""
    if state is None:
        return None
    if isinstance(state, (tuple, list)):
        return {"tuple" if isinstance(state, tuple) else "list": [_encode(s, arrays) for s in state]}
    key = f"a{len(arrays)}"
    arrays[key] = state.asnumpy()
    return {"array": key}


def _decode(spec, arrays):
    import mxnet as mx
    if spec is None:
        return None
    if not isinstance(spec, dict) or len(spec) != 1:
        raise ValueError("malformed optimizer state layout")
    (kind, value), = spec.items()
    if kind == "array":
        a = arrays[value]
        return mx.nd.array(a, dtype=a.dtype)
    if kind in ("tuple", "list"):
        items = [_decode(v, arrays) for v in value]
        return tuple(items) if kind == "tuple" else items
    raise ValueError(f"unknown optimizer state kind {kind!r}")


def trainer_state(trainer, path):
    """Write ``trainer``'s optimizer state arrays to ``path`` (.npz); return the JSON part."""
    updater = _updaters(trainer)[0]
    opt = updater.optimizer
    arrays, layout = {}, {}
    for index, state in updater.states.items():
        layout[str(index)] = _encode(state, arrays)
    with atomic_path(path) as tmp:
        np.savez(tmp, **arrays)
    return {"layout": layout, "num_update": int(opt.num_update),
            "begin_num_update": int(opt.begin_num_update), "lr": float(opt.lr),
            "index_update_counts": {str(d): {str(k): int(v) for k, v in c.items()}
                                    for d, c in opt._all_index_update_counts.items()}}


def load_trainer_state(trainer, path, info):
    """Restore what :func:`trainer_state` wrote (no pickle: ``allow_pickle=False``)."""
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    states = {int(k): _decode(v, arrays) for k, v in info["layout"].items()}
    for updater in _updaters(trainer):
        updater.states = dict(states)
        updater.states_synced = dict.fromkeys(states, False)   # copied to each device on first use
        opt = updater.optimizer
        opt.num_update = int(info["num_update"])
        opt.begin_num_update = int(info["begin_num_update"])
        opt._all_index_update_counts = {int(d): {int(k): int(v) for k, v in c.items()}
                                        for d, c in info["index_update_counts"].items()}
        opt._all_index_update_counts.setdefault(0, {})
        opt._index_update_count = opt._all_index_update_counts[0]
        opt.lr = float(info["lr"])
    trainer._optimizer.param_dict = {i: p for i, p in enumerate(trainer._params)}


def save_checkpoint(run_dir, epoch, net, trainer, state):
    stem = _stem(run_dir, epoch)
    os.makedirs(checkpoint_dir(run_dir), exist_ok=True)
    with atomic_path(stem + ".params") as tmp:
        net.save_parameters(tmp)
    info = trainer_state(trainer, stem + _TRAINER_EXT)
    write_json(stem + ".json", {"epoch": epoch, "params": os.path.basename(stem + ".params"),
                                "states": os.path.basename(stem + _TRAINER_EXT), "trainer": info,
                                "state": state, "rng": rng_state()})
    return stem


def latest_checkpoint(run_dir):
    """Path stem of the newest complete checkpoint, or None."""
    best = None
    for path in glob.glob(os.path.join(checkpoint_dir(run_dir), "epoch-*.json")):
        m = _NAME.match(os.path.basename(path))
        if not m:
            continue
        stem = path[:-len(".json")]
        if not (os.path.isfile(stem + ".params") and
                (os.path.isfile(stem + _TRAINER_EXT) or os.path.isfile(stem + ".states"))):
            continue
        if best is None or int(m.group(1)) > best[0]:
            best = (int(m.group(1)), stem)
    return best[1] if best else None


def _check_meta(stem, meta):
    """The checkpoint JSON's fields, checked before anything is loaded (one line naming the field)."""
    if not isinstance(meta, dict):
        raise EmotionMXError(f"{stem}.json: not a checkpoint (a JSON object is expected)")
    for key, kind in (("epoch", int), ("state", dict), ("rng", dict)):
        if not isinstance(meta.get(key), kind) or isinstance(meta.get(key), bool):
            raise EmotionMXError(f"{stem}.json: field '{key}' is missing or not a {kind.__name__}; "
                                 "delete this checkpoint to fall back to the previous one")
    try:
        for key in ("python", "numpy"):
            if key not in meta["rng"]:
                raise KeyError(key)
    except KeyError as e:
        raise EmotionMXError(f"{stem}.json: field 'rng' lacks {e}; delete this checkpoint to fall "
                             "back to the previous one") from None


def load_checkpoint_params(stem, net, ctx):
    """Only the parameters of checkpoint ``stem`` into ``net`` (one error line if unreadable)."""
    try:
        net.load_parameters(stem + ".params", ctx=ctx)
    except Exception as e:
        raise EmotionMXError(f"{stem}.params: cannot resume from this checkpoint ({first_error_line(e)}; the file "
                             "is truncated or damaged); delete it to fall back to the previous one") from None


def load_checkpoint(stem, net, trainer, ctx, trust_pickle=None, params=True):
    """Load params (``params``: unless already loaded) and trainer states into
    ``net``/``trainer``; restore RNG states; return the checkpoint's JSON (``epoch``, ``state``).

    A legacy pickled ``.states`` file is loaded only with ``trust_pickle`` (default: the
    ``EMOTION_MX_TRUST_PICKLE=1`` environment variable, set by ``--trust-pickle``).
    """
    if trust_pickle is None:
        trust_pickle = os.environ.get(TRUST_PICKLE_ENV, "") == "1"
    try:
        meta = read_json(stem + ".json")
    except (OSError, ValueError) as e:
        raise EmotionMXError(f"{stem}.json: cannot read this checkpoint ({str(e).splitlines()[0]}); "
                             "delete it to fall back to the previous one") from None
    _check_meta(stem, meta)
    legacy = "trainer" not in meta
    if legacy and not trust_pickle:
        raise EmotionMXError(f"{stem}: an old checkpoint whose optimizer states are a pickle (which can run "
                             "code); resume it only if you made it yourself, with --trust-pickle "
                             f"({TRUST_PICKLE_ENV}=1)")
    if params:
        load_checkpoint_params(stem, net, ctx)
    try:
        if legacy:
            trainer.load_states(stem + ".states")
        else:
            load_trainer_state(trainer, stem + _TRAINER_EXT, meta["trainer"])
        set_rng_state(meta["rng"])
    except Exception as e:
        raise EmotionMXError(f"{stem}: cannot resume from this checkpoint ({first_error_line(e)}; its optimizer "
                             "or RNG state is truncated or damaged); delete it to fall back to the previous one") from None
    return meta


def prune_checkpoints(run_dir, keep):
    """Delete all but the newest ``keep`` complete checkpoints (``keep`` 0 keeps all)."""
    if not keep:
        return
    stems = sorted(p[:-len(".json")] for p in glob.glob(os.path.join(checkpoint_dir(run_dir), "epoch-*.json"))
                   if _NAME.match(os.path.basename(p)))
    for stem in stems[:-keep]:
        for ext in (".json",) + _EXTS:   # JSON first: never a marker without files
            try:
                os.unlink(stem + ext)
            except FileNotFoundError:
                pass
