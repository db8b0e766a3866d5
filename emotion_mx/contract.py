"""The model-input contract (docs/DESIGN.md "Model inputs"): the one home of the modality list
and order, the input names and shapes, the data-derived model keywords and random inputs.

A model built for ``modalities`` takes two positional inputs per modality in canonical order,
value then float mask: ``audio (B, T, D)``, ``audio_mask (B, T)``, ``text (B, L)`` (token ids as
float32), ``text_mask (B, L)``, ``video (B, N, C, S, S)``, ``video_mask (B, N)``.
"""
import numpy as np

from .errors import EmotionMXError

MODALITIES = ("audio", "text", "video")

# Model keyword arguments that come from the feature store (the data), never from a config.
DATA_MODEL_KWARGS = ("audio_dim", "audio_frames", "vocab_size", "max_tokens", "num_frames",
                     "frame_size", "frame_channels")


class ModalityError(EmotionMXError, ValueError):
    """An unknown, repeated or empty modality list (a ValueError too, for config validation)."""


def check_modalities(value, where="modalities"):
    """'audio,text' or a sequence → tuple in canonical order; unknown, repeated or no names are
    an error naming ``where``."""
    names = [m.strip() for m in (value.split(",") if isinstance(value, str) else value) if m.strip()]
    bad = [m for m in names if m not in MODALITIES]
    if bad:
        raise ModalityError(f"unknown modality {bad[0]!r} in {where}; choose from {', '.join(MODALITIES)}")
    if not names:
        raise ModalityError(f"{where} must list at least one of {', '.join(MODALITIES)}")
    if len(set(names)) != len(names):
        raise ModalityError(f"{where} lists a modality twice: {names}")
    return tuple(m for m in MODALITIES if m in names)


def input_names(modalities=MODALITIES):
    """Positional input names, e.g. ['audio', 'audio_mask', 'text', 'text_mask', ...]."""
    return [n for m in check_modalities(modalities) for n in (m, f"{m}_mask")]


def input_shapes(modalities, *, audio_frames=None, audio_dim=None, max_tokens=None, num_frames=None,
                 frame_channels=None, frame_size=None, **_):
    """{input name: shape without the batch axis} from the data-derived model keywords."""
    per = {"audio": [audio_frames, audio_dim], "text": [max_tokens],
           "video": [num_frames, frame_channels, frame_size, frame_size]}
    out = {}
    for m in check_modalities(modalities):
        out[m], out[f"{m}_mask"] = [int(d) for d in per[m]], [int(per[m][0])]
    return out


def random_inputs(shapes, *, batch_size=1, vocab_size=50, seed=0, masks="full", missing=None):
    """Contract-obeying random inputs ``{name: float32 (batch_size, *shape)}`` for ``shapes``
    ({name: shape without batch}, in input order): features ~N(0, 1), token ids in
    [1, vocab_size), masks ``'full'`` (all ones), ``'padded'`` (last quarter zero) or
    ``'random'`` (random lengths >= 1).  ``missing``: a modality whose mask rows are all zero."""
    rng = np.random.RandomState(seed)
    out = {}
    for name, shape in shapes.items():
        shape = [batch_size] + [int(d) for d in shape]
        if name.endswith("_mask"):
            x = np.ones(shape, np.float32)
            if masks == "padded":
                x[:, shape[1] * 3 // 4:] = 0.0
            elif masks == "random":
                lengths = rng.randint(1, shape[1] + 1, size=batch_size)
                x = (np.arange(shape[1])[None, :] < lengths[:, None]).astype(np.float32)
            if missing and name == f"{missing}_mask":
                x[:] = 0.0
        elif name == "text":
            x = rng.randint(1, max(2, int(vocab_size)), size=shape).astype(np.float32)
        else:
            x = rng.randn(*shape).astype(np.float32)
        out[name] = x
    return out
