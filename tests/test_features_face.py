"""Face frames from synthetic images and videos; real CK+48 faces when EMOTION_MX_DATA is set."""
import csv
import os

import cv2
import numpy as np
import pytest

from emotion_mx.errors import BadItem
from emotion_mx.features.face import extract_faces

DATA = os.environ.get("EMOTION_MX_DATA")


def noise_image(path, height=120, width=200, seed=0):
    rng = np.random.default_rng(seed)
    cv2.imwrite(str(path), rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
    return path


def write_video(path, num_frames=50, fps=25.0, size=(160, 120)):
    """MJPG avi whose frame i has brightness 4 * i (so a frame's index can be read back)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    assert writer.isOpened()
    for i in range(num_frames):
        writer.write(np.full((size[1], size[0], 3), 4 * i, dtype=np.uint8))
    writer.release()
    return path


def test_no_face_falls_back_to_centre_crop(tmp_path):
    out = extract_faces(noise_image(tmp_path / "noise.png"), is_image=True, size=32)
    assert out["frames"].shape == (1, 1, 32, 32) and out["frames"].dtype == np.uint8
    assert out["face_found"].tolist() == [0]
    assert out["times"].tolist() == [0.0] and out["times"].dtype == np.float32


def test_centre_crop_is_the_central_square(tmp_path):
    image = np.zeros((100, 300, 3), np.uint8)
    image[:, 100:200] = 255                                     # the central 100x100 square
    cv2.imwrite(str(tmp_path / "bars.png"), image)
    out = extract_faces(tmp_path / "bars.png", is_image=True, size=20)
    assert out["face_found"][0] == 0 and out["frames"].min() == 255


def test_detect_false_resizes_whole_image(tmp_path):
    image = np.zeros((48, 48, 3), np.uint8)
    image[:24] = 200
    cv2.imwrite(str(tmp_path / "crop.png"), image)
    out = extract_faces(tmp_path / "crop.png", is_image=True, size=24, detect=False)
    assert out["face_found"].tolist() == [1]
    frame = out["frames"][0, 0]                                 # (24, 24)
    assert frame[:11].min() == 200 and frame[13:].max() == 0    # whole image, not a crop


def test_rgb_vs_gray_channels(tmp_path):
    image = np.zeros((60, 60, 3), np.uint8)
    image[..., 2] = 255                                          # pure red in BGR
    cv2.imwrite(str(tmp_path / "red.png"), image)
    rgb = extract_faces(tmp_path / "red.png", is_image=True, grayscale=False, detect=False)
    gray = extract_faces(tmp_path / "red.png", is_image=True, grayscale=True, detect=False)
    assert rgb["frames"].shape == (1, 3, 48, 48) and gray["frames"].shape == (1, 1, 48, 48)
    assert rgb["frames"][0, 0].min() == 255 and rgb["frames"][0, 1:].max() == 0  # channel 0 = R
    assert abs(int(gray["frames"][0, 0, 0, 0]) - 76) <= 1                         # 0.299 * 255


def test_video_frames_spread_over_segment(tmp_path):
    video = write_video(tmp_path / "clip.avi", num_frames=50, fps=25.0)   # 2.0 s
    out = extract_faces(video, is_image=False, start=0.4, end=1.6, num_frames=6, size=32)
    assert out["frames"].shape == (6, 1, 32, 32)
    assert out["face_found"].shape == (6,) and not out["face_found"].any()
    times = out["times"]
    assert times.dtype == np.float32 and np.all(np.diff(times) > 0)
    assert 0.4 <= times[0] and times[-1] <= 1.6
    index = np.round(times * 25).astype(int)
    brightness = out["frames"][:, 0].mean(axis=(1, 2))          # frame i was written as 4 * i
    np.testing.assert_allclose(brightness, 4 * index, atol=3)


def test_whole_video_and_more_samples_than_frames(tmp_path):
    video = write_video(tmp_path / "short.avi", num_frames=5, fps=10.0)
    out = extract_faces(video, is_image=False, num_frames=8, grayscale=False)
    assert out["frames"].shape == (8, 3, 48, 48)
    assert np.all(np.diff(out["times"]) >= 0) and out["times"][-1] < 0.5


def test_segment_outside_video(tmp_path):
    video = write_video(tmp_path / "clip.avi", num_frames=10, fps=10.0)
    with pytest.raises(BadItem, match="outside the video"):
        extract_faces(video, is_image=False, start=5.0)


def test_corrupt_and_missing_files(tmp_path):
    junk = np.random.default_rng(0).bytes(5000)
    (tmp_path / "bad.avi").write_bytes(b"RIFF" + junk)
    (tmp_path / "bad.png").write_bytes(junk)
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(BadItem, match="video"):
        extract_faces(tmp_path / "bad.avi", is_image=False)
    with pytest.raises(BadItem, match="video"):
        extract_faces(tmp_path / "empty.mp4", is_image=False)
    with pytest.raises(BadItem, match="cannot decode image"):
        extract_faces(tmp_path / "bad.png", is_image=True)
    with pytest.raises(BadItem, match="not found"):
        extract_faces(tmp_path / "nope.jpg", is_image=True)


@pytest.mark.skipif(not DATA, reason="set EMOTION_MX_DATA to the shared data folder")
def test_haar_finds_faces_on_ckplus48():
    root = os.path.join(DATA, "ckplus48")
    with open(os.path.join(root, "labels.csv"), newline="") as f:
        files = [row["file"] for row in csv.DictReader(f)][::20]
    found = [extract_faces(os.path.join(root, name), is_image=True)["face_found"][0] for name in files]
    assert np.mean(found) > 0.9
    out = extract_faces(os.path.join(root, files[0]), is_image=True, detect=False)
    assert out["frames"].shape == (1, 1, 48, 48) and out["face_found"][0] == 1


def test_undecodable_frame_shows_its_predecessor(tmp_path, monkeypatch):
    """A packet that fails to decode: its time shows the previous frame (as a player would)."""
    import av
    from emotion_mx.features import frames as fr
    video = write_video(tmp_path / "clip.avi", num_frames=50, fps=25.0)
    real_decode = fr._decode

    def flaky_decode(packet):
        if packet.pts is not None and round(float(packet.pts * packet.time_base) * 25) == 18:
            raise av.error.InvalidDataError(1094995529, "corrupt")   # frame 18 (t = 0.72 s)
        return real_decode(packet)

    monkeypatch.setattr(fr, "_decode", flaky_decode)
    out = extract_faces(video, is_image=False, num_frames=4)
    index = np.round(out["times"] * 25).astype(int)
    assert index.tolist() == [6, 17, 31, 43]      # 0.75 s: frame 18 unreadable, 17 is shown
    np.testing.assert_allclose(out["frames"][:, 0].mean(axis=(1, 2)), 4 * index, atol=3)
