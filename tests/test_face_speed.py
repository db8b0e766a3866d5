"""Cheaper streaming features: the face detector choice, tracking between detections, and audio
frames computed once per hop (benchmarks/stream_rtf.py measures the speed)."""
import glob
import os

import numpy as np
import pytest

from emotion_mx.config import AudioConfig, FaceConfig
from emotion_mx.errors import EmotionMXError
from emotion_mx.features.face import YUNET_ENV, crop_face, detect_largest_face, yunet_model_path
from emotion_mx.inference.testing import face_image
from emotion_mx.inference.window import FaceCache, HopAudioCache, audio_features_from_wave


def _iou(a, b):
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    w = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    h = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    return w * h / (aw * ah + bw * bh - w * h)


def _canvas(x, y=60, t=0.3, size=(640, 360)):
    """A 640x360 frame with a drawn 200 px face at (x, y)."""
    img = np.full((size[1], size[0], 3), 70, np.uint8)
    img[y:y + 200, x:x + 200] = face_image(t, 200)
    return img


# -- detector choice ------------------------------------------------------------------------------

def test_yunet_box_matches_haar_on_a_ckplus_face(real_data, monkeypatch):
    import cv2
    try:
        model = yunet_model_path()
    except EmotionMXError as e:
        pytest.skip(f"no YuNet model file here: {e}")
    paths = sorted(glob.glob(os.path.join(real_data, "ckplus48", "*", "*.png")))[:5]
    if not paths:
        pytest.skip("no ckplus48 images")
    for p in paths:
        image = cv2.imread(p)
        haar = detect_largest_face(image, 24, "haar")
        yunet = detect_largest_face(image, 24, "yunet", model)
        assert haar is not None and yunet is not None, p
        assert _iou(haar, yunet) > 0.4, (p, haar, yunet)
        crop, found = crop_face(image, detector="yunet", detector_model=model)
        assert found == 1 and crop.shape == (1, 48, 48)


def test_missing_yunet_model_is_one_error_line_saying_where_to_get_it(monkeypatch, tmp_path):
    monkeypatch.delenv(YUNET_ENV, raising=False)
    with pytest.raises(EmotionMXError) as e:
        crop_face(_canvas(200), detector="yunet")
    msg = str(e.value)
    assert "\n" not in msg
    assert "face_detection_yunet_2023mar.onnx" in msg and YUNET_ENV in msg and "face.detector_model" in msg
    assert "opencv_zoo" in msg and "no PyPI package ships it" in msg
    monkeypatch.setenv(YUNET_ENV, str(tmp_path / "nope.onnx"))
    with pytest.raises(EmotionMXError, match=r"YuNet model file not found: .*nope\.onnx \(from EMOTION_MX_YUNET_MODEL\)"):
        yunet_model_path()
    with pytest.raises(ValueError, match="face.detector must be 'haar' or 'yunet'"):
        FaceConfig(detector="mtcnn")


def test_stream_auto_detector_keeps_the_models_own_without_a_yunet_file(monkeypatch):
    from emotion_mx.inference.stream import stream_face_config
    monkeypatch.delenv(YUNET_ENV, raising=False)
    cfg = FaceConfig()
    assert stream_face_config(cfg, "auto") == cfg
    assert stream_face_config(cfg, "haar") == cfg
    with pytest.raises(EmotionMXError, match="needs face_detection_yunet_2023mar.onnx"):
        stream_face_config(cfg, "yunet")


# -- detection every k-th frame, tracking in between ------------------------------------------

def test_tracking_between_detections_gives_the_crops_of_detecting_every_frame_on_a_still_clip():
    cfg = FaceConfig(grayscale=True, size=48)
    frames = [_canvas(220) for _ in range(12)]
    every, sparse = FaceCache(cfg, detect_every=1), FaceCache(cfg, detect_every=5)
    for i, img in enumerate(frames):
        a, fa = every(i / 25.0, img)
        b, fb = sparse(i / 25.0, img)
        assert fa == fb == 1
        np.testing.assert_array_equal(a, b)
    assert every.detections == 12
    assert sparse.detections == 3 and sparse.tracked == 9         # frames 0, 5, 10 detected


def test_the_tracker_follows_a_moving_face_and_detects_again_when_it_is_lost():
    from emotion_mx.inference.window import _face_square
    cfg = FaceConfig()
    cache = FaceCache(cfg, detect_every=10)
    cache(0.0, _canvas(200))
    first = cache._tracker.square
    assert cache.detections == 1
    for k, x in enumerate((210, 222, 236), start=1):               # the face moves right
        img = _canvas(x)
        cache(k / 25.0, img)
        tracked, detected = cache._tracker.square, _face_square(img, cfg)
        assert abs(tracked[0] - detected[0]) <= 8 and abs(tracked[1] - detected[1]) <= 8, (tracked, detected)
    assert tracked[0] - first[0] >= 26                             # the face moved 36 px
    assert cache.detections == 1 and cache.tracked == 3
    crop, found = cache(4 / 25.0, np.full((360, 640, 3), 70, np.uint8))   # face gone: detect, none
    assert cache.detections == 2 and found == 0


# -- audio features once per hop --------------------------------------------------------------

def _speechlike(seconds, sr=16000):
    t = np.arange(int(seconds * sr)) / sr
    voiced = np.sin(2 * np.pi * 0.7 * t) > 0
    wave = 0.3 * np.sin(2 * np.pi * (150 + 30 * np.sin(t)) * t) * voiced
    return (wave + np.random.RandomState(0).normal(0, 0.01, t.size)).astype(np.float32)


def test_audio_features_per_hop_equal_the_whole_window_recomputed():
    cfg, sr = AudioConfig(), 16000
    wave = _speechlike(4.0)
    cache = HopAudioCache()
    for k in range(5):                                               # window 2 s, hop 0.5 s
        start = 0.5 * k
        w = wave[int(start * sr):int((start + 2.0) * sr)]
        full = audio_features_from_wave(w, cfg)
        hop = audio_features_from_wave(w, cfg, cache=cache, start=start)
        assert set(hop) == set(full) == {"logmel", "mfcc", "prosody"}
        for name in full:
            assert hop[name].shape == full[name].shape
            np.testing.assert_allclose(hop[name], full[name], rtol=0, atol=1e-5, err_msg=name)
    assert cache.reused > cache.computed         # 141 of 201 frames per window come from the previous one
    # a window off the frame grid, or with other samples on the overlap, is computed whole
    before = cache.computed
    w = wave[5:5 + 2 * sr]
    np.testing.assert_allclose(audio_features_from_wave(w, cfg, cache=cache, start=5 / sr)["logmel"],
                               audio_features_from_wave(w, cfg)["logmel"], atol=1e-5)
    assert cache.computed - before == 1 + len(w) // 160
    w2 = wave[sr:3 * sr] * 0.5
    np.testing.assert_allclose(audio_features_from_wave(w2, cfg, cache=cache, start=1.0)["prosody"],
                               audio_features_from_wave(w2, cfg)["prosody"], atol=1e-5)


def test_detections_near_the_tracked_face_and_a_whole_frame_search_every_few():
    from emotion_mx.inference.window import FULL_EVERY
    full = detect_largest_face(_canvas(220), 24)
    near = detect_largest_face(_canvas(220), 24, near=full)
    assert _iou(full, near) > 0.8
    assert detect_largest_face(_canvas(420), 24, near=(20, 60, 150, 150)) is None   # the face is elsewhere
    small = _canvas(40)
    small[60:200, 40:240] = 70
    small[60:200, 40:180] = face_image(0.3, 140)           # a smaller face on the left
    both = small.copy()
    both[100:300, 400:600] = face_image(0.3, 200)           # a larger one comes in on the right
    cache = FaceCache(FaceConfig(), detect_every=2)
    cache(0.0, small)
    assert cache._tracker.square[0] < 100
    moved_at = None
    for k in range(1, 2 * FULL_EVERY + 2):
        cache(k / 25.0, both)
        if moved_at is None and cache._tracker.square[0] > 300:
            moved_at = k
    assert moved_at == 2 * (FULL_EVERY - 1) + 2, moved_at    # found by the first whole-frame search


def test_stores_built_before_the_detector_keys_keep_their_config_hash(tmp_path):
    import dataclasses
    import hashlib
    import json
    from emotion_mx.build import _config_hash
    from emotion_mx.config import DatasetConfig, to_dict
    cfg = DatasetConfig()
    old = to_dict(cfg)
    del old["face"]["detector"], old["face"]["detector_model"]      # the config as it was
    del old["audio"]["trim_db"]
    data = json.dumps({"cfg": old, "root": os.path.realpath(str(tmp_path))}, sort_keys=True)
    assert _config_hash(cfg, str(tmp_path)) == hashlib.sha256(data.encode()).hexdigest()[:16]
    yunet = dataclasses.replace(cfg, face=dataclasses.replace(cfg.face, detector="yunet"))
    assert _config_hash(yunet, str(tmp_path)) != _config_hash(cfg, str(tmp_path))
