"""safetensors checkpoints through the ``safetensors`` package (numpy API), errors as one line."""
import os

from ..errors import EmotionMXError
from ..optional import require


def read_safetensors(path):
    """``{name: ndarray}`` of a safetensors file (float16/bfloat16 are not converted here)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise EmotionMXError(f"{path}: safetensors file not found")
    load_file = require("safetensors.numpy", "pretrained", "reading a safetensors checkpoint").load_file
    try:
        return load_file(path)
    except Exception as e:   # the library raises SafetensorError / OSError / ValueError
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise EmotionMXError(f"{path}: not a readable safetensors file ({msg}); "
                             "download or copy the checkpoint again") from None
