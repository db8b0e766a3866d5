"""Frozen pretrained embeddings cached per layer inside a feature store.

Layout (owned by :class:`EmbeddingCache`, nothing else writes there)::

    STORE/embeddings/<cache name>/info.json        encoder, checkpoint + sha256, front end,
                                                    shape per item, pooling, complete flag
    STORE/embeddings/<cache name>/part-00000.npz   ids (N,) str, feats (N, L, D) float32

``<cache name>`` is the encoder name, plus ``-ctx<K>`` when text items were encoded with the
K preceding turns of their dialogue as context.  Per item, ``feats`` holds every hidden
state's pooled statistics over the real steps (Whisper frames, MiniLM tokens): mean and
standard deviation, ``(L, 2C)``; for the face model one "layer": the 128-d trunk embedding
followed by the 7 FER2013 logits, averaged over the item's frames.  Items are processed in
manifest order in fixed chunks; each chunk is written atomically, so an interrupted run
resumes at the first missing part.  Embeddings come from raw media (the manifest's paths
under the store's corpus root), not from the store's own features.
"""
import logging
import os
import re
import zipfile

import numpy as np

from ..errors import BadItem, EmotionMXError
from ..fileio import atomic_path, read_json, write_json
from ..manifest import resolve_media
from ..progress import Progress

__all__ = ["EmbeddingCache", "compute_embeddings", "load_embeddings", "EMBED_DIR", "dialogue_context"]

EMBED_DIR = "embeddings"
CHUNK = 64
FORMAT = 1
log = logging.getLogger(__name__)


class EmbeddingCache:
    """The ``STORE/embeddings/<name>/`` folder: parts, info, completeness."""

    def __init__(self, store_path, name):
        self.name = name
        self.dir = os.path.join(store_path, EMBED_DIR, name)

    def info_path(self):
        return os.path.join(self.dir, "info.json")

    def part_path(self, index):
        return os.path.join(self.dir, f"part-{index:05d}.npz")

    def read_info(self):
        if not os.path.isfile(self.info_path()):
            return None
        try:
            return read_json(self.info_path())
        except (OSError, ValueError) as e:
            raise EmotionMXError(f"{self.info_path()}: unreadable ({str(e).splitlines()[0]}); delete the "
                                 f"folder {self.dir} and run `emotion-mx embed` again") from None

    def write_info(self, info):
        write_json(self.info_path(), info)

    def has_part(self, index):
        return os.path.isfile(self.part_path(index))

    def write_part(self, index, ids, feats):
        with atomic_path(self.part_path(index)) as tmp:
            np.savez(tmp, ids=np.asarray(ids, dtype=str), feats=np.asarray(feats, np.float32))

    def read_part(self, index):
        """``(ids list, feats (N, L, D) float32)`` of part ``index``; EmotionMXError naming the
        part when it is unreadable (truncated, random bytes), inconsistent or holds NaN/inf."""
        path = self.part_path(index)
        try:
            with np.load(path, allow_pickle=False) as z:
                ids, feats = z["ids"], z["feats"]
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
            raise EmotionMXError(f"{path}: unreadable embedding part ({str(e).splitlines()[0] if str(e) else type(e).__name__})"
                                 f"; delete it and run `emotion-mx embed` again to recompute it") from None
        if ids.ndim != 1 or ids.dtype.kind != "U" or feats.ndim != 3 or feats.dtype != np.float32 \
                or len(ids) != len(feats) or not len(ids):
            raise EmotionMXError(f"{path}: not an embedding part (ids {ids.dtype}{list(ids.shape)}, feats "
                                 f"{feats.dtype}{list(feats.shape)}); delete it and run `emotion-mx embed` again")
        if not np.isfinite(feats).all():
            bad = ids[int(np.argwhere(~np.isfinite(feats))[0][0])]
            raise EmotionMXError(f"{path}: the embedding of item {bad} holds NaN or inf; delete the part "
                                 "and run `emotion-mx embed` again to recompute it")
        return ids.tolist(), feats

    def read(self):
        """``(ids list, feats (N, L, D) float32, info)`` of a complete cache."""
        info = self.read_info()
        if not isinstance(info, dict) or not info.get("complete"):
            raise EmotionMXError(f"{self.dir}: no complete embedding cache; run "
                                 f"`emotion-mx embed --data STORE --encoder {info.get('encoder', 'NAME') if isinstance(info, dict) else 'NAME'}` first")
        parts = info.get("parts")
        if isinstance(parts, bool) or not isinstance(parts, int) or parts < 1:
            raise EmotionMXError(f"{self.info_path()}: 'parts' is {parts!r}, not a count of parts; "
                                 "delete the folder and run `emotion-mx embed` again")
        ids, feats = [], []
        for i in range(parts):
            if not self.has_part(i):
                raise EmotionMXError(f"{self.part_path(i)} is missing; run `emotion-mx embed` again to recompute it")
            part_ids, part_feats = self.read_part(i)
            if feats and part_feats.shape[1:] != feats[0].shape[1:]:
                raise EmotionMXError(f"{self.part_path(i)}: embeddings of shape {list(part_feats.shape[1:])}, "
                                     f"other parts have {list(feats[0].shape[1:])}; delete it and run "
                                     "`emotion-mx embed` again")
            ids += part_ids
            feats.append(part_feats)
        return ids, np.concatenate(feats), info


def dialogue_context(items, turns):
    """``{item id: [texts of up to ``turns`` preceding turns]}`` for ids ``<dialogue>_<turn>``.

    Only the transcripts of earlier turns are used (never their labels)."""
    by_dialogue = {}
    for it in items:
        m = re.fullmatch(r"(.+)_(\d+)", it.id)
        if m and it.text:
            by_dialogue.setdefault(m.group(1), []).append((int(m.group(2)), it.id, it.text))
    out = {}
    for rows in by_dialogue.values():
        rows.sort()
        for k, (_, item_id, _) in enumerate(rows):
            out[item_id] = [t for _, _, t in rows[max(0, k - turns):k]]
    return out


class _Embedder:
    """Raw media of a batch of items -> ``(N, L, D)`` pooled per-layer features."""

    def __init__(self, name, checkpoint, store, context_turns):
        import mxnet as mx
        from .loader import encoder_info, load_encoder, load_tokenizer
        self.mx = mx
        self.info = encoder_info(name)
        self.kind = self.info["kind"]
        self.net = load_encoder(name, checkpoint)
        self.net.hybridize(static_alloc=True)
        self.root = store.media_root()
        self.face_cfg = store.preprocessing().get("face", {})
        self.trim_db = store.preprocessing().get("audio", {}).get("trim_db")
        self.context = None
        if self.kind == "minilm":
            self.tok = load_tokenizer()
            if context_turns:
                self.context = dialogue_context(store.items, context_turns)

    def front_end(self):
        if self.kind == "whisper":
            from ..features.whisper_frontend import WHISPER_FRONTEND
            return dict(WHISPER_FRONTEND, trim_db=self.trim_db)
        if self.kind == "minilm":
            return {"tokenizer": "tokenizer.json (WordPiece, uncased)", "max_length": self.tok.max_length}
        return {"size": 64, "grayscale": True, "scale": "x / 255 * 2 - 1",
                "detect": bool(self.face_cfg.get("detect", True)), "frames": "mean over an item's frames"}

    def __call__(self, items):
        return getattr(self, f"_{self.kind}")(items)

    def _pool(self, states, mask):
        from ..models.layer_head import layer_stats
        return layer_stats(self.mx.nd, states, mask).asnumpy()                 # (N, L, 2C)

    def _whisper(self, items):
        from ..features.audio import load_audio
        from ..features.whisper_frontend import whisper_logmel
        mels = []
        for it in items:
            wave = load_audio(resolve_media(self.root, it.audio, it.id), 16000, it.start, it.end,
                              max_seconds=30.0, trim_db=self.trim_db)
            mels.append(whisper_logmel(wave)[:3000])
        T = max(len(m) for m in mels)
        x, mask = np.zeros((len(mels), T, 80), np.float32), np.zeros((len(mels), T), np.float32)
        for i, m in enumerate(mels):
            x[i, :len(m)], mask[i, :len(m)] = m, 1.0
        states, m = self.net(self.mx.nd.array(x), self.mx.nd.array(mask))    # (N, L, T', C)
        return self._pool(states, m)

    def _minilm(self, items, sub_batch=16):
        """Texts sorted by length into sub-batches of 16 (little padding), results in item order."""
        order = sorted(range(len(items)), key=lambda i: len(items[i].text or ""))
        out = [None] * len(items)
        for a in range(0, len(order), sub_batch):
            idx = order[a:a + sub_batch]
            for i, f in zip(idx, self._minilm_batch([items[i] for i in idx])):
                out[i] = f
        return np.stack(out)

    def _minilm_batch(self, items):
        texts = [it.text or "" for it in items]
        if self.context is None:
            ids, mask = self.tok(texts)
            states, _ = self.net(self.mx.nd.array(ids), self.mx.nd.array(mask))
            return self._pool(states, self.mx.nd.array(mask))
        # context: "[CLS] earlier turns [SEP] this turn [SEP]"; pooled over this turn's tokens only
        rows, pools = [], []
        for it, text in zip(items, texts):
            cur = self.tok.tok.encode(text).ids                                 # [CLS] ... [SEP]
            ctx = self.tok.tok.encode(" ".join(self.context.get(it.id, []))).ids[1:-1]
            budget = max(0, self.tok.max_length - len(cur) - 1)
            ctx = ctx[len(ctx) - budget:] if budget else []                     # keep the latest turns
            seq = ([cur[0]] + ctx + [cur[-1]] + cur[1:]) if ctx else cur
            rows.append(seq)
            pools.append((len(seq) - len(cur) + 1, len(seq) - 1) if ctx else (1, len(seq) - 1))
        L = max(len(r) for r in rows)
        ids, mask, pool = (np.zeros((len(rows), L), np.float32) for _ in range(3))
        for i, (r, (a, b)) in enumerate(zip(rows, pools)):
            ids[i, :len(r)], mask[i, :len(r)], pool[i, a:b] = r, 1.0, 1.0
        states, _ = self.net(self.mx.nd.array(ids), self.mx.nd.array(mask))
        return self._pool(states, self.mx.nd.array(pool))

    def _fer(self, items):
        from ..features.face import extract_faces
        from ..models.fer_xception import fer_preprocess
        out = []
        for it in items:
            media = it.image or it.video
            faces = extract_faces(resolve_media(self.root, media, it.id), is_image=bool(it.image),
                                  start=it.start, end=it.end, num_frames=self.face_cfg.get("num_frames", 8),
                                  size=64, grayscale=True, margin=self.face_cfg.get("margin", 0.2),
                                  detect=self.face_cfg.get("detect", True),
                                  min_face=self.face_cfg.get("min_face", 24),
                                  detector=self.face_cfg.get("detector", "haar"),
                                  detector_model=self.face_cfg.get("detector_model"))
            emb, logits = self.net(self.mx.nd.array(fer_preprocess(faces["frames"][:, 0])))
            out.append(np.concatenate([emb.asnumpy(), logits.asnumpy()], axis=1).mean(0)[None])  # (1, 135)
        return np.stack(out)                                                   # (N, 1, 135)


def _wanted(item, kind):
    return {"whisper": bool(item.audio), "minilm": item.text is not None,
            "fer": bool(item.image or item.video)}[kind]


def compute_embeddings(store, encoder, checkpoint=None, context_turns=0, progress=True):
    """Fill ``STORE/embeddings/<encoder>[-ctxK]/``; returns ``(cache, stats dict)``.

    ``store``: a :class:`~emotion_mx.data.FeatureStore`.  Resumes a partial cache when its
    checkpoint hash and settings match; refuses (one line) to mix another checkpoint in.
    ``progress``: a bar on a terminal, else a line now and then (:class:`~emotion_mx.progress.Progress`)."""
    from .loader import encoder_info
    from .sources import checkpoint_path, file_sha256
    info = encoder_info(encoder)
    if context_turns and info["kind"] != "minilm":
        raise EmotionMXError("--context-turns applies to text encoders (minilm_l6) only")
    cache = EmbeddingCache(store.path, encoder + (f"-ctx{context_turns}" if context_turns else ""))
    path = checkpoint_path(encoder, checkpoint)
    sha = file_sha256(path)
    items = [it for it in store.items if _wanted(it, info["kind"])]
    if not items:
        raise EmotionMXError(f"{store.path}: no item has {info['modality']} for {encoder}")
    n_parts = (len(items) + CHUNK - 1) // CHUNK
    old = cache.read_info()
    if old is not None and (old.get("checkpoint_sha256") != sha or old.get("items") != len(items)
                            or old.get("format") != FORMAT):
        raise EmotionMXError(f"{cache.dir} holds embeddings of another checkpoint or item list; "
                             "delete that folder to recompute")
    embedder = _Embedder(encoder, checkpoint, store, context_turns)
    meta = dict(format=FORMAT, encoder=encoder, modality=info["modality"], checkpoint=os.path.abspath(path),
                checkpoint_sha256=sha, licence=info["licence"], front_end=embedder.front_end(),
                pooling="mean" if info["kind"] == "fer" else "mean+std", num_states=info["num_states"],
                context_turns=int(context_turns), items=len(items), parts=n_parts, chunk=CHUNK,
                complete=False)
    cache.write_info(meta)
    done = skipped = 0
    bar = Progress(len(items), f"embed {encoder}", unit="item", enabled=progress)
    for p in range(n_parts):
        chunk = items[p * CHUNK:(p + 1) * CHUNK]
        if cache.has_part(p):
            try:          # a part left by an earlier run is reused only if it is whole and finite
                ids, _ = cache.read_part(p)
                if ids == [it.id for it in chunk]:
                    bar.update(len(chunk))
                    continue
                reason = "its items are not this chunk's"
            except EmotionMXError as e:
                reason = str(e)
            log.warning("recomputing %s: %s", cache.part_path(p), reason)
        try:
            feats = embedder(chunk)
        except BadItem as e:
            raise EmotionMXError(f"cannot embed: {e}") from None
        if not np.isfinite(feats).all():
            bad = chunk[int(np.argwhere(~np.isfinite(feats))[0][0])].id
            raise EmotionMXError(f"{encoder} gave NaN or inf embeddings for item {bad}; check its media "
                                 "and the checkpoint")
        cache.write_part(p, [it.id for it in chunk], feats)
        done += len(chunk)
        bar.update(len(chunk))
    bar.close()
    skipped = len(items) - done
    meta.update(complete=True, shape=list(cache.read_part(0)[1].shape[1:]))
    cache.write_info(meta)
    return cache, {"items": len(items), "computed": done, "reused": skipped}


def load_embeddings(store, name):
    """``{item id: (L, D) float32}`` and the info of a complete cache ``name``."""
    ids, feats, info = EmbeddingCache(store.path, name).read()
    return dict(zip(ids, feats)), info
