"""Face frames from images and videos (OpenCV): sample, detect, crop, resize.

A video gives ``num_frames`` frames at the centres of equal slices of ``[start, end]``, each
the frame on screen at that time by the container's timestamps (:mod:`.frames`, PyAV; right on
variable-frame-rate files); an image gives one frame at time 0. Each frame goes through
a face detector, ``detector``: ``'haar'`` (OpenCV's frontal-face Haar cascade, the default) or
``'yunet'`` (OpenCV's CNN detector ``cv2.FaceDetectorYN`` with the model file
``face_detection_yunet_2023mar.onnx`` of the OpenCV model zoo, found by :func:`yunet_model_path`);
the largest face is cropped as a square with ``margin`` around it. When no face is found the
centre square is used and ``face_found`` is 0 for that frame, so a model or a filter can tell.
"""
import functools
import os

import cv2
import numpy as np

from ..errors import BadItem, EmotionMXError

__all__ = ["extract_faces", "detect_largest_face", "yunet_model_path", "DETECTORS"]

DETECTORS = ("haar", "yunet")
YUNET_FILE = "face_detection_yunet_2023mar.onnx"
YUNET_ENV = "EMOTION_MX_YUNET_MODEL"
# Installed packages whose wheel ships YUNET_FILE (located with importlib, never imported).
# Empty: on 2026-12-06 none of detekface, moca-face-matcher, unicorner-face-detector,
# alchemyface, myfacedetect, face-detector-plus, albumit ships it (they download it at run time).
YUNET_PACKAGES = ()
YUNET_SCORE = 0.6       # cv2.FaceDetectorYN score threshold (the model zoo's demo default 0.9 misses CK+48 faces)
YUNET_NMS = 0.3

CASCADE_FILE = "haarcascade_frontalface_default.xml"
DETECT_MIN_SIDE = 96    # smaller images are upscaled before detection (CK+48: 78 % -> 99 % found)
DETECT_MAX_SIDE = 360   # larger frames are downscaled (while min_face stays >= 24 px)
HAAR_WINDOW = 24        # the cascade's base window (px)
MAX_IMAGE_PIXELS = 50_000_000   # larger images/video frames are refused before decoding
MAX_UNKNOWN_IMAGE_BYTES = 20 * 2 ** 20   # a format Pillow cannot size is decoded only if this small


def extract_faces(path, is_image, start=None, end=None, num_frames=8, size=48, grayscale=True,
                  margin=0.2, detect=True, min_face=24, detector="haar", detector_model=None):
    """Face crops of an image or a video segment.

    Returns ``{'frames': (N, C, size, size) uint8, 'face_found': (N,) uint8,
    'times': (N,) float32 seconds}`` with ``C = 1`` (grayscale) or ``3`` (RGB), ``N = 1`` for an
    image and ``num_frames`` for a video. ``detect=False`` (pre-cropped faces) resizes the whole
    frame and sets ``face_found = 1``. Raises :class:`BadItem` for a missing, corrupt or
    frame-less file and for a segment outside the video.  ``detector``/``detector_model``:
    see :func:`detect_largest_face`.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise BadItem(f"{'image' if is_image else 'video'} file not found: {path} "
                      "(check the corpus root and the manifest path)")
    if is_image:
        images, times = [_read_image(path)], np.zeros(1, dtype=np.float32)
    else:
        images, times = _read_video_frames(path, start, end, num_frames)
    crops, found = zip(*(crop_face(img, size, grayscale, margin, detect, min_face, detector, detector_model)
                              for img in images))
    return {
        "frames": np.stack(crops),                      # (N, C, size, size) uint8
        "face_found": np.asarray(found, dtype=np.uint8),  # (N,)
        "times": np.asarray(times, dtype=np.float32),    # (N,)
    }


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------

def check_image_size(path):
    """Refuse an image whose header declares more than ``MAX_IMAGE_PIXELS`` before it is decoded
    (a 197 KB PNG of 8000x8000 took 3.5 GB to decode).  Pillow reads only the header here."""
    from PIL import Image, UnidentifiedImageError
    try:
        with Image.open(path) as im:
            w, h = im.size
    except Image.DecompressionBombError:     # Pillow's own limit (2 x 89 M pixels) tripped first
        raise BadItem(f"image {path} is over the limit of {MAX_IMAGE_PIXELS // 10 ** 6} megapixels "
                      "(its header declares a decompression bomb); downscale it") from None
    except (UnidentifiedImageError, OSError, ValueError):
        if os.path.getsize(path) > MAX_UNKNOWN_IMAGE_BYTES:
            raise BadItem(f"cannot read the size of image {path} and it is over "
                          f"{MAX_UNKNOWN_IMAGE_BYTES >> 20} MB; convert it to PNG or JPEG") from None
        return
    if w * h > MAX_IMAGE_PIXELS:
        raise BadItem(f"image {path} is {w}x{h} pixels, over the limit of {MAX_IMAGE_PIXELS // 10 ** 6} "
                      "megapixels; downscale it")


def _read_image(path):
    check_image_size(path)
    image = cv2.imread(path, cv2.IMREAD_COLOR)  # (H, W, 3) BGR; grayscale files are expanded
    if image is None or image.size == 0:
        raise BadItem(f"cannot decode image {path} (corrupt or unsupported format)")
    return image


def _read_video_frames(path, start, end, num_frames):
    """``num_frames`` BGR frames spread over ``[start, end]`` and their presentation times.

    Sample times are the centres of equal slices of the segment; each takes the frame shown
    at that time (:func:`emotion_mx.features.frames.frames_at`: the container's timestamps,
    so variable-frame-rate files are timed right; an undecodable frame shows its predecessor).
    """
    from .frames import frames_at, probe
    info = probe(path)
    if not info.video or info.duration <= 0:
        raise BadItem(f"video has no frames (or no duration): {path}")
    if info.width * info.height > MAX_IMAGE_PIXELS:
        raise BadItem(f"video {path} has {info.width}x{info.height} frames, over the limit of "
                      f"{MAX_IMAGE_PIXELS // 10 ** 6} megapixels; downscale it")
    centres = _sample_times(info.duration, start, end, num_frames, path)  # (N,) seconds
    images, times = frames_at(path, centres)
    return images, times.astype(np.float32)


def _sample_times(duration, start, end, num_frames, path):
    """Centres of ``num_frames`` equal slices of the segment, seconds."""
    t0 = 0.0 if start is None else float(start)
    t1 = duration if end is None else min(float(end), duration)
    if t0 < 0 or t0 >= duration:
        raise BadItem(f"segment start {t0:g} s is outside the video {path} ({duration:.2f} s)")
    if t1 <= t0:
        raise BadItem(f"segment end {t1:g} s is not after its start {t0:g} s ({path})")
    return t0 + (np.arange(num_frames) + 0.5) * (t1 - t0) / num_frames  # (N,) seconds


# --------------------------------------------------------------------------------------------
# Detection and cropping
# --------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def _cascade():
    """The frontal-face Haar cascade, loaded once per process."""
    cascade = cv2.CascadeClassifier(os.path.join(cv2.data.haarcascades, CASCADE_FILE))
    if cascade.empty():
        raise RuntimeError(f"OpenCV Haar cascade {CASCADE_FILE} not found in {cv2.data.haarcascades}")
    return cascade


def _haar_largest_face(gray, min_face, near=None):
    """Largest face box ``(x, y, w, h)`` in ``gray`` (H, W) pixel units, or None.

    ``near = (x, y, w, h)``: a face seen there a moment ago (streaming); only the region around it
    is searched, at face sizes from half to twice its size, with the same image scale and
    cascade settings as a whole-frame search (much cheaper: a small region, few scales)."""
    side = min(gray.shape)
    scale = max(DETECT_MIN_SIDE / side, min(1.0, DETECT_MAX_SIDE / side))
    scale = max(scale, HAAR_WINDOW / max(min_face, 1))   # keep min_face >= the cascade window
    min_size, max_size, x0, y0 = int(round(min_face * scale)), (0, 0), 0, 0
    if near is not None:
        nx, ny, nw, nh = near
        big = max(nw, nh)
        x0, y0 = int(max(0, nx - big / 2)), int(max(0, ny - big / 2))
        gray = gray[y0:int(ny + nh + big / 2), x0:int(nx + nw + big / 2)]
        min_size = max(min_size, int(big * scale / 2))
        max_size = (int(big * scale * 2),) * 2
    image = gray if scale == 1.0 else cv2.resize(
        gray, None, fx=scale, fy=scale,
        interpolation=cv2.INTER_LINEAR if scale > 1 else cv2.INTER_AREA)
    boxes = _cascade().detectMultiScale(image, scaleFactor=1.1, minNeighbors=5,
                                        minSize=(min_size, min_size), maxSize=max_size)
    if len(boxes) == 0:
        return None
    x, y, w, h = max(boxes, key=lambda b: b[2] * b[3])
    return x / scale + x0, y / scale + y0, w / scale, h / scale


def yunet_model_path(path=None):
    """The YuNet ONNX file: ``path`` (``face.detector_model``), else ``$EMOTION_MX_YUNET_MODEL``,
    else the copy inside an installed package of ``YUNET_PACKAGES``.  Raises
    :class:`EmotionMXError` (one line saying where to get it) when none exists."""
    import importlib.util
    for candidate, origin in ((path, "face.detector_model"), (os.environ.get(YUNET_ENV), YUNET_ENV)):
        if candidate:
            if not os.path.isfile(candidate):
                raise EmotionMXError(f"YuNet model file not found: {candidate} (from {origin})")
            return os.fspath(candidate)
    for package in YUNET_PACKAGES:
        spec = importlib.util.find_spec(package)
        for folder in (spec.submodule_search_locations or []) if spec else []:
            for dirpath, _, files in os.walk(folder):
                if YUNET_FILE in files:
                    return os.path.join(dirpath, YUNET_FILE)
    raise EmotionMXError(
        f"face.detector 'yunet' needs {YUNET_FILE} (OpenCV model zoo, MIT, ~230 KB) and no PyPI package "
        f"ships it: download it from github.com/opencv/opencv_zoo (models/face_detection_yunet) and set "
        f"face.detector_model or {YUNET_ENV} to its path, or use face.detector 'haar'")


@functools.lru_cache(maxsize=2)
def _yunet(model_path):
    """One ``cv2.FaceDetectorYN`` per model file and process (its input size is set per frame)."""
    if not hasattr(cv2, "FaceDetectorYN"):
        raise EmotionMXError(f"face.detector 'yunet' needs OpenCV >= 4.8 (cv2.FaceDetectorYN); this is {cv2.__version__}")
    try:
        return cv2.FaceDetectorYN.create(model_path, "", (320, 320), YUNET_SCORE, YUNET_NMS, 50)
    except cv2.error as e:
        raise EmotionMXError(f"cannot load the YuNet model {model_path}: {str(e).strip().splitlines()[-1]}") from None


def _yunet_largest_face(image, min_face, model_path):
    """Largest YuNet face box ``(x, y, w, h)`` of a BGR (H, W, 3) frame, or None.  Frames are
    scaled like Haar's (small ones up to DETECT_MIN_SIDE, large ones down to DETECT_MAX_SIDE)."""
    side = min(image.shape[:2])
    scale = max(DETECT_MIN_SIDE / side, min(1.0, DETECT_MAX_SIDE / side))
    resized = image if scale == 1.0 else cv2.resize(
        image, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR if scale > 1 else cv2.INTER_AREA)
    net = _yunet(model_path)
    net.setInputSize((resized.shape[1], resized.shape[0]))
    _, faces = net.detect(resized)          # (N, 15): x, y, w, h, 5 landmarks, score
    if faces is None or len(faces) == 0:
        return None
    faces = faces[(faces[:, 2] >= min_face * scale) & (faces[:, 3] >= min_face * scale)]
    if len(faces) == 0:
        return None
    x, y, w, h = max(faces[:, :4].tolist(), key=lambda b: b[2] * b[3])
    return x / scale, y / scale, w / scale, h / scale


def detect_largest_face(image, min_face=24, detector="haar", detector_model=None, gray=None, near=None):
    """Largest face box ``(x, y, w, h)`` (float pixels) of a BGR (H, W, 3) frame, or None.

    ``detector``: ``'haar'`` or ``'yunet'`` (``detector_model``: its ONNX file, see
    :func:`yunet_model_path`).  ``gray``: the frame's grayscale copy when the caller has it.
    ``near``: a recent face box; Haar then searches only around it (YuNet searches the whole
    frame: it is cheap there)."""
    if detector == "haar":
        return _haar_largest_face(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if gray is None else gray, min_face,
                                  near)
    if detector == "yunet":
        return _yunet_largest_face(image, min_face, yunet_model_path(detector_model))
    raise EmotionMXError(f"face.detector must be one of {', '.join(DETECTORS)}, got {detector!r}")


def _square(shape, cx, cy, side):
    """Integer square ``(x0, y0, side)`` centred near (cx, cy), shifted to lie inside ``shape``."""
    height, width = shape[:2]
    side = int(round(min(side, height, width)))
    x0 = int(round(min(max(cx - side / 2.0, 0), width - side)))
    y0 = int(round(min(max(cy - side / 2.0, 0), height - side)))
    return x0, y0, side


def crop_face(image, size=48, grayscale=True, margin=0.2, detect=True, min_face=24, detector="haar",
              detector_model=None):
    """One BGR frame (H, W, 3) → ``((C, size, size) uint8, face_found)``: the per-frame step of
    :func:`extract_faces` (also used on live frames by streaming inference)."""
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)  # (H, W)
    height, width = gray.shape
    if not detect:
        region, found = (0, 0, height, width), 1
    else:
        box = detect_largest_face(image, min_face, detector, detector_model, gray=gray)
        if box is None:
            x0, y0, side = _square(gray.shape, width / 2.0, height / 2.0, min(height, width))
            found = 0
        else:
            x, y, w, h = box
            x0, y0, side = _square(gray.shape, x + w / 2.0, y + h / 2.0, max(w, h) * (1 + 2 * margin))
            found = 1
        region = (y0, x0, y0 + side, x0 + side)
    top, left, bottom, right = region
    source = gray if grayscale else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    crop = source[top:bottom, left:right]
    interpolation = cv2.INTER_AREA if min(crop.shape[:2]) > size else cv2.INTER_LINEAR
    crop = cv2.resize(crop, (size, size), interpolation=interpolation)  # (size, size[, 3])
    chw = crop[None] if grayscale else crop.transpose(2, 0, 1)  # (C, size, size)
    return np.ascontiguousarray(chw, dtype=np.uint8), found
