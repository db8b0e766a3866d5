"""Prediction from raw media with an exported model (``tools/predict.py``).

Every item goes through :func:`emotion_mx.build.extract_item` — the per-item preprocessing of
dataset building — with the feature store's settings recorded in the model's sidecar, then
through :func:`emotion_mx.data.assemble_inputs` with the run's normalisation and vocabulary.
So a prediction sees exactly the inputs training saw.  A modality the item lacks is all zeros
with an all-zero mask (the model treats it as missing).
"""
import dataclasses
import logging
import os
from typing import Dict, List, Optional, Tuple

import numpy as np

from ..errors import BadItem, EmotionMXError
from ..fileio import read_jsonl
from ..manifest import MEDIA_FIELDS, Utterance
from .model import ExportedModel

log = logging.getLogger(__name__)

# Utterance field → model modality it feeds
FIELD_MODALITY = {"audio": "audio", "text": "text", "video": "video", "image": "video"}


@dataclasses.dataclass
class Prediction:
    id: str
    label: Optional[str]                 # arg-max label; None when no modality was usable
    probabilities: Optional[np.ndarray]  # (C,) summing to 1, in ``labels`` order
    labels: List[str]
    modalities: Tuple[str, ...]          # modalities that reached the model
    true_label: Optional[str] = None
    error: Optional[str] = None          # set (and nothing else) for a skipped item

    def to_json(self):
        if self.error is not None:
            return {"id": self.id, "error": self.error}
        out = {"id": self.id, "label": self.label,
               "probabilities": {l: round(float(p), 6) for l, p in zip(self.labels, self.probabilities)},
               "modalities": list(self.modalities)}
        if self.true_label is not None:
            out["true_label"] = self.true_label
        return out


def media_item(audio=None, video=None, image=None, text=None, start=None, end=None, item_id="input", lang=None):
    """An :class:`Utterance` for files given on the command line (absolute paths allowed).

    Returns ``(item, root)``: paths are made relative to ``/`` so that
    :func:`emotion_mx.manifest.resolve_media`'s inside-the-root check passes.
    """
    if video and image:
        raise EmotionMXError("give --video or --image, not both (both feed the 'video' input)")
    fields = {}
    for name, path in (("audio", audio), ("video", video), ("image", image)):
        if path is None:
            continue
        path = os.path.abspath(path)
        if not os.path.isfile(path):
            raise BadItem(f"{name} file not found: {path}")
        fields[name] = os.path.relpath(path, os.sep)
    if text is not None:
        fields["text"] = text
    if not fields:
        raise EmotionMXError("no input given: pass at least one of --audio, --video, --image, --text (or --manifest)")
    item = Utterance(id=item_id, label="?", group="?", start=start, end=end, lang=lang, **fields)
    return item, os.sep


def read_items(path):
    """Manifest rows for prediction: like a corpus manifest, but ``label``/``group`` optional."""
    if not os.path.isfile(path):
        raise EmotionMXError(f"manifest not found: {path}")
    items = []
    for i, row in enumerate(read_jsonl(path)):
        where = f"{path}:{i + 1}"
        if not isinstance(row, dict):      # null, a number, a string or a list on its own line
            items.append(UnreadableRow(f"line{i + 1}", f"{where}: a manifest line must be a JSON object "
                                                       f"such as {{\"audio\": \"a.wav\"}}, got {_json_type(row)}; "
                                                       "fix or remove that line"))
            continue
        row = dict(row)
        if "id" not in row:
            row["id"] = f"line{i + 1}"
        row.setdefault("label", "?")
        row.setdefault("group", "?")
        try:
            items.append(Utterance.from_json(row, where=where))
        except EmotionMXError as e:
            item_id = row["id"] if isinstance(row["id"], str) and row["id"].isprintable() else f"line{i + 1}"
            items.append(UnreadableRow(item_id[:80], str(e)))
    if not items:
        raise EmotionMXError(f"{path}: no items")
    return items


@dataclasses.dataclass(frozen=True)
class UnreadableRow:
    """A manifest line that is no usable item: :meth:`Predictor.predict_items` raises its reason
    as a :class:`BadItem` (an error row with ``skip_bad``), so one bad line does not stop a run."""
    id: str
    reason: str
    label: str = "?"


def _json_type(value):
    return {type(None): "null", bool: "a boolean", int: "a number", float: "a number", str: "a string",
            list: "a list"}.get(type(value), type(value).__name__)


class Predictor:
    """``Predictor(model_dir, runtime="auto")``: exported fp32/INT8 model + the store's
    preprocessing; ``runtime`` mxnet|onnxruntime|auto (see :mod:`emotion_mx.deploy.ort_runtime`).

    * :meth:`features` — per-item feature dict (``extract_item``), raises :class:`BadItem`;
    * :meth:`predict_features` — feature dicts → probabilities ``(N, C)``;
    * :meth:`predict_items` — utterances → :class:`Prediction` list.
    """

    def __init__(self, model_dir, batch_size=1, ctx=None, runtime="auto"):
        self.model = ExportedModel(model_dir, ctx=ctx, runtime=runtime)
        self.runtime, self.runtime_message = self.model.runtime, self.model.runtime_message
        self.batch_size = int(batch_size)
        self.labels = self.model.labels
        self.modalities = self.model.modalities
        self.config = self.model.config

    # -- per item ------------------------------------------------------------------------
    def restrict(self, item, strict=True):
        """The item with only the fields the model uses. ``strict``: a field for a modality the
        model lacks is an error; otherwise it is dropped (logged)."""
        extra = [f for f in (*MEDIA_FIELDS, "text")
                 if getattr(item, f) is not None and FIELD_MODALITY[f] not in self.modalities]
        if extra and strict:
            raise BadItem(f"the model takes {', '.join(self.modalities)}; it has no '{FIELD_MODALITY[extra[0]]}' "
                          f"input for the given {extra[0]}", item_id=item.id)
        if extra:
            log.info("%s: ignoring %s (the model takes %s)", item.id, ", ".join(extra), ", ".join(self.modalities))
            item = item.replace(**{f: None for f in extra})
        if not item.modalities():
            raise BadItem(f"no input for the model's modalities ({', '.join(self.modalities)})", item_id=item.id)
        return item

    def features(self, item, root):
        """Feature dict of one item for :meth:`predict_features` (dataset-building preprocessing)."""
        from ..build import extract_item   # its text features import MXNet: lazy for ONNX Runtime serving
        arrays, meta = extract_item(item, root, self.model.feature_config)
        feats = dict(arrays)
        if "tokens" in meta:
            feats["tokens"] = meta["tokens"]
        return feats

    @staticmethod
    def present(feats):
        """Modalities a feature dict carries (as assemble_inputs will see them)."""
        mods = []
        if "logmel" in feats or "mfcc" in feats:
            mods.append("audio")
        if feats.get("tokens"):
            mods.append("text")
        if "frames" in feats:
            mods.append("video")
        return tuple(mods)

    # -- batches -------------------------------------------------------------------------
    def predict_features(self, feature_dicts, batch_size=None):
        """Probabilities ``(N, C)`` for per-item feature dicts (missing modality → masked)."""
        inputs = self.model.assemble(list(feature_dicts))
        return self.model.probabilities(inputs, batch_size=batch_size or self.batch_size)

    def predict_items(self, items, root=os.sep, strict=True, skip_bad=False):
        """Predictions for utterances (media paths relative to ``root``).

        ``strict``: a field the model has no input for is an error (else ignored).
        ``skip_bad``: a bad item becomes a :class:`Prediction` with ``error`` (else BadItem).
        """
        out: Dict[int, Prediction] = {}
        pending = []   # (position, item, feats)
        for pos, item in enumerate(items):
            try:
                if isinstance(item, UnreadableRow):
                    raise BadItem(item.reason, item_id=item.id)
                item = self.restrict(item, strict=strict)
                feats = self.features(item, root)
            except BadItem as e:
                e = e if e.item_id else e.with_id(item.id)
                if not skip_bad:
                    raise e from None
                out[pos] = Prediction(item.id, None, None, self.labels, (), error=e.reason)
                continue
            pending.append((pos, item, feats))
            if len(pending) == self.batch_size:
                self._flush(pending, out)
                pending = []
        if pending:
            self._flush(pending, out)
        return [out[i] for i in range(len(items))]

    def _flush(self, pending, out):
        probs = self.predict_features([f for _, _, f in pending])
        for (pos, item, feats), p in zip(pending, probs):
            true = item.label if item.label != "?" else None
            out[pos] = Prediction(item.id, self.labels[int(np.argmax(p))], p, self.labels,
                                  self.present(feats), true_label=true)


def summarize(predictions):
    """Counts (and accuracy over items whose true label is a model label)."""
    ok = [p for p in predictions if p.error is None]
    labelled = [p for p in ok if p.true_label in p.labels]
    out = {"items": len(predictions), "predicted": len(ok), "failed": len(predictions) - len(ok)}
    if labelled:
        out["accuracy"] = round(float(np.mean([p.label == p.true_label for p in labelled])), 4)
        out["labelled"] = len(labelled)
    return out


def format_text(pred):
    """One human-readable line: label, then the probabilities in descending order."""
    if pred.error is not None:
        return f"{pred.id}: error: {pred.error}"
    order = np.argsort(-pred.probabilities)
    probs = "  ".join(f"{pred.labels[i]} {pred.probabilities[i]:.3f}" for i in order)
    return f"{pred.label}  ({probs})  [{'+'.join(pred.modalities)}]"
