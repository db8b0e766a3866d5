"""Resumable epoch checkpoints in ``RUN/checkpoints``.

An epoch's checkpoint is three files written atomically, the JSON last (it is the commit
marker: a checkpoint counts only when its JSON exists and names both other files)::

    epoch-NNNN.params   network parameters (Block.save_parameters)
    epoch-NNNN.states   trainer/optimizer states (Trainer.save_states, optimizer pickled)
    epoch-NNNN.json     {"epoch", "state": trainer bookkeeping (best score, early-stopping
                         counter, plateau/loss-scale state, history), "rng": python/numpy states}

``epoch`` is the number of finished epochs.  The data order, augmentation and the MXNet seed
of every epoch are derived from ``(seed, epoch)``, so restoring these files continues a killed
run exactly.
"""
import glob
import os
import random
import re

import numpy as np

from ..errors import EmotionMXError
from ..fileio import atomic_path, read_json, write_json

__all__ = ["checkpoint_dir", "save_checkpoint", "latest_checkpoint", "load_checkpoint",
           "rng_state", "set_rng_state", "prune_checkpoints"]

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


def save_checkpoint(run_dir, epoch, net, trainer, state):
    stem = _stem(run_dir, epoch)
    os.makedirs(checkpoint_dir(run_dir), exist_ok=True)
    with atomic_path(stem + ".params") as tmp:
        net.save_parameters(tmp)
    with atomic_path(stem + ".states") as tmp:
        trainer.save_states(tmp)
    write_json(stem + ".json", {"epoch": epoch, "params": os.path.basename(stem + ".params"),
                                "states": os.path.basename(stem + ".states"),
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
        if not (os.path.isfile(stem + ".params") and os.path.isfile(stem + ".states")):
            continue
        if best is None or int(m.group(1)) > best[0]:
            best = (int(m.group(1)), stem)
    return best[1] if best else None


def load_checkpoint(stem, net, trainer, ctx):
    """Load params and trainer states into ``net``/``trainer``; restore RNG states; return
    the checkpoint's JSON (``epoch``, ``state``)."""
    try:
        meta = read_json(stem + ".json")
        net.load_parameters(stem + ".params", ctx=ctx)
        trainer.load_states(stem + ".states")
    except Exception as e:
        raise EmotionMXError(f"{stem}: cannot resume from this checkpoint ({str(e).splitlines()[0]}); "
                             "delete it to fall back to the previous one") from None
    set_rng_state(meta["rng"])
    return meta


def prune_checkpoints(run_dir, keep):
    """Delete all but the newest ``keep`` complete checkpoints (``keep`` 0 keeps all)."""
    if not keep:
        return
    stems = sorted(p[:-len(".json")] for p in glob.glob(os.path.join(checkpoint_dir(run_dir), "epoch-*.json"))
                   if _NAME.match(os.path.basename(p)))
    for stem in stems[:-keep]:
        for ext in (".json", ".params", ".states"):   # JSON first: never a marker without files
            try:
                os.unlink(stem + ext)
            except FileNotFoundError:
                pass
