"""Dataset building: corpus → manifest → features (+ DTW word alignment) → feature store.

Stages (each writes files the next one reads):

1. read the corpus with its reader, map labels to the canonical set;
2. extract features per item in worker processes, a shard per chunk (resumable);
3. finalise: normalised manifest, speaker-independent folds + leakage check, per-fold
   normalisation statistics and vocabularies, ``labels.json``, ``stats.json``, ``index.json``.

A bad item never stops the build: it is skipped and its reason recorded in ``stats.json``
(``strict=True`` fails on it instead, with one line naming the item).
"""
import concurrent.futures as cf
import ctypes
import errno
import fcntl
import hashlib
import json
import logging
import multiprocessing
import os
import signal
import time
from collections import Counter, defaultdict

import numpy as np

from . import store as st
from .config import DatasetConfig, dump_config, replace, to_dict
from .contract import MODALITIES
from .corpora import read_corpus
from .corpora.labels import apply_label_config
from .errors import BadItem, EmotionMXError
from .fileio import ensure_output_dir, read_json, write_json
from .manifest import check_item_id, check_name, media_stamp, resolve_media, write_manifest
from .progress import Progress
from .splits import check_leakage, make_folds, split_of

log = logging.getLogger(__name__)

# Voices for DTW alignment by the manifest's ``lang`` (espeak-ng voice names).
DEFAULT_VOICES = {"en": "en", "de": "de", "cmn": "cmn", "zh": "cmn", "fr": "fr", "es": "es", "it": "it"}
NORM_FEATURES = ("logmel", "mfcc", "prosody")
# fast speech is 5-7 words (or CJK characters) per second; above this a transcript cannot be
# the clip's, beyond a few words of slack for very short clips
MAX_WORDS_PER_SECOND = 12
WORD_RATE_SLACK = 3


# --------------------------------------------------------------------------------------------
# 1. per-item extraction (runs in worker processes)
# --------------------------------------------------------------------------------------------

def _check_finite(arrays, item_id):
    for key, value in arrays.items():
        if value.dtype.kind == "f" and not np.all(np.isfinite(value)):
            raise BadItem(f"feature '{key}' contains NaN/inf; check the media file", item_id=item_id)


def _check_word_rate(tokens, seconds, item_id):
    """A transcript with more words than anyone can say in the clip belongs to another clip (or
    the segment times are wrong): skip the item with the rate, not train on a wrong pairing."""
    words = sum(1 for t in tokens if any(ch.isalnum() for ch in t))
    if words > MAX_WORDS_PER_SECOND * seconds + WORD_RATE_SLACK:
        raise BadItem(f"transcript has {words} words for {seconds:.2f} s of audio ({words / seconds:.0f} words/s; "
                      f"speech stays below {MAX_WORDS_PER_SECOND}): the text does not belong to this clip; "
                      "fix the transcript or the segment times", item_id=item_id)


def _sums(x):
    """Running sums for normalisation: per-dimension sum, sum of squares and frame count."""
    x = x.astype(np.float64).reshape(-1, x.shape[-1]) if x.ndim > 1 else x.astype(np.float64)[:, None]
    return {"sum": x.sum(0).tolist(), "sumsq": (x ** 2).sum(0).tolist(), "n": int(x.shape[0])}


def extract_item(item, root, cfg):
    """Features of one utterance: ``(arrays, meta)``; raises BadItem when unusable."""

    arrays, meta = {}, {"label": item.label, "group": item.group, "flags": {}, "sums": {}}
    wave = None
    mods = item.modalities()
    if not mods:
        raise BadItem("item has no audio, video, image or text", item_id=item.id)

    # 1a. audio: decode → log-mel, MFCC(+deltas), prosody; all (T, F) on a 10 ms hop
    if "audio" in mods and cfg.audio.enabled:
        a = cfg.audio
        path = resolve_media(root, item.audio, item.id)
        from .features import audio as fa   # librosa: lazy, so the CLI starts fast
        wave = fa.load_audio(path, sample_rate=a.sample_rate, start=item.start, end=item.end,
                             max_seconds=a.max_seconds, trim_db=a.trim_db)
        feats = fa.audio_features(wave, sample_rate=a.sample_rate, n_mels=a.n_mels, win_ms=a.win_ms,
                                  hop_ms=a.hop_ms, n_mfcc=a.n_mfcc, deltas=a.deltas,
                                  prosody=a.prosody, fmin=a.fmin, fmax=a.fmax)
        arrays.update(feats)
        if a.whisper:
            arrays.update(fa.whisper_features(wave, a.sample_rate))       # (T, 80)
        meta["duration"] = float(len(wave) / a.sample_rate)

    # 1b. text: tokens (ids are assigned per fold, from the fold's training vocabulary)
    if "text" in mods and cfg.text.enabled:
        from .features.text import tokenize
        tokens = tokenize(item.text or "", lower=cfg.text.lower)
        if not tokens:
            raise BadItem("empty transcript; give the item text or drop its 'text' field", item_id=item.id)
        meta["tokens"] = tokens
        if "duration" in meta and "sources" not in (item.meta or {}):
            _check_word_rate(tokens, meta["duration"], item.id)

    # 1c. faces: N frames spread over the utterance (a still image is one frame)
    if "video" in mods and cfg.face.enabled:
        f = cfg.face
        rel = item.video or item.image
        path = resolve_media(root, rel, item.id)
        from .features.face import extract_faces
        faces = extract_faces(path, is_image=not item.video, start=item.start, end=item.end,
                              num_frames=f.num_frames, size=f.size, grayscale=f.grayscale,
                              margin=f.margin, detect=f.detect, min_face=f.min_face,
                              detector=f.detector, detector_model=f.detector_model)
        arrays["frames"] = faces["frames"]                    # (N, C, S, S) uint8
        arrays["face_found"] = faces["face_found"]            # (N,)
        arrays["frame_times"] = faces["times"]                # (N,)
        meta["flags"]["face_found"] = float(np.mean(faces["face_found"]))

    _check_finite(arrays, item.id)

    # 1d. DTW word alignment of speech to transcript (not for composed items: their speech and
    #     text come from different recordings)
    composed = "sources" in (item.meta or {})
    if wave is not None and "tokens" in meta and cfg.align.enabled and not composed:
        _align(item, root, cfg, wave, arrays, meta)

    # running sums for the per-fold normalisation statistics
    for key in NORM_FEATURES:
        if key in arrays:
            meta["sums"][key] = _sums(arrays[key])
    if "frames" in arrays:
        px = arrays["frames"].astype(np.float64) / 255.0
        meta["sums"]["frames"] = {"sum": [float(px.sum())], "sumsq": [float((px ** 2).sum())], "n": int(px.size)}
    meta["shapes"] = {k: list(v.shape) for k, v in arrays.items()}
    return arrays, meta


def _align(item, root, cfg, wave, arrays, meta):
    """Word spans by TTS + DTW, word-pooled audio/face features; a failure is recorded, not fatal."""
    a = cfg.audio
    voice = cfg.align.voice or DEFAULT_VOICES.get(item.lang or "en", item.lang or "en")
    from .features.align import align_words, boundary_error, pool_over_spans, read_iemocap_wdseg
    try:
        spans = align_words(wave, a.sample_rate, item.text, voice=voice, hop_ms=a.hop_ms, n_mels=a.n_mels)
    except BadItem as e:
        meta["flags"]["align_error"] = e.reason
        return
    if not spans:
        meta["flags"]["align_error"] = "no words aligned"
        return
    span_arr = np.array([[s.start, s.end] for s in spans], dtype=np.float32)    # (L, 2)
    arrays["word_spans"] = span_arr
    meta["words"] = [s.word for s in spans]
    hop = a.hop_ms / 1000.0
    t_audio = (np.arange(arrays["logmel"].shape[0]) * hop).astype(np.float32)    # (T,)
    arrays["logmel_words"] = pool_over_spans(arrays["logmel"], t_audio, span_arr)  # (L, n_mels)
    if "frames" in arrays:
        n, c, h, w = arrays["frames"].shape
        flat = arrays["frames"].reshape(n, -1).astype(np.float32)                 # (N, C*H*W)
        pooled = pool_over_spans(flat, arrays["frame_times"], span_arr)           # (L, C*H*W)
        arrays["frames_words"] = pooled.reshape(-1, c, h, w).astype(np.uint8)     # (L, C, H, W)
    ref_rel = (item.meta or {}).get("word_timings")
    if ref_rel:
        try:
            ref = read_iemocap_wdseg(resolve_media(root, ref_rel, item.id))
            meta["align_ref_error"] = boundary_error(spans, ref)
        except (BadItem, EmotionMXError, ValueError) as e:
            meta["flags"]["align_ref_error"] = str(e)


_PR_SET_PDEATHSIG = 1


def _worker_init(parent_pid):
    """Worker initializer: die with the build's main process (also when it is SIGKILLed, as the
    out-of-memory killer does), so no orphan keeps writing shards into ``--out``."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):   # not Linux: the parent check below still runs
        pass
    if os.getppid() != parent_pid:      # the parent died before prctl took effect
        os._exit(1)


def _process_chunk(chunk, root, cfg, store_dir, shard_name, chash=None):
    """Worker: extract a chunk of items and write their shard. Returns (ids, skipped).

    Every item's metadata carries the settings hash ``chash`` and its media stamp, so a shard
    written under other settings, or before the media changed, is never taken in.
    """
    done, skipped = [], []
    for item in chunk:
        try:
            stamp = media_stamp(root, item)
            arrays, meta = extract_item(item, root, cfg)
            meta["config_hash"], meta["stamp"] = chash, stamp
            done.append((item.id, arrays, meta))
        except BadItem as e:
            skipped.append((item.id, e.reason))
        except Exception as e:  # a library failing on odd input must not kill the build
            skipped.append((item.id, f"unexpected {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"))
    if done:
        st.write_shard(store_dir, shard_name, done)
    return [d[0] for d in done], skipped


# --------------------------------------------------------------------------------------------
# 2. the build
# --------------------------------------------------------------------------------------------

def _config_hash(cfg, root):
    d = to_dict(cfg)
    face = d.get("face", {})
    if face.get("detector") == "haar" and face.get("detector_model") is None:
        face.pop("detector"), face.pop("detector_model")    # stores built before these keys still resume
    if d.get("audio", {}).get("trim_db", 0) is None:
        d["audio"].pop("trim_db")                           # likewise for audio.trim_db (off)
    data = json.dumps({"cfg": d, "root": os.path.realpath(root)}, sort_keys=True)
    return hashlib.sha256(data.encode()).hexdigest()[:16]


def read_items(corpus, root, cfg):
    """Reader + label mapping. Returns ``(items, skipped)`` with skipped = [(id, reason)]."""
    items, skipped = read_corpus(corpus, root, **dict(cfg.reader))
    skipped = [(str(i), r) for i, r in skipped]
    usable = []
    for it in items:     # the manifest boundary: an id no later stage can store is refused
        try:
            check_item_id(it.id, where="item")
            if not str(it.label).strip() or not str(it.group).strip():
                check_name(str(it.label), "label", f"item {it.id}")
                check_name(str(it.group), "group", f"item {it.id}")
            usable.append(it)
        except EmotionMXError as e:
            skipped.append((repr(it.id), str(e)))
    items = usable
    kept, dropped = apply_label_config(items, cfg.labels, corpus=corpus)
    skipped += [(it.id, reason) for it, reason in dropped]
    ids = Counter(it.id for it in kept)
    dup = [i for i, n in ids.items() if n > 1]
    if dup:
        raise EmotionMXError(f"corpus '{corpus}' gives duplicate item id '{dup[0]}'; ids must be unique")
    return kept, skipped


def _check_splits(items):
    """``split`` decides the folds only when every item has one (an official split): on some
    items only, it would be ignored, so it is refused, naming an item with and one without."""
    with_split = [it for it in items if it.split]
    if with_split and len(with_split) != len(items):
        without = next(it for it in items if not it.split)
        raise EmotionMXError(f"'split' is set on {len(with_split)} of {len(items)} items (e.g. {with_split[0].id}) "
                             f"but not on {without.id}: set it on every item (an official train/valid/test "
                             "split) or on none (speaker-independent folds from 'group')")


def _fail_strict(skipped):
    item_id, reason = skipped[0]
    raise EmotionMXError(f"item {item_id}: {reason} (--strict; drop --strict to skip such items)")


def build_dataset(corpus, root, out, cfg=None, workers=1, folds=None, strict=False, progress=True,
                  limit=None):
    """Build (or resume) the feature store ``out`` from corpus ``corpus`` at ``root``.

    Returns the stats dict written to ``out/stats.json``.
    """
    cfg = cfg or DatasetConfig()
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise EmotionMXError(f"--limit must be an integer >= 1 (the number of items to build), got {limit!r}; "
                             "omit it to build every item")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise EmotionMXError(f"--workers must be an integer >= 1 (worker processes), got {workers!r}")
    if folds is not None:
        cfg = replace(cfg, splits=replace(cfg.splits, folds=folds))
    if not os.path.isdir(root):
        raise EmotionMXError(f"corpus root {root} does not exist or is not a folder")
    t0 = time.time()

    # 1. read the corpus
    items, skipped = read_items(corpus, root, cfg)
    if limit:
        items = items[:limit]
    if strict and skipped:
        _fail_strict(skipped)
    if not items:
        raise EmotionMXError(f"corpus '{corpus}' at {root}: no usable items "
                             f"({len(skipped)} skipped{': ' + skipped[0][1] if skipped else ''})")
    _check_splits(items)

    # 2. the output folder: a new build, or the resumption of one with the same settings, held
    #    under an exclusive lock until the build ends (a second build on it fails at once)
    ensure_output_dir(out, "--out")
    with _BuildLock(out):
        return _build_locked(corpus, root, out, cfg, items, skipped, workers, strict, progress, t0)


class _BuildLock:
    """Exclusive ``flock`` on ``out/.build.lock`` (released by the kernel if the process dies)."""

    def __init__(self, out):
        self.path = os.path.join(out, ".build.lock")
        self.fd = None

    def __enter__(self):
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            other = os.pread(self.fd, 64, 0).decode("ascii", "replace").strip() or "?"
            os.close(self.fd)
            raise EmotionMXError(f"{os.path.dirname(self.path)} is being built by another process "
                                 f"(pid {other}); wait for it to finish or use another --out") from None
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"{os.getpid()}\n".encode(), 0)
        return self

    def __exit__(self, *exc):
        os.close(self.fd)     # closing releases the lock


def _build_locked(corpus, root, out, cfg, items, skipped, workers, strict, progress, t0):
    os.makedirs(os.path.join(out, st.SHARD_DIR), exist_ok=True)
    meta_path = os.path.join(out, st.BUILD_META)
    chash = _config_hash(cfg, root)
    if os.path.exists(meta_path):
        prev = read_json(meta_path)
        if prev.get("config_hash") != chash:
            raise EmotionMXError(f"{out} holds a store built with other settings or another corpus root; "
                                 "use a new --out folder (or delete that one) to rebuild")
    write_json(meta_path, {"corpus": corpus, "root": os.path.realpath(root), "config_hash": chash,
                           "created": time.strftime("%Y-%m-%dT%H:%M:%S")})
    dump_config(cfg, os.path.join(out, st.CONFIG))
    st.clean_partial(out)
    index_path = os.path.join(out, st.INDEX)
    if os.path.exists(index_path):
        os.unlink(index_path)   # the store is being changed: unfinished until finalised again

    # 3. extract what no complete shard holds yet (with the same settings and unchanged media)
    done_meta = _existing(out, chash, {it.id: media_stamp(root, it) for it in items})
    pending = [it for it in items if it.id not in done_meta]
    resumed = len(items) - len(pending)
    if resumed:
        log.info("resuming: %d of %d items already in complete shards", resumed, len(items))
    extract_skipped = _extract(pending, root, cfg, out, workers, strict, progress, chash)
    skipped += extract_skipped

    # 4. finalise
    return finalise(out, corpus, root, cfg, items, skipped, resumed=resumed, seconds=time.time() - t0,
                    chash=chash)


def _existing(out, chash=None, stamps=None):
    """Item metadata from complete shards.

    A shard is removed (its items are extracted again) when it cannot be read, was written under
    other settings (``chash``), holds an item whose media or manifest row changed since
    (``stamps``: id -> :func:`media_stamp`), or repeats an item another shard already holds.
    """
    metas = {}
    for path in st.shard_paths(out):
        try:
            shard = st.read_shard_meta(path)
        except Exception:
            log.warning("removing unreadable shard %s (its items are extracted again)", path)
            os.unlink(path)
            continue
        why = None
        for item_id, m in shard.items():
            if chash is not None and m.get("config_hash") != chash:
                why = "it was written with other settings"
            elif stamps is not None and item_id in stamps and m.get("stamp") != stamps[item_id]:
                why = f"the media or manifest row of item {item_id} changed"
            elif item_id in metas:
                why = f"item {item_id} is already in {metas[item_id]['shard']}"
            if why:
                break
        if why:
            log.warning("removing shard %s (%s); its items are extracted again", path, why)
            os.unlink(path)
            continue
        for item_id, m in shard.items():
            m["shard"] = os.path.basename(path)
            metas[item_id] = m
    return metas


def _chunks(items, size):
    for i in range(0, len(items), size):
        yield items[i:i + size]


def _extract(pending, root, cfg, out, workers, strict, progress, chash=None):
    skipped = []
    chunks = list(_chunks(pending, max(1, cfg.shard_size)))
    bar = Progress(len(pending), "features", unit="item", enabled=progress and bool(pending))
    try:
        if workers <= 1:
            for i, chunk in enumerate(chunks):
                _, sk = _process_chunk(chunk, root, cfg, out, st.new_shard_name(i), chash)
                skipped += sk
                bar.update(len(chunk))
                if strict and sk:
                    _fail_strict(sk)
        else:
            ctx = multiprocessing.get_context("spawn")
            with cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_worker_init,
                                        initargs=(os.getpid(),)) as pool:
                futures = {pool.submit(_process_chunk, chunk, root, cfg, out, st.new_shard_name(i), chash):
                           len(chunk) for i, chunk in enumerate(chunks)}
                for fut in cf.as_completed(futures):
                    try:
                        _, sk = fut.result()
                    except cf.process.BrokenProcessPool:
                        for f in futures:
                            f.cancel()
                        raise EmotionMXError("a feature worker process died (killed, or out of memory); "
                                             "finished shards are kept: rerun the same command to resume "
                                             "(with fewer --workers if memory is short)") from None
                    skipped += sk
                    bar.update(futures[fut])
                    if strict and sk:
                        for f in futures:
                            f.cancel()
                        _fail_strict(sk)
    finally:
        bar.close()
    return skipped


def _fold_stats(metas, ids):
    """Mean/std per feature over the frames of ``ids`` (from the per-item running sums)."""
    acc = {}
    for i in ids:
        for key, s in metas[i]["sums"].items():
            a = acc.setdefault(key, [np.zeros(len(s["sum"])), np.zeros(len(s["sum"])), 0])
            a[0] += s["sum"]
            a[1] += s["sumsq"]
            a[2] += s["n"]
    out = {}
    for key, (s1, s2, n) in acc.items():
        mean = s1 / max(n, 1)
        std = np.sqrt(np.maximum(s2 / max(n, 1) - mean ** 2, 0.0))
        out[key] = {"mean": mean.tolist(), "std": np.maximum(std, 1e-5).tolist(), "frames": int(n)}
    return out


def built_modalities(meta):
    """The modalities whose features the build stored for an item (from its shard metadata), not
    the ones its manifest row names: a store built with audio and faces off is a text store."""
    shapes = meta.get("shapes", {})
    present = {"audio": any(k in shapes for k in NORM_FEATURES), "text": "tokens" in meta, "video": "frames" in shapes}
    return tuple(m for m in MODALITIES if present[m])


def finalise(out, corpus, root, cfg, items, skipped, resumed=0, seconds=0.0, chash=None):
    metas = _existing(out, chash)
    usable = [it for it in items if it.id in metas]
    # items in a shard but no longer in the corpus listing (e.g. --limit changed) are ignored
    if not usable:
        raise EmotionMXError(f"no item of corpus '{corpus}' could be extracted; first reason: "
                             f"{skipped[0][1] if skipped else 'unknown'}")

    # 4a. normalised manifest and labels
    write_manifest(os.path.join(out, st.MANIFEST), usable)
    keep = list(cfg.labels.keep)
    labels = [l for l in keep if any(it.label == l for it in usable)] if keep else \
        sorted({it.label for it in usable})
    write_json(os.path.join(out, st.LABELS), labels)

    # 4b. speaker-independent folds and the leakage check (fails the build)
    folds = make_folds(usable, k=cfg.splits.folds, seed=cfg.splits.seed)
    check_leakage(usable, folds)
    write_json(os.path.join(out, st.FOLDS), folds)

    # 4c. per-fold normalisation statistics and vocabularies, from each fold's train split only
    os.makedirs(os.path.join(out, st.NORM_DIR), exist_ok=True)
    os.makedirs(os.path.join(out, st.VOCAB_DIR), exist_ok=True)
    has_text = any("tokens" in metas[it.id] for it in usable)
    split_counts = []
    for f, fold in enumerate(folds["folds"]):
        sides = defaultdict(list)
        for it in usable:
            sides[split_of(it, fold)].append(it.id)
        split_counts.append({k: len(v) for k, v in sides.items()})
        write_json(st.norm_path(out, f), _fold_stats(metas, sides["train"]))
        if has_text:
            from .features.text import build_vocab, save_vocab
            vocab = build_vocab([metas[i]["tokens"] for i in sides["train"] if "tokens" in metas[i]],
                                min_freq=cfg.text.min_freq, max_size=cfg.text.max_vocab)
            save_vocab(vocab, st.vocab_path(out, f))

    # 4d. stats and, last, the index that marks the store complete
    align_err = [metas[it.id]["align_ref_error"] for it in usable if "align_ref_error" in metas[it.id]]
    face_rates = [metas[it.id]["flags"]["face_found"] for it in usable if "face_found" in metas[it.id]["flags"]]
    stats = {
        "corpus": corpus,
        "root": os.path.realpath(root),
        "items": len(usable),
        "skipped": len(skipped),
        "resumed_items": resumed,
        "labels": dict(sorted(Counter(it.label for it in usable).items())),
        "groups": dict(sorted(Counter(it.group for it in usable).items())),
        "splits_per_fold": split_counts,
        "modalities": dict(Counter("+".join(built_modalities(metas[it.id])) for it in usable)),
        "face_found_rate": float(np.mean(face_rates)) if face_rates else None,
        "aligned_items": sum(1 for it in usable if "words" in metas[it.id]),
        "align_failures": dict(Counter(metas[it.id]["flags"]["align_error"] for it in usable
                                       if "align_error" in metas[it.id]["flags"])),
        "align_error_vs_reference_ms": (float(np.mean([e["mean_ms"] for e in align_err])) if align_err else None),
        "skipped_items": [{"id": i, "reason": r} for i, r in skipped],
        "seconds": round(seconds, 2),
    }
    write_json(os.path.join(out, st.STATS), stats)
    index = {}
    for it in usable:
        m = metas[it.id]
        index[it.id] = {k: m[k] for k in ("shard", "shapes", "tokens", "words", "flags", "duration") if k in m}
    st.write_index(out, index)
    return stats
