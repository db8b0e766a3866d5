"""Reader for CTranslate2 ``model.bin`` files (the Whisper checkpoints of the weight packages).

Hand-written on purpose: no library reads the weights of a CTranslate2 model without running
it (the ``ctranslate2`` runtime loads a model but exposes no weight arrays), and the format is
small and documented (docs/pretrained.md, "CTranslate2 file layout").  Layout, little-endian::

    uint32 version | uint16-prefixed spec name (NUL included) | uint32 revision
    uint32 n_variables, then per variable:
        uint16-prefixed name | uint8 rank | rank x uint32 dims | uint8 dtype | uint32 n_bytes | bytes
    uint32 n_aliases, then (alias, target) pairs of uint16-prefixed names

Floating-point variables are returned as float32 numpy arrays; integer ones keep their type.
Every problem (missing or truncated file, other format version, other spec) is one
:class:`~emotion_mx.errors.EmotionMXError` line naming the file.
"""
import os
import struct

import numpy as np

from ..errors import EmotionMXError

SUPPORTED_VERSIONS = (5, 6)
# dtype codes of the format: 0 f32, 1 i8, 2 i16, 3 i32, 4 f16, 5 bf16
_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16, 5: "bfloat16"}


class _Cursor:
    def __init__(self, buf, path):
        self.buf, self.pos, self.path = buf, 0, path

    def take(self, n, what):
        if self.pos + n > len(self.buf):
            raise EmotionMXError(f"{self.path}: truncated CTranslate2 model file (ends inside {what} "
                                 f"at byte {len(self.buf)}); download or copy the checkpoint again")
        out = self.buf[self.pos:self.pos + n]
        self.pos += n
        return out

    def unpack(self, fmt, what):
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt), what))

    def string(self, what):
        (n,) = self.unpack("H", what)
        return bytes(self.take(n, what)).rstrip(b"\0").decode("utf-8", "replace")


def _to_float32(raw, code, dims):
    if code == 5:   # bfloat16: the top half of a float32
        return (np.frombuffer(raw, np.uint16).astype(np.uint32) << 16).view(np.float32).reshape(dims)
    arr = np.frombuffer(raw, _DTYPES[code]).reshape(dims)
    return arr.astype(np.float32) if code in (0, 4) else arr.copy()


def read_ctranslate2(path, spec="WhisperSpec", prefix=None):
    """Variables of a CTranslate2 model file: ``(spec_name, {name: ndarray})``.

    ``spec``: the expected spec name (None accepts any); ``prefix``: keep only variables whose
    name starts with it (e.g. ``"encoder/"``: the decoder's arrays are then never converted).
    Aliases pointing at kept variables are resolved to the same array.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise EmotionMXError(f"{path}: CTranslate2 model file not found")
    with open(path, "rb") as f:
        buf = memoryview(f.read())
    cur = _Cursor(buf, path)
    (version,) = cur.unpack("I", "the header")
    if version not in SUPPORTED_VERSIONS:
        raise EmotionMXError(f"{path}: not a CTranslate2 model file of a supported version "
                             f"(format version {version}; expected one of {SUPPORTED_VERSIONS})")
    name = cur.string("the spec name")
    if spec is not None and name != spec:
        raise EmotionMXError(f"{path}: CTranslate2 spec is {name!r}, expected {spec!r}")
    cur.unpack("I", "the revision")
    (count,) = cur.unpack("I", "the variable count")
    out = {}
    for _ in range(count):
        var = cur.string("a variable name")
        (rank,) = cur.unpack("B", f"variable {var}")
        dims = cur.unpack(f"{rank}I", f"variable {var}") if rank else ()
        (code,) = cur.unpack("B", f"variable {var}")
        (nbytes,) = cur.unpack("I", f"variable {var}")
        raw = cur.take(nbytes, f"variable {var}")
        if code not in _DTYPES:
            raise EmotionMXError(f"{path}: variable {var} has unknown dtype code {code}")
        itemsize = 2 if code == 5 else np.dtype(_DTYPES[code]).itemsize
        if nbytes != int(np.prod(dims, dtype=np.int64)) * itemsize:
            raise EmotionMXError(f"{path}: variable {var} holds {nbytes} bytes, its shape "
                                 f"{tuple(dims)} needs {int(np.prod(dims)) * itemsize}")
        if prefix is None or var.startswith(prefix):
            out[var] = _to_float32(raw, code, dims)
    (n_alias,) = cur.unpack("I", "the alias count")
    for _ in range(n_alias):
        alias, target = cur.string("an alias"), cur.string("an alias")
        if target in out and (prefix is None or alias.startswith(prefix)):
            out[alias] = out[target]
    return name, out
