"""Tri-modal items composed from unimodal corpora by shared label.

No public corpus here has speech, face and text of the same moment, so ``compose`` pairs an
item of one corpus (the *anchor*, e.g. an EmoDB utterance) with a face and a sentence of the
same canonical class from other corpora (CK+, ISEAR).  The modalities are **independent
evidence of the same class, not aligned recordings**: there is no temporal correspondence
(word alignment is meaningless), and a fusion model can at best combine three independent
guesses.

Speaker independence is kept by construction: each source's groups (speakers, subjects,
writers) are partitioned into ``parts`` parts, and an anchor item in part ``p`` is only paired
with items of part ``p`` of the other sources.  Output items get ``group = "part<p>"``, so any
split by group (e.g. ``parts`` folds) never puts a speaker, subject or writer on both sides.
"""
import os
import random
from collections import Counter, defaultdict
from collections.abc import Mapping

from ..errors import EmotionMXError
from ..manifest import Utterance
from .common import check_choice, rel
from .labels import DEFAULT_LABELS, SYNONYMS, apply_label_config, chain_maps, merge_label_configs
from .registry import Skip, get_reader, register_reader

# the options naming source corpora, in the order they are read (not the model-input order)
SOURCE_OPTIONS = ("audio", "video", "text")
SOURCE_KEYS = ("corpus", "path", "labels", "options")


def _source(key, spec):
    """Validated source spec ``{corpus, path, labels, options}`` of modality ``key``."""
    if not isinstance(spec, Mapping) or "corpus" not in spec:
        raise EmotionMXError(f"compose: option '{key}' must be a mapping with at least 'corpus' "
                             f"(keys: {', '.join(SOURCE_KEYS)})")
    unknown = sorted(set(spec) - set(SOURCE_KEYS))
    if unknown:
        raise EmotionMXError(f"compose: '{key}': unknown key '{unknown[0]}' (valid: {', '.join(SOURCE_KEYS)})")
    corpus = spec["corpus"]
    get_reader(corpus)
    default = DEFAULT_LABELS.get(corpus, {})
    labels = merge_label_configs({**default, "map": chain_maps(default.get("map", {}), SYNONYMS)}, spec.get("labels"))
    return {"corpus": corpus, "path": spec.get("path", "."), "labels": labels, "options": dict(spec.get("options") or {})}


def partition_groups(items, parts, seed):
    """{group: part}: groups spread over ``parts`` parts, balancing each label's item count.

    Groups are shuffled (seeded), then taken largest first; each goes to the part where its
    labels are least represented so far (relative to their totals), ties to the smaller part.
    """
    counts = defaultdict(Counter)
    for it in items:
        counts[it.group][it.label] += 1
    totals = Counter(it.label for it in items)
    groups = sorted(counts)
    random.Random(seed).shuffle(groups)
    groups.sort(key=lambda g: -sum(counts[g].values()))
    load, size, out = [Counter() for _ in range(parts)], [0] * parts, {}
    for g in groups:
        p = min(range(parts), key=lambda q: (sum(c * load[q][y] / totals[y] for y, c in counts[g].items()), size[q], q))
        out[g] = p
        load[p].update(counts[g])
        size[p] += sum(counts[g].values())
    return out


def _paired_fields(key, item):
    """The fields modality ``key`` contributes from ``item`` (None if it has none)."""
    if key == "audio":
        return {"audio": item.audio} if item.audio else None
    if key == "video":
        return {"video": item.video, "image": item.image} if item.video or item.image else None
    return {"text": item.text} if item.text is not None else None


@register_reader("compose", layout="one sub-folder per source corpus (option 'path' of each source), "
                                    "e.g. emodb/, ckplus48/, isear/")
def read_compose(root, *, audio=None, video=None, text=None, parts=5, seed=0, anchor="audio"):
    """Tri-modal (or bi-modal) items paired by shared canonical label.

    ``audio``/``video``/``text``: ``{corpus, path, labels, options}``: the reader name, its root
    relative to ``root`` (default ``.``), a LabelConfig mapping layered over the source's default
    (the corpus' default map followed by :data:`~emotion_mx.corpora.labels.SYNONYMS`) and
    reader options.  Only labels present in every source survive.  ``anchor``: the modality
    whose items are each used once; partners from the other sources are drawn, per part and
    label, by cycling through a seeded permutation (reuse spread evenly).
    """
    given = dict(audio=audio, video=video, text=text)
    specs = {k: _source(k, given[k]) for k in SOURCE_OPTIONS if given[k] is not None}
    if len(specs) < 2:
        raise EmotionMXError("compose: give at least two of the options audio, video, text")
    check_choice(anchor, "anchor", tuple(specs))
    if not isinstance(parts, int) or parts < 1:
        raise EmotionMXError(f"compose: option 'parts' must be a positive integer, got {parts!r}")

    pools = {}
    from ..manifest import inside_root
    for key, spec in specs.items():
        if inside_root(root, spec["path"]) is None:
            raise EmotionMXError(f"compose: '{key}': path {spec['path']!r} is outside the corpus root {root} "
                                 "(symlinks followed); give a path relative to the root")
        items, skipped = get_reader(spec["corpus"]).scan(os.path.join(root, spec["path"]), **spec["options"])
        for entry, reason in skipped:
            yield Skip(f"{key}:{spec['corpus']}:{entry}", reason)
        items, dropped = apply_label_config(items, spec["labels"])
        if key == anchor:
            yield from (Skip(f"{spec['corpus']}:{it.id}", reason) for it, reason in dropped)
        pools[key] = [it for it in items if _paired_fields(key, it)]
    shared = set.intersection(*({it.label for it in items} for items in pools.values()))

    part_of, by_cell = {}, {}                                # by_cell: key → (part, label) → items
    for key, items in pools.items():
        items = [it for it in items if it.label in shared]
        n_groups = len({it.group for it in items})
        if n_groups < parts:
            raise EmotionMXError(f"compose: source '{key}' ({specs[key]['corpus']}) has {n_groups} groups with "
                                 f"items of the shared labels; cannot fill {parts} parts")
        part_of[key] = partition_groups(items, parts, seed)
        by_cell[key] = defaultdict(list)
        for it in items:
            by_cell[key][part_of[key][it.group], it.label].append(it)
        for cell, cell_items in by_cell[key].items():
            random.Random(f"{seed}:{key}:{cell}").shuffle(cell_items)

    anchor_corpus = specs[anchor]["corpus"]
    used = Counter()
    for a in sorted(pools[anchor], key=lambda it: it.id):
        if a.label not in shared:
            yield Skip(f"{anchor_corpus}:{a.id}", f"label '{a.label}' is not shared by all sources "
                                              f"(shared: {', '.join(sorted(shared)) or 'none'})")
            continue
        cell = (part_of[anchor][a.group], a.label)
        chosen = {anchor: a}
        for key in specs:
            if key != anchor and by_cell[key][cell]:
                pool = by_cell[key][cell]
                chosen[key] = pool[used[key, cell] % len(pool)]
                used[key, cell] += 1
        missing = [k for k in specs if k not in chosen]
        if missing:
            yield Skip(f"{anchor_corpus}:{a.id}", f"no {missing[0]} item labelled '{a.label}' in part {cell[0]}")
            continue
        timed = [k for k in ("audio", "video") if k in chosen and getattr(chosen[k], k)]
        cut = [k for k in specs if chosen[k].start is not None or chosen[k].end is not None]
        if cut and len(timed) > 1:
            yield Skip(f"{anchor_corpus}:{a.id}", f"the {cut[0]} source is a segment (start/end) of a longer file, "
                                                  "which would also cut the other source's media; use whole-file "
                                                  "media (e.g. iemocap option media: sentence)")
            continue
        yield _compose_item(a.id, a.label, cell[0], chosen, specs, anchor)


def _compose_item(item_id, label, part, chosen, specs, anchor):
    """One composed Utterance; media paths are rebased onto the composer's root."""
    fields = {}
    for key, it in chosen.items():
        for name, value in _paired_fields(key, it).items():
            fields[name] = rel(specs[key]["path"], value) if name != "text" and value else value
    segment = next((it for it in chosen.values() if it.start is not None or it.end is not None), None)
    return Utterance(
        id=item_id, label=label, group=f"part{part}", start=segment and segment.start, end=segment and segment.end,
        lang=chosen.get("text", chosen[anchor]).lang,
        meta={"groups": {k: f"{specs[k]['corpus']}:{it.group}" for k, it in chosen.items()},
              "sources": {k: f"{specs[k]['corpus']}:{it.id}" for k, it in chosen.items()}},
        **fields)
