"""The package's click commands, one module per verb of ``emotion-mx`` (``tools/*.py`` are shims).

:data:`COMMANDS` maps each verb to ``"module:attribute"``, its one-line help (shown by
``emotion-mx --help`` without importing the module) and, for verbs that need an optional part of
the package, the pip extra to install.  The group (:func:`emotion_mx.cli.main`) imports a verb's
module only when that verb runs, so ``emotion-mx --help`` and ``emotion-mx predict`` import
neither the trainer nor the search.  Each command keeps its heavy imports inside its function
for the same reason: ``emotion-mx train --help`` answers without importing MXNet.
"""
from typing import NamedTuple, Optional

__all__ = ["Verb", "COMMANDS"]


class Verb(NamedTuple):
    target: str                 # "package.module:attribute" of the click command
    help: str                   # one line for `emotion-mx --help` (tests check it matches)
    extra: Optional[str] = None  # pip extra the verb needs (None: core install)
    tool: Optional[str] = None   # the tools/ script that runs the same command


COMMANDS = {
    "build": Verb("emotion_mx.commands.build:main",
                  "Build a feature store: corpus → manifest → features + alignment → shards, folds.",
                  tool="build_dataset.py"),
    "train": Verb("emotion_mx.commands.train:main", "Train a model on a feature store into a run folder.",
                  tool="train.py"),
    "evaluate": Verb("emotion_mx.commands.evaluate:main", "Evaluate a run on a split → RUN/eval/metrics.json.",
                     tool="evaluate.py"),
    "crossval": Verb("emotion_mx.commands.crossval:main",
                     "Cross-validation over folds and seeds; mean ± std table.", tool="crossval.py"),
    "distill": Verb("emotion_mx.commands.distill:main", "Distil a trained run into a smaller student preset.",
                    tool="distill.py"),
    "export": Verb("emotion_mx.commands.export:main", "Export a run to symbol/params + sidecar [+ ONNX].",
                   tool="export.py"),
    "quantize": Verb("emotion_mx.commands.quantize:main", "INT8 post-training quantization of a run (oneDNN).",
                     tool="quantize.py"),
    "predict": Verb("emotion_mx.commands.predict:main",
                    "Predict emotions from media files with a zoo model or an exported model.", tool="predict.py"),
    "zoo": Verb("emotion_mx.commands.zoo:zoo", "Ready, trained models: list, info (model card), build, path.",
                extra="pretrained"),
    "stream": Verb("emotion_mx.commands.stream:main", "Realtime prediction on a video file or camera, window by window.",
                   tool="stream.py"),
    "serve": Verb("emotion_mx.serve.command:serve", "REST service (FastAPI) for an exported model.", extra="serve"),
    "live": Verb("emotion_mx.live.command:live", "Live page: camera and microphone in the browser.", extra="serve"),
    "embed": Verb("emotion_mx.commands.embed:embed",
                  "Cache a pretrained encoder's per-layer embeddings; optionally train heads.",
                  extra="pretrained"),
    "search": Verb("emotion_mx.commands.search:main", "Architecture / hyper-parameter search (autogluon.core, Ray).",
                   extra="search", tool="search.py"),
    "cpp-predict": Verb("emotion_mx.commands.cpp_predict:main",
                        "Run exported models through the C++ wrapper on a store split (or WAV files: "
                        "Whisper log-mel models).", tool="cpp_predict.py"),
    "model-summary": Verb("emotion_mx.commands.model_summary:main",
                          "Markdown table of every model preset: parameters and MACs.", tool="model_summary.py"),
    "launch": Verb("emotion_mx.commands.launch:main", "Start a dist_sync job: scheduler + servers + workers.",
                   tool="launch.py"),
    "demo": Verb("emotion_mx.commands.demo:main", "The whole lifecycle on a synthetic tri-modal corpus.",
                 tool="demo.py"),
}
