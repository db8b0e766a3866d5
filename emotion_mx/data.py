"""Reading a finished feature store into model-ready arrays.

The arrays follow the model-input contract (:mod:`emotion_mx.contract`): per modality a value
tensor and a float mask, padded to fixed lengths (static shapes for hybridized graphs),
normalised with the statistics of the fold's training split.  A modality an item lacks is all
zeros with an all-zero mask: the model treats it as missing.

:func:`load_split` is the one way to read a split: it takes :class:`~emotion_mx.store.DataSettings`
resolved once (by training from the store, or read back from a run or an export).
"""
from dataclasses import dataclass
from typing import Dict, List, Optional

import numpy as np

from .contract import check_modalities
from .errors import EmotionMXError
from .store import SELF_NORMALISED, DataSettings, FeatureStore  # noqa: F401  (FeatureStore: re-exported)

@dataclass
class Split:
    """Model inputs (name → array with N rows) and int labels (N,) of one data split."""
    inputs: Dict[str, np.ndarray]
    labels: np.ndarray
    ids: Optional[List[str]] = None
    teacher_logits: Optional[np.ndarray] = None   # (N, K) soft targets for distillation
    teacher_features: Optional[np.ndarray] = None  # (N, D) for feature-level distillation

    def __post_init__(self):
        self.labels = np.asarray(self.labels, dtype=np.int32)
        if self.teacher_logits is not None and len(self.teacher_logits) != len(self.labels):
            raise ValueError("teacher_logits and labels differ in length")
        bad = {k: v.shape[0] for k, v in self.inputs.items() if v.shape[0] != len(self.labels)}
        if bad:
            raise ValueError(f"inputs and labels differ in length: {bad} vs {len(self.labels)}")

    def __len__(self):
        return len(self.labels)

    def take(self, idx):
        return {k: v[idx] for k, v in self.inputs.items()}, self.labels[idx]

    def subset(self, idx):
        inputs, labels = self.take(idx)
        ids = [self.ids[i] for i in idx] if self.ids is not None else None
        teacher = self.teacher_logits[idx] if self.teacher_logits is not None else None
        feats = self.teacher_features[idx] if self.teacher_features is not None else None
        return Split(inputs, labels, ids, teacher, feats)


def data_spec(store, fold, modalities, **settings):
    """Feature-dependent model keyword arguments plus the resolved data settings."""
    s = store.resolve_settings(modalities, **settings)
    kw = {}
    if "audio" in s.modalities:
        kw["audio_dim"], kw["audio_frames"] = store.audio_dim(s.audio_feature), s.max_audio_frames
    if "text" in s.modalities:
        vocab = store.text_vocab(fold, s)
        kw["vocab_size"] = vocab.tok.get_vocab_size() if s.text_ids == "wordpiece" else len(vocab)
        kw["max_tokens"] = s.max_tokens
    if "video" in s.modalities:
        kw.update(num_frames=s.num_frames, frame_size=s.frame_size, frame_channels=s.frame_channels)
    return {"settings": s, "model_kwargs": kw}


def _fit(x, length):
    """Cut or zero-pad ``x`` along axis 0 to ``length``; returns (x, mask)."""
    n = min(len(x), length)
    out = np.zeros((length,) + x.shape[1:], dtype=np.float32)
    out[:n] = x[:n]
    mask = np.zeros(length, dtype=np.float32)
    mask[:n] = 1.0
    return out, mask


def assemble_inputs(items, modalities, settings, norm, vocab=None):
    """Model inputs from per-item features: ``items`` is a list of dicts that may hold
    ``logmel``/``mfcc``/``prosody`` (T, F) arrays, ``tokens`` (list of str) and ``frames``
    (N, C, S, S) uint8.  Shared by store loading and by prediction from raw media, so both
    prepare inputs identically.  ``settings``: :class:`DataSettings` (or a mapping of its fields)."""
    modalities = check_modalities(modalities)
    if not isinstance(settings, DataSettings):
        settings = DataSettings(**dict(settings, modalities=modalities))
    n = len(items)
    inputs = {}
    if "audio" in modalities:
        parts = settings.audio_feature.split("+")
        if parts[0] in SELF_NORMALISED:          # Whisper's log-mel: its front end normalises it
            from .features.whisper_frontend import WHISPER_FRONTEND
            mean, std = np.float32(0.0), np.float32(1.0)
            D = WHISPER_FRONTEND["n_mels"]
        else:
            mean = np.concatenate([np.asarray(norm[p]["mean"], np.float32) for p in parts])
            std = np.concatenate([np.asarray(norm[p]["std"], np.float32) for p in parts])
            D = len(mean)
        T = settings.max_audio_frames
        x, m = np.zeros((n, T, D), np.float32), np.zeros((n, T), np.float32)
        for i, it in enumerate(items):
            if all(p in it for p in parts):
                feats = np.concatenate([it[p] for p in parts], axis=1)                       # (T_i, D)
                x[i], m[i] = _fit((feats - mean) / std, T)
                if settings.audio_norm == "utterance" and m[i].any():
                    # per-utterance mean removal (speaker/channel offsets), on real frames only
                    x[i] -= (x[i] * m[i][:, None]).sum(0) / m[i].sum()
                x[i] *= m[i][:, None]
        inputs["audio"], inputs["audio_mask"] = x, m                                      # (N, T, D), (N, T)
    if "text" in modalities:
        L = settings.max_tokens
        x, m = np.zeros((n, L), np.float32), np.zeros((n, L), np.float32)
        if settings.text_ids == "wordpiece":
            # MiniLM's WordPiece over the stored word/punctuation tokens ([CLS] ... [SEP]); the
            # model is uncased and splits punctuation itself, so the joined tokens are its input
            have = [i for i, it in enumerate(items) if it.get("tokens")]
            if have:
                ids, mask = vocab([" ".join(items[i]["tokens"]) for i in have], length=L)
                x[have], m[have] = ids, mask
        else:
            for i, it in enumerate(items):
                toks = it.get("tokens")
                if toks:
                    ids_i = np.asarray(vocab[list(toks[:L])], np.float32)
                    x[i, :len(ids_i)], m[i, :len(ids_i)] = ids_i, 1.0
        inputs["text"], inputs["text_mask"] = x, m                                        # (N, L), (N, L)
    if "video" in modalities:
        N, C, S = settings.num_frames, settings.frame_channels, settings.frame_size
        # [-1, 1] for the pretrained face model, else the training split's pixel statistics
        mean, std = (0.5, 0.5) if settings.frame_norm == "symmetric" else (norm["frames"]["mean"][0],
                                                                            norm["frames"]["std"][0])
        x, m = np.zeros((n, N, C, S, S), np.float32), np.zeros((n, N), np.float32)
        for i, it in enumerate(items):
            if "frames" in it:
                frames = it["frames"].astype(np.float32) / 255.0                              # (N_i, C, S, S)
                x[i], m[i] = _fit((frames - mean) / std, N)
                x[i] *= m[i][:, None, None, None]
        inputs["video"], inputs["video_mask"] = x, m                                      # (N, F, C, S, S), (N, F)
    return inputs


def load_arrays(store, ids, modalities, *, fold, norm=None, vocab=None, **settings):
    """Model inputs for ``ids``: ``(inputs: dict name → ndarray, labels: int32 (N,))``, with
    ``settings`` (keywords of :meth:`FeatureStore.resolve_settings`) resolved here."""
    split = load_split(store, fold, None, store.resolve_settings(modalities, **settings), norm=norm,
                       vocab=vocab, ids=ids)
    return split.inputs, split.labels


def load_split(store, fold, split, settings, *, norm=None, vocab=None, ids=None):
    """:class:`Split` ``split`` ('train', 'valid', 'test') of fold ``fold`` (or exactly ``ids``)
    prepared with ``settings``.  ``norm``/``vocab`` default to the fold's (training-split)
    statistics and vocabulary; a trained run passes its own copies."""
    if ids is None:
        ids = store.ids(fold, split)
        if not ids:
            raise EmotionMXError(f"{store.path}: fold {fold} has no {split} items")
    modalities = settings.modalities
    norm = norm if norm is not None else store.norm(fold)
    if "text" in modalities and vocab is None:
        vocab = store.text_vocab(fold, settings)
    wanted = {"audio": tuple(settings.audio_feature.split("+")), "video": ("frames",)}
    items = []
    for item_id in ids:
        it = {f: store.array(item_id, f) for m in modalities for f in wanted.get(m, ())
              if store.has(item_id, f)}
        if "text" in modalities:
            it["tokens"] = store.tokens(item_id)
        items.append(it)
    inputs = assemble_inputs(items, modalities, settings, norm, vocab)
    labels = np.array([store.label_index[store.by_id[i].label] for i in ids], dtype=np.int32)
    return Split(inputs, labels, list(ids))
