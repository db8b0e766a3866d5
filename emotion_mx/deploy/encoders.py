"""Deployment of the pretrained encoders (Whisper, MiniLM, mini-Xception): classifier graphs to
export, real calibration inputs, INT8 of any exported folder and its structure.

* :func:`encoder_classifier` — ``(net, ModelSpec)``: an encoder preset (checkpoint weights, or
  random weights and an optional smaller architecture for unit tests) +
  :class:`~emotion_mx.models.layer_head.EncoderClassifier`, ready for
  :func:`emotion_mx.artifacts.export_block` (the same graph shape a trained pretrained run exports);
* :func:`real_inputs` — real inputs per encoder (EmoDB log-mel, ISEAR WordPieces, CK+ faces) for
  calibration and agreement, :func:`group_split` speaker/subject-disjoint splits;
* :func:`quantize_exported` — MXNet oneDNN INT8 (:func:`~emotion_mx.deploy.quantize.quantize_symbol`)
  of an exported fp32 folder into a new exported folder: works on any symbol/params + sidecar,
  so on the exported pretrained runs too;
* :func:`choose_int8` — the exclusion-set search of :func:`~emotion_mx.deploy.quantize.search_int8`
  on an exported folder (:func:`~emotion_mx.deploy.quantize.int8_structure` says which layers ran
  INT8; both live in ``deploy/quantize.py``, re-exported here).
"""
import os

import numpy as np

from .. import artifacts as A
from ..contract import input_shapes
from ..errors import EmotionMXError
from .quantize import (AGREEMENT_FLOOR, DEFAULT_EXCLUDED_OPS, INT8_CANDIDATES, KEEP_FP32_OPS,  # noqa: F401 (re-exported)
                       int8_structure, quantize_symbol, search_int8, sidecar_record)

__all__ = ["encoder_classifier", "real_inputs", "group_split", "quantize_exported", "int8_structure", "choose_int8",
           "pooled_features", "fit_head", "LENGTHS"]

MODALITY = {"whisper": "audio", "minilm": "text", "fer": "video"}
# input lengths of the exported graphs: EmoDB clips are 2.0 s (200 Whisper frames), MiniLM
# sentences up to 32 WordPieces, 4 face frames of 64x64
LENGTHS = dict(audio_frames=200, audio_dim=80, max_tokens=32, num_frames=4, frame_channels=1, frame_size=64)
LABELS = ("anger", "happiness", "neutral", "sadness")


def encoder_classifier(name, num_classes=4, pretrained=True, arch=None, labels=None, **lengths):
    """``(EncoderClassifier, ModelSpec)`` for encoder preset ``name``.

    ``pretrained``: the checkpoint's weights (else random); ``arch``: overrides of the preset's
    architecture (a small random block for tests; not with ``pretrained``).  The head
    (mean + std over frames per layer, softmax layer weighting, linear) is randomly initialised.
    """
    import mxnet as mx
    from ..models.layer_head import EncoderClassifier, LayerWeightedHead
    from ..pretrained.loader import ENCODERS, build_encoder, encoder_info, load_encoder
    from ..store import DataSettings
    info = encoder_info(name)
    kind = info["kind"]
    if arch:
        if pretrained:
            raise ValueError("arch overrides need random weights (pretrained=False)")
        hp = dict(ENCODERS[name][2], **arch)
        encoder = ENCODERS[name][1](prefix=f"{name}_", **hp)
        encoder.initialize(mx.init.Xavier())
        states = hp["num_layers"] + 1 if kind != "fer" else 1
        units = hp["units"] if kind != "fer" else hp["block_channels"][-1]
    else:
        encoder = load_encoder(name) if pretrained else build_encoder(name)
        if not pretrained:
            encoder.initialize(mx.init.Xavier())
        states, units = info["num_states"], info["units"]
    face = kind == "fer"
    head = LayerWeightedHead(states, units * (1 if face else 2), int(num_classes), prefix="head_")
    head.initialize(mx.init.Xavier())
    net = EncoderClassifier(encoder, head, kind="face" if face else "sequence", prefix=f"{name}_clf_")
    mods = (MODALITY[kind],)
    f = dict(LENGTHS, **lengths)
    data = DataSettings(mods, max_audio_frames=f["audio_frames"], max_tokens=f["max_tokens"],
                        num_frames=f["num_frames"], frame_size=f["frame_size"], frame_channels=f["frame_channels"],
                        preprocessing={"audio": {"sample_rate": 16000, "n_mels": f["audio_dim"], "hop_ms": 10.0}})
    kwargs = {"vocab_size": int((arch or {}).get("vocab_size", info["arch"].get("vocab_size")))} if kind == "minilm" else {}
    labels = list(labels or LABELS[:num_classes])
    spec = A.ModelSpec(name=name, kwargs=kwargs, modalities=mods, num_classes=int(num_classes), labels=labels,
                       inputs=input_shapes(mods, **f), data=data)
    return net, spec


CORPUS = {"whisper": ("emodb", "emodb"), "minilm": ("isear", "isear"), "fer": ("ckplus", "ckplus48")}


def real_inputs(kind, data_dir, limit=None, stride=1, lengths=None):
    """Real inputs of an encoder kind from the shared data: ``(inputs, labels, groups)``.

    ``whisper``: EmoDB clips resampled to 16 kHz (librosa), Whisper log-mel cut or padded to
    ``audio_frames``; ``minilm``: ISEAR texts, WordPieces cut or padded to ``max_tokens``;
    ``fer``: CK+48 faces resized to 64x64 (OpenCV), ``(N, 1, 1, 64, 64)`` in [-1, 1] (one frame
    per item).  ``inputs``: dict in the contract's input order; ``groups``: speaker / respondent /
    subject (for group-disjoint splits); every ``stride``-th item up to ``limit`` items.
    """
    from ..corpora.registry import read_corpus
    reader, folder = CORPUS[kind]
    root = os.path.join(data_dir, folder)
    if not os.path.isdir(root):
        raise EmotionMXError(f"{root}: not found (set EMOTION_MX_DATA to the shared data folder)")
    items, _ = read_corpus(reader, root)
    items = items[::stride][:limit]
    f = dict(LENGTHS, **(lengths or {}))
    if kind == "whisper":
        import librosa
        from ..features.whisper_frontend import whisper_logmel
        T = f["audio_frames"]
        x, m = np.zeros((len(items), T, 80), np.float32), np.zeros((len(items), T), np.float32)
        for i, it in enumerate(items):
            wave, _ = librosa.load(os.path.join(root, it.audio), sr=16000)
            mel = whisper_logmel(wave)[:T]
            x[i, :len(mel)], m[i, :len(mel)] = mel, 1.0
        inputs = {"audio": x, "audio_mask": m}
    elif kind == "minilm":
        from ..pretrained.loader import load_tokenizer
        ids, mask = load_tokenizer(max_length=f["max_tokens"])([it.text for it in items], length=f["max_tokens"])
        inputs = {"text": ids, "text_mask": mask}
    else:
        import cv2
        from ..models.fer_xception import fer_preprocess
        faces = [cv2.resize(cv2.imread(os.path.join(root, it.image), cv2.IMREAD_GRAYSCALE), (64, 64))
                 for it in items]
        inputs = {"video": fer_preprocess(np.stack(faces))[:, None], "video_mask": np.ones((len(items), 1), np.float32)}
    return inputs, [it.label for it in items], [it.group for it in items]


def group_split(groups, parts=5):
    """``(train, valid, test)`` index arrays, group-disjoint: of the sorted groups, every
    ``parts``-th is test, the next valid, the rest train."""
    names = sorted(set(groups))
    role = {g: ("test" if i % parts == 0 else "valid" if i % parts == 1 else "train") for i, g in enumerate(names)}
    r = np.array([role[g] for g in groups])
    return tuple(np.where(r == k)[0] for k in ("train", "valid", "test"))


def _fp32_folder(fp32_dir):
    sidecar = A.read_sidecar(fp32_dir)
    if sidecar.get("precision") != "fp32":
        raise EmotionMXError(f"{fp32_dir}: INT8 quantization needs an fp32 model (this one is {sidecar.get('precision')})")
    sym, args, aux = A.load_symbol_params(fp32_dir)
    return sym, args, aux, [i["name"] for i in sidecar["inputs"]], sidecar


def _write_int8(out_dir, qsym, qargs, qaux, sidecar, info):
    A.write_exported(out_dir, qsym, qargs, qaux, dict(sidecar, precision="int8", quantization=sidecar_record(info)))


def quantize_exported(fp32_dir, out_dir, calib_batches, calib_mode="naive", exclude=(), excluded_ops=(),
                      quantized_dtype=None):
    """Write an INT8 exported folder for the exported fp32 folder ``fp32_dir``; returns the
    quantization info of :func:`quantize_symbol` plus :func:`int8_structure`.
    ``quantized_dtype`` None: :func:`~emotion_mx.deploy.quantize.default_dtype` of the graph."""
    sym, args, aux, names, sidecar = _fp32_folder(fp32_dir)
    qsym, qargs, qaux, info = quantize_symbol(sym, args, aux, names, calib_batches, calib_mode=calib_mode,
                                              exclude=exclude, excluded_ops=DEFAULT_EXCLUDED_OPS + tuple(excluded_ops),
                                              quantized_dtype=quantized_dtype)
    _write_int8(out_dir, qsym, qargs, qaux, sidecar, info)
    info["structure"] = int8_structure(qsym)
    return info


def pooled_features(net, inputs, batch_size=32):
    """The head's input ``(N, L, D)`` of an :class:`EncoderClassifier` on ``inputs`` (dict of
    arrays in the contract's input order), computed by MXNet fp32."""
    import mxnet as mx
    names = list(inputs)
    n = len(inputs[names[0]])
    out = []
    for a in range(0, n, batch_size):
        x, mask = (mx.nd.array(inputs[k][a:a + batch_size]) for k in names)
        out.append(net.pooled(mx.nd, x, mask).asnumpy())
    return np.concatenate(out)


def fit_head(net, feats, labels, train_idx, valid_idx, seed=0):
    """Train ``net.head`` (softmax layer weighting + linear) on cached features of the rows
    ``train_idx``, the epoch chosen on ``valid_idx`` (:func:`emotion_mx.pretrained.heads.train_head`);
    the head's parameters are copied into ``net``.  Returns the validation UA."""
    from ..pretrained.heads import LAYER_WEIGHTED, HeadConfig, train_head
    y = np.asarray(labels)
    cfg = HeadConfig(layer=(LAYER_WEIGHTED,), hidden_units=0, dropout=0.0, wd=1e-4)
    trained, score, _ = train_head(([feats[train_idx]], y[train_idx]), ([feats[valid_idx]], y[valid_idx]),
                                   int(y.max()) + 1, cfg, seed=seed)
    src = trained.heads[0]
    for key, p in net.head.collect_params().items():
        p.set_data(src.collect_params()[src.prefix + key[len(net.head.prefix):]].data())
    return score


def choose_int8(fp32_dir, out_dir, calib_batches, valid_inputs, candidates=INT8_CANDIDATES,
                floor=AGREEMENT_FLOOR, calib_mode="naive", batch_size=32, select="first", fallback_steps=16):
    """:func:`~emotion_mx.deploy.quantize.search_int8` on an exported fp32 folder: the kept
    INT8 candidate is written to ``out_dir`` (export layout).  ``select="first"`` (the default
    here): the first candidate, fewest fp32 layers first, whose arg-max agreement with fp32 on
    ``valid_inputs`` reaches ``floor``; ``"fastest"``: the fastest of those reaching it.
    Returns ``{"chosen": label, "reason", "floor", "select", "candidates": [...]}``."""
    sym, args, aux, names, sidecar = _fp32_folder(fp32_dir)
    qsym, qargs, qaux, info = search_int8(sym, args, aux, names, calib_batches, valid_inputs, candidates=candidates,
                                          floor=floor, select=select, calib_mode=calib_mode,
                                          batch_size=batch_size,
                                          fallback_steps=fallback_steps)
    _write_int8(out_dir, qsym, qargs, qaux, sidecar, info)
    return info["search"]
