"""Reading a finished feature store into model-ready arrays.

The arrays follow the model-input contract (docs/DESIGN.md): per modality a value tensor and a
float mask, padded to fixed lengths (static shapes for hybridized graphs), normalised with the
statistics of the fold's training split.  A modality an item lacks is all zeros with an
all-zero mask: the model treats it as missing.
"""
import os

import numpy as np

from . import store as st
from .contract import check_modalities
from .errors import EmotionMXError
from .fileio import read_json
from .manifest import read_manifest
from .splits import split_of

AUDIO_FEATURES = ("logmel", "mfcc", "logmel+prosody", "mfcc+prosody", "logmel+mfcc+prosody")
MAX_AUDIO_FRAMES = 1500   # 15 s at a 10 ms hop: longer utterances are cut
MAX_TOKENS = 128
AUDIO_NORMS = ("fold", "utterance")
# The settings that decide how stored features become model inputs.  Runs, sidecars and every
# reader of them pass exactly these (see load_settings); add a new one here, once.
LOAD_KEYS = ("audio_feature", "audio_norm", "max_audio_frames", "max_tokens", "num_frames")


def load_settings(mapping):
    """The :data:`LOAD_KEYS` of a run spec, sidecar ``features`` or settings dict (None dropped)."""
    mapping = mapping or {}
    return {k: mapping[k] for k in LOAD_KEYS if mapping.get(k) is not None}


class FeatureStore:
    """A finished store written by :func:`emotion_mx.build.build_dataset`."""

    def __init__(self, path):
        self.path = path
        if not os.path.isdir(path):
            raise EmotionMXError(f"feature store {path} does not exist; build it with tools/build_dataset.py")
        if not os.path.isfile(os.path.join(path, st.INDEX)):
            raise EmotionMXError(f"feature store {path} is incomplete (no {st.INDEX}); run "
                                 "tools/build_dataset.py again with the same arguments to finish it")
        self.index = read_json(os.path.join(path, st.INDEX))
        self.labels = read_json(os.path.join(path, "labels.json"))
        self.folds = read_json(os.path.join(path, "folds.json"))
        self.items = [it for it in read_manifest(os.path.join(path, "manifest.jsonl")) if it.id in self.index]
        self.by_id = {it.id: it for it in self.items}
        self.label_index = {l: i for i, l in enumerate(self.labels)}
        self._shards = st.ShardCache(path)

    @property
    def num_folds(self):
        return len(self.folds["folds"])

    def _fold(self, fold):
        if not 0 <= fold < self.num_folds:
            raise EmotionMXError(f"fold {fold} does not exist; {self.path} has folds 0..{self.num_folds - 1}")
        return self.folds["folds"][fold]

    def ids(self, fold, split):
        fd = self._fold(fold)
        return [it.id for it in self.items if split_of(it, fd) == split and it.label in self.label_index]

    def norm(self, fold):
        self._fold(fold)
        return read_json(os.path.join(self.path, "norm", f"fold{fold}.json"))

    def vocab(self, fold):
        path = os.path.join(self.path, "vocab", f"fold{fold}.json")
        if not os.path.isfile(path):
            return None
        from .features.text import load_vocab
        return load_vocab(path)

    def has(self, item_id, feature):
        return feature in self.index[item_id].get("shapes", {})

    def array(self, item_id, feature):
        return self._shards.get(self.index[item_id]["shard"], item_id, feature)

    def tokens(self, item_id):
        return self.index[item_id].get("tokens")

    # -- settings shared by every split, so that train/valid/test arrays have one shape ------
    def resolve_settings(self, modalities, audio_feature="logmel", max_audio_frames=None,
                         max_tokens=None, num_frames=None, audio_norm="fold"):
        if audio_feature not in AUDIO_FEATURES:
            raise EmotionMXError(f"unknown audio_feature '{audio_feature}'; choose from {', '.join(AUDIO_FEATURES)}")
        if audio_norm not in AUDIO_NORMS:
            raise EmotionMXError(f"unknown audio_norm '{audio_norm}'; choose from {', '.join(AUDIO_NORMS)}")
        shapes = [e.get("shapes", {}) for e in self.index.values()]
        out = {"modalities": list(modalities), "audio_feature": audio_feature, "audio_norm": audio_norm,
               "preprocessing": self.preprocessing()}
        if "audio" in modalities:
            ts = [s["logmel"][0] for s in shapes if "logmel" in s]
            if not ts:
                raise EmotionMXError(f"{self.path} has no audio features; drop 'audio' from the modalities")
            out["max_audio_frames"] = int(max_audio_frames or min(max(ts), MAX_AUDIO_FRAMES))
        if "text" in modalities:
            ls = [len(e["tokens"]) for e in self.index.values() if e.get("tokens")]
            if not ls:
                raise EmotionMXError(f"{self.path} has no transcripts; drop 'text' from the modalities")
            out["max_tokens"] = int(max_tokens or min(max(ls), MAX_TOKENS))
        if "video" in modalities:
            fs = [s["frames"] for s in shapes if "frames" in s]
            if not fs:
                raise EmotionMXError(f"{self.path} has no face frames; drop 'video' from the modalities")
            out["num_frames"] = int(num_frames or max(f[0] for f in fs))
            out["frame_channels"], out["frame_size"] = int(fs[0][1]), int(fs[0][2])
        return out

    def preprocessing(self):
        """The raw-media settings the store was built with (audio/text/face/align sections of its
        config.yaml): prediction from raw media must repeat them exactly."""
        import yaml
        with open(os.path.join(self.path, "config.yaml"), encoding="utf-8") as f:
            cfg = yaml.safe_load(f) or {}
        return {k: cfg[k] for k in ("audio", "text", "face", "align") if k in cfg}

    def audio_dim(self, audio_feature):
        first = next(i for i, e in self.index.items() if "logmel" in e.get("shapes", {}))
        return sum(self.index[first]["shapes"][k][1] for k in audio_feature.split("+"))


def data_spec(store, fold, modalities, **settings):
    """Feature-dependent model keyword arguments plus the resolved data settings."""
    modalities = check_modalities(modalities)
    s = store.resolve_settings(modalities, **settings)
    spec = {"settings": s, "model_kwargs": {}}
    kw = spec["model_kwargs"]
    if "audio" in modalities:
        kw["audio_dim"] = store.audio_dim(s["audio_feature"])
        kw["audio_frames"] = s["max_audio_frames"]
    if "text" in modalities:
        vocab = store.vocab(fold)
        kw["vocab_size"] = len(vocab)
        kw["max_tokens"] = s["max_tokens"]
    if "video" in modalities:
        kw["num_frames"] = s["num_frames"]
        kw["frame_size"] = s["frame_size"]
        kw["frame_channels"] = s["frame_channels"]
    return spec


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
    prepare inputs identically.  ``settings``: the resolved data settings (see data_spec)."""
    modalities = check_modalities(modalities)
    n = len(items)
    inputs = {}
    if "audio" in modalities:
        parts = settings["audio_feature"].split("+")
        mean = np.concatenate([np.asarray(norm[p]["mean"], np.float32) for p in parts])
        std = np.concatenate([np.asarray(norm[p]["std"], np.float32) for p in parts])
        T, D = settings["max_audio_frames"], len(mean)
        x, m = np.zeros((n, T, D), np.float32), np.zeros((n, T), np.float32)
        for i, it in enumerate(items):
            if all(p in it for p in parts):
                feats = np.concatenate([it[p] for p in parts], axis=1)                       # (T_i, D)
                x[i], m[i] = _fit((feats - mean) / std, T)
                if settings.get("audio_norm") == "utterance" and m[i].any():
                    # per-utterance mean removal (speaker/channel offsets), on real frames only
                    x[i] -= (x[i] * m[i][:, None]).sum(0) / m[i].sum()
                x[i] *= m[i][:, None]
        inputs["audio"], inputs["audio_mask"] = x, m                                      # (N, T, D), (N, T)
    if "text" in modalities:
        L = settings["max_tokens"]
        x, m = np.zeros((n, L), np.float32), np.zeros((n, L), np.float32)
        for i, it in enumerate(items):
            toks = it.get("tokens")
            if toks:
                ids_i = np.asarray(vocab[list(toks[:L])], np.float32)
                x[i, :len(ids_i)], m[i, :len(ids_i)] = ids_i, 1.0
        inputs["text"], inputs["text_mask"] = x, m                                        # (N, L), (N, L)
    if "video" in modalities:
        N, C, S = settings["num_frames"], settings["frame_channels"], settings["frame_size"]
        mean, std = norm["frames"]["mean"][0], norm["frames"]["std"][0]
        x, m = np.zeros((n, N, C, S, S), np.float32), np.zeros((n, N), np.float32)
        for i, it in enumerate(items):
            if "frames" in it:
                frames = it["frames"].astype(np.float32) / 255.0                              # (N_i, C, S, S)
                x[i], m[i] = _fit((frames - mean) / std, N)
                x[i] *= m[i][:, None, None, None]
        inputs["video"], inputs["video_mask"] = x, m                                      # (N, F, C, S, S), (N, F)
    return inputs


def load_arrays(store, ids, modalities, *, fold, audio_feature="logmel", max_audio_frames=None,
                max_tokens=None, num_frames=None, audio_norm="fold", norm=None, vocab=None):
    """Model inputs for ``ids``: ``(inputs: dict name → ndarray, labels: int32 (N,))``.

    ``norm``/``vocab`` default to the fold's (training-split) statistics and vocabulary; a
    trained run passes its own copies so that evaluation uses exactly what training used.
    """
    modalities = check_modalities(modalities)
    settings = store.resolve_settings(modalities, audio_feature, max_audio_frames, max_tokens, num_frames,
                                      audio_norm)
    norm = norm if norm is not None else store.norm(fold)
    if "text" in modalities and vocab is None:
        vocab = store.vocab(fold)
    wanted = {"audio": tuple(settings["audio_feature"].split("+")), "video": ("frames",)}
    items = []
    for item_id in ids:
        it = {f: store.array(item_id, f) for m in modalities for f in wanted.get(m, ())
              if store.has(item_id, f)}
        if "text" in modalities:
            it["tokens"] = store.tokens(item_id)
        items.append(it)
    inputs = assemble_inputs(items, modalities, settings, norm, vocab)
    labels = np.array([store.label_index[store.by_id[i].label] for i in ids], dtype=np.int32)
    return inputs, labels
