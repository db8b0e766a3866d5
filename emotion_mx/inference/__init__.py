"""Inference from raw media: one-shot prediction and realtime streaming.

* :mod:`.model` — an exported model plus its preprocessing settings, norm and vocabulary;
* :mod:`.predict` — ``Predictor``: items/files → labels and probabilities (tools/predict.py);
* :mod:`.window` — in-memory audio/frames/text of a stream window → the same features;
* :mod:`.sources`, :mod:`.sync`, :mod:`.subtitles`, :mod:`.stream` — tools/stream.py.
"""
from .model import ExportedModel
from .predict import Prediction, Predictor

__all__ = ["ExportedModel", "Predictor", "Prediction"]
