"""Speaker-independent folds and the leakage check.

Groups (speakers, subjects, sessions) are shuffled with a fixed seed and dealt into ``k`` parts
balanced by item count.  Fold ``f`` tests on part ``f``, validates on part ``f+1`` and trains on
the rest, so every group is tested exactly once.  Corpora with an official split (``split`` on
every item, e.g. MELD, GoEmotions) get one fold that is that split.
"""
import random
from collections import Counter

from .errors import EmotionMXError
from .manifest import MEDIA_FIELDS, SPLITS


def make_folds(items, k=5, seed=0):
    """Return ``{"k", "seed", "kind", "folds": [{"train": [...], "valid": [...], "test": [...]}]}``.

    Fold entries list groups (``"by": "group"``); for an official split they list the split
    names instead (``"by": "split"``) and ``kind`` is ``"official"``.
    """
    if items and all(it.split for it in items):
        return {"k": 1, "seed": seed, "kind": "official",
                "folds": [dict({s: [s] for s in SPLITS}, by="split")]}
    sizes = Counter(it.group for it in items)
    if len(sizes) < 3:
        raise EmotionMXError(f"only {len(sizes)} group(s) ({', '.join(sorted(sizes))}); "
                             "speaker-independent train/valid/test folds need at least 3")
    if k > len(sizes):
        raise EmotionMXError(f"--folds {k} is more than the {len(sizes)} groups; use --folds {len(sizes)} or fewer")
    if k < 3:
        raise EmotionMXError(f"--folds {k}: need at least 3 (test, valid and train parts)")
    groups = sorted(sizes)
    random.Random(seed).shuffle(groups)
    # Largest groups first (stable for ties by the seeded order), each to the lightest part.
    groups.sort(key=lambda g: -sizes[g])
    parts = [[] for _ in range(k)]
    load = [0] * k
    for g in groups:
        i = min(range(k), key=lambda j: (load[j], j))
        parts[i].append(g)
        load[i] += sizes[g]
    folds = []
    for f in range(k):
        test, valid = parts[f], parts[(f + 1) % k]
        train = [g for j, p in enumerate(parts) if j not in (f, (f + 1) % k) for g in p]
        folds.append({"by": "group", "train": sorted(train), "valid": sorted(valid), "test": sorted(test)})
    return {"k": k, "seed": seed, "kind": "group", "folds": folds}


def split_of(item, fold):
    """Which split of ``fold`` (one entry of make_folds()['folds']) ``item`` belongs to."""
    key = item.split if fold["by"] == "split" else item.group
    for name in SPLITS:
        if key in fold[name]:
            return name
    raise EmotionMXError(f"item {item.id}: group '{item.group}' is in no split of the fold")


def _leak_keys(item):
    """Everything that identifies who/what an item comes from: its group, the groups of its
    sources (composed items) and its media files (the same recording must not cross sides)."""
    keys = {("group", item.group)}
    for src, g in (item.meta or {}).get("groups", {}).items():
        keys.add(("source-group", g))
    for f in MEDIA_FIELDS:
        path = getattr(item, f)
        if path:
            keys.add(("file", path))
    return keys


def check_leakage(items, folds):
    """Raise EmotionMXError when a group or a recording lands on two sides of any fold."""
    for f, fold in enumerate(folds["folds"]):
        owner = {}
        for it in items:
            side = split_of(it, fold)
            for key in _leak_keys(it):
                prev = owner.setdefault(key, (side, it.id))
                if prev[0] != side and not (folds["kind"] == "official" and key[0] == "group"):
                    kind, value = key
                    raise EmotionMXError(
                        f"leakage in fold {f}: {kind} '{value}' is in {prev[0]} ({prev[1]}) and in "
                        f"{side} ({it.id}); fix the corpus groups or the split")
    return True
