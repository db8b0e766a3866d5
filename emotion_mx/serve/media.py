"""Request bodies → :class:`~emotion_mx.api.EmotionRecognizer` inputs.

Two encodings, the same fields (``audio``, ``image``, ``video`` media; ``text``; ``start``,
``end`` seconds; ``lang``):

* ``multipart/form-data``: media as file parts, the rest as form fields.  For
  ``/predict/batch`` the field names carry the item index: ``audio.0``, ``text.0``, ``audio.1``...
* ``application/json``: ``{"audio": "<base64>", "text": "..."}``; a medium may also be
  ``{"data": "<base64>", "filename": "clip.mp3"}``.  ``/predict/batch`` takes ``{"items": [...]}``.

Media bytes are written to a per-request temporary folder and handed to the API as files, so
uploads run exactly the file code path of the CLI and the Python API.  The type comes from the
file name's extension or, without one, from the first bytes; a type the field cannot take is
an :class:`~emotion_mx.api.InputError` (HTTP 422).
"""
import base64
import binascii
import os
import re

from ..api import InputError

MEDIA = ("audio", "image", "video")
SCALARS = {"text": str, "start": float, "end": float, "lang": str}
VIDEO_TYPES = (".mp4", ".avi", ".mkv", ".webm", ".flv", ".mov")
ACCEPTED = {"audio": (".wav", ".flac", ".ogg", ".mp3", ".m4a") + VIDEO_TYPES,
            "image": (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"),
            "video": VIDEO_TYPES}


def sniff(data):
    """File type (extension) from the first bytes, or None."""
    head = data[:16]
    if head[:4] == b"RIFF":
        return {b"WAVE": ".wav", b"AVI ": ".avi", b"WEBP": ".webp"}.get(head[8:12])
    if head[4:8] == b"ftyp":
        return ".m4a" if head[8:11] == b"M4A" else ".mp4"
    for magic, ext in ((b"fLaC", ".flac"), (b"OggS", ".ogg"), (b"ID3", ".mp3"), (b"\xff\xfb", ".mp3"),
                       (b"\xff\xf3", ".mp3"), (b"\xff\xf2", ".mp3"), (b"\x89PNG", ".png"),
                       (b"\xff\xd8\xff", ".jpg"), (b"BM", ".bmp"), (b"\x1aE\xdf\xa3", ".mkv"),
                       (b"FLV", ".flv"), (b"II*\x00", ".tif"), (b"MM\x00*", ".tif")):
        if head.startswith(magic):
            return ext
    return None


def media_type(field, data, filename=None):
    """The extension to save ``data`` under for ``field``; InputError if unsupported."""
    accepted = ACCEPTED[field]
    ext = os.path.splitext(filename or "")[1].lower()
    if ext not in accepted:
        sniffed = sniff(data)
        if sniffed is None and not ext:
            raise InputError(field, f"unknown media type (no file name extension, unrecognised content); "
                             f"accepted: {' '.join(accepted)}")
        ext = sniffed if sniffed in accepted else (ext or sniffed)
    if ext not in accepted:
        raise InputError(field, f"unsupported media type '{ext}'; accepted: {' '.join(accepted)}")
    if not data:
        raise InputError(field, "empty file")
    return ext


def _save(tmpdir, key, field, data, filename):
    ext = media_type(field, data, filename)
    path = os.path.join(tmpdir, re.sub(r"[^A-Za-z0-9_.]", "_", key) + ext)
    with open(path, "wb") as f:
        f.write(data)
    return path


def field_name(key, limit=40):
    """A client's field name as an answer may show it: printable, at most ``limit`` characters."""
    shown = key if key.isprintable() else key.encode("unicode_escape").decode("ascii")
    shown = shown[:limit] + ("..." if len(shown) > limit else "")
    return shown or "(empty name)"


def _shown(value, limit=60):
    text = repr(value)
    return text[:limit] + ("..." if len(text) > limit else "")


def _scalar(key, field, value):
    if field == "text":
        if not isinstance(value, str):
            raise InputError(key, f"expected a string, got {type(value).__name__}")
        return value
    if field == "lang":
        return str(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        raise InputError(key, f"expected seconds as a number, got {_shown(value)}") from None


def _split_key(key, batch):
    field, _, index = key.partition(".")
    if field not in MEDIA and field not in SCALARS:
        raise InputError(field_name(key), f"unknown field; use {', '.join(MEDIA + tuple(SCALARS))}"
                         + (" with an item index (audio.0, text.0...)" if batch else ""))
    if batch:
        if not (index.isascii() and index.isdigit()):
            raise InputError(field_name(key), "batch fields carry the item index: audio.0, text.0, image.1...")
        return field, int(index)
    if index:
        raise InputError(key, "item indices (audio.0...) are for /predict/batch")
    return field, 0


async def from_form(form, tmpdir, batch=False, max_items=32):
    """A multipart form (Starlette ``FormData``) → list of input dicts."""
    items = {}
    for key, value in form.multi_items():
        field, index = _split_key(key, batch)
        if index >= max_items:
            raise InputError(key, f"at most {max_items} items per batch")
        item = items.setdefault(index, {})
        if field in MEDIA:
            if isinstance(value, str):
                raise InputError(key, "send media as a file part (multipart file upload), not as a text field")
            data = await value.read()
            item[field] = _save(tmpdir, key, field, data, value.filename)
        else:
            if not isinstance(value, str):
                raise InputError(key, "expected a text field, got a file")
            item[field] = _scalar(key, field, value)
    return _ordered(items, batch)


def _ordered(items, batch):
    if not items:
        raise InputError("inputs", "no input given: send audio, image or video media and/or text")
    if batch:
        missing = [i for i in range(max(items) + 1) if i not in items]
        if missing:
            raise InputError(f"item {missing[0]}", "batch item indices must run 0, 1, 2... without gaps")
    return [items[i] for i in sorted(items)]


def _decode_b64(key, value):
    filename = None
    if isinstance(value, dict):
        unknown = sorted(set(value) - {"data", "filename"})
        if unknown or "data" not in value:
            raise InputError(key, "expected base64 text or {\"data\": base64, \"filename\": name}")
        filename, value = value.get("filename"), value["data"]
    if not isinstance(value, str):
        raise InputError(key, "expected base64 text")
    try:
        return base64.b64decode(value, validate=True), filename
    except (binascii.Error, ValueError):
        raise InputError(key, "not valid base64") from None


def from_json(body, tmpdir, batch=False, max_items=32):
    """A parsed JSON body → list of input dicts."""
    if batch:
        if not isinstance(body, dict) or not isinstance(body.get("items"), list) or set(body) != {"items"}:
            raise InputError("items", "expected {\"items\": [{...}, ...]}")
        rows = body["items"]
        if not rows:
            raise InputError("items", "empty list")
        if len(rows) > max_items:
            raise InputError("items", f"{len(rows)} items; at most {max_items} per batch")
    else:
        if not isinstance(body, dict):
            raise InputError("body", "expected a JSON object such as {\"audio\": base64, \"text\": \"...\"}")
        rows = [body]
    items = []
    for i, row in enumerate(rows):
        prefix = f"items[{i}]." if batch else ""
        if not isinstance(row, dict):
            raise InputError(f"items[{i}]", "expected an object")
        item = {}
        for key, value in row.items():
            if key not in MEDIA and key not in SCALARS:
                raise InputError(prefix + field_name(key), f"unknown field; use {', '.join(MEDIA + tuple(SCALARS))}")
            if value is None:
                continue
            if key in MEDIA:
                data, filename = _decode_b64(prefix + key, value)
                item[key] = _save(tmpdir, f"{i}.{key}", key, data, filename)
            else:
                item[key] = _scalar(prefix + key, key, value)
        if not item:
            raise InputError(f"items[{i}]" if batch else "inputs",
                             "no input given: send audio, image or video media and/or text")
        items.append(item)
    return items
