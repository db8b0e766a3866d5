"""Feature-store files: sharded ``.npz`` archives plus a JSON index.

A shard holds the arrays of up to ``shard_size`` items under keys ``"<item_id>/<feature>"``
and one ``"__meta__"`` entry (JSON as bytes: per-item label, tokens, flags and the running
sums used for normalisation).  Shards are written atomically (temporary name, then rename),
so a killed build leaves only whole shards; a restarted build lists the items they hold and
extracts only the rest: every item ends up in exactly one shard.

``index.json`` is written last, by :func:`write_index`: its presence marks a finished store.
"""
import glob
import json
import os
import time

import numpy as np

from .fileio import atomic_path, write_json

SHARD_DIR = "shards"
INDEX = "index.json"
META_KEY = "__meta__"


def shard_paths(store_dir):
    return sorted(glob.glob(os.path.join(store_dir, SHARD_DIR, "shard-*.npz")))


def clean_partial(store_dir):
    """Remove temporary files left by a killed build (never complete shards)."""
    for tmp in glob.glob(os.path.join(store_dir, SHARD_DIR, ".shard-*.tmp*")):
        os.unlink(tmp)


def write_shard(store_dir, name, items):
    """``items``: list of ``(item_id, arrays: dict[str, ndarray], meta: dict)``. Returns the path."""
    arrays = {}
    metas = {}
    for item_id, feats, meta in items:
        for key, value in feats.items():
            arrays[f"{item_id}/{key}"] = np.ascontiguousarray(value)
        metas[item_id] = meta
    arrays[META_KEY] = np.frombuffer(json.dumps(metas).encode("utf-8"), dtype=np.uint8)
    path = os.path.join(store_dir, SHARD_DIR, f"shard-{name}.npz")
    with atomic_path(path) as tmp:
        np.savez(tmp, **arrays)
    return path


def read_shard_meta(path):
    """Per-item metadata of a shard (cheap: does not load the feature arrays)."""
    with np.load(path, allow_pickle=False) as z:
        return json.loads(z[META_KEY].tobytes().decode("utf-8"))


def new_shard_name(index):
    """Unique shard name: a per-build token plus a counter (no clash across resumed builds)."""
    return f"{time.strftime('%Y%m%d%H%M%S')}-{os.getpid()}-{index:05d}"


def write_index(store_dir, entries):
    write_json(os.path.join(store_dir, INDEX), entries, indent=None)


class ShardCache:
    """Open shards on demand; each shard file is opened once."""

    def __init__(self, store_dir):
        self.store_dir = store_dir
        self._open = {}

    def get(self, shard, item_id, feature):
        z = self._open.get(shard)
        if z is None:
            z = self._open[shard] = np.load(os.path.join(self.store_dir, SHARD_DIR, shard), allow_pickle=False)
        return z[f"{item_id}/{feature}"]

    def close(self):
        for z in self._open.values():
            z.close()
        self._open.clear()
