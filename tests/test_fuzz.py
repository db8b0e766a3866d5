"""Property-based tests (Hypothesis) over the loaders of external input: manifest rows and files,
dataset/training configs, exported-model sidecars and run specs, feature-store shards, audio and
image files.  The property: bad input gives EmotionMXError (or BadItem, a subclass) and never
another exception type.  Bounded: few examples per test, no deadline, the file runs in seconds."""
import io
import json
import os
import tempfile

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings, strategies as hs

from emotion_mx.errors import BadItem, EmotionMXError

FAST = settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
MEDIA = settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))

json_scalar = hs.one_of(hs.none(), hs.booleans(), hs.integers(-2 ** 40, 2 ** 40),
                        hs.floats(allow_nan=True, allow_infinity=True), hs.text(max_size=12))
json_value = hs.recursive(json_scalar, lambda c: hs.one_of(hs.lists(c, max_size=3),
                                                           hs.dictionaries(hs.text(max_size=6), c, max_size=3)),
                          max_leaves=8)

MANIFEST_KEYS = ["id", "label", "group", "split", "audio", "video", "image", "text", "start", "end", "lang",
                 "meta", "bogus"]
VALID_ROW = {"id": "spk01_0001", "label": "anger", "group": "spk01", "split": "train", "audio": "a.wav",
             "text": "I said no.", "start": 0.5, "end": 2.0, "lang": "en", "meta": {"word_timings": "a.wdseg"}}
manifest_row = hs.one_of(
    hs.dictionaries(hs.sampled_from(MANIFEST_KEYS), json_value, max_size=8),
    # a valid row with one or two fields replaced or dropped (what a hand-written manifest gets wrong)
    hs.lists(hs.tuples(hs.sampled_from(MANIFEST_KEYS), hs.one_of(json_value, hs.just("__drop__"))),
             min_size=1, max_size=2).map(
        lambda changes: {k: v for k, v in {**VALID_ROW, **dict(changes)}.items() if v != "__drop__"}))


# ----------------------------------------------------------------------------- manifest

@FAST
@given(row=manifest_row)
def test_manifest_row_gives_an_utterance_or_one_error(row):
    from emotion_mx.manifest import Utterance
    try:
        it = Utterance.from_json(row, where="m.jsonl:1")
    except EmotionMXError as e:
        assert "\n" not in str(e)
        return
    assert isinstance(it.id, str) and "\x00" not in it.id and it.id.strip() == it.id
    assert all(isinstance(getattr(it, k), (str, type(None))) for k in ("audio", "video", "image", "text"))
    json.dumps(it.to_json())


@FAST
@given(lines=hs.lists(hs.one_of(hs.binary(max_size=40), manifest_row.map(lambda r: json.dumps(r).encode())),
                      max_size=5))
def test_manifest_file_reads_or_fails_with_one_error(lines):
    from emotion_mx.manifest import read_manifest
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "manifest.jsonl")
        with open(path, "wb") as f:
            f.write(b"\n".join(lines))
        try:
            read_manifest(path)
        except EmotionMXError:
            pass
        except UnicodeDecodeError:
            pytest.fail("non-UTF-8 manifest escaped as UnicodeDecodeError")


@FAST
@given(lines=hs.lists(manifest_row.map(json.dumps), min_size=1, max_size=5))
def test_manifest_reader_skips_bad_lines_with_reasons(lines):
    from emotion_mx.corpora import read_corpus
    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, "manifest.jsonl"), "w") as f:
            f.write("\n".join(lines) + "\n")
        try:
            items, skipped = read_corpus("manifest", d)
        except EmotionMXError:
            return
        assert len(items) + len(skipped) >= 1
        assert all(isinstance(r, str) and r for _, r in skipped)


# ----------------------------------------------------------------------------- configs

DATASET_KEYS = {"corpus": json_value, "shard_size": json_value, "reader": json_value,
                "audio": hs.dictionaries(hs.sampled_from(["sample_rate", "n_mels", "fmin", "fmax", "hop_ms",
                                                          "win_ms", "n_mfcc", "max_seconds", "x"]), json_value),
                "face": hs.dictionaries(hs.sampled_from(["num_frames", "size", "margin", "min_face"]), json_value),
                "splits": hs.dictionaries(hs.sampled_from(["folds", "seed"]), json_value),
                "text": hs.dictionaries(hs.sampled_from(["min_freq", "max_vocab", "vectors", "lower"]), json_value),
                "labels": json_value}
TRAIN_KEYS = {"seed": json_value, "epochs": json_value, "batch_size": json_value, "patience": json_value,
              "model": hs.dictionaries(hs.sampled_from(["name", "kwargs"]), json_value),
              "optim": hs.dictionaries(hs.sampled_from(["lr", "wd", "optimizer", "schedule", "warmup_epochs"]),
                                       json_value),
              "data": json_value, "init": json_value, "loss": json_value, "augment": json_value}


def _partial(keys):
    return hs.fixed_dictionaries({}, optional=keys)


@FAST
@given(data=_partial(DATASET_KEYS))
def test_dataset_config_loads_or_fails_with_one_error(data):
    from emotion_mx.config import DatasetConfig, from_dict
    try:
        from_dict(DatasetConfig, data, source="d.yaml")
    except EmotionMXError as e:
        assert "\n" not in str(e)


@FAST
@given(data=_partial(TRAIN_KEYS))
def test_train_config_loads_or_fails_with_one_error(data):
    from emotion_mx.training.config import load_train_config
    try:
        load_train_config(None, data)
    except EmotionMXError as e:
        assert "\n" not in str(e)


@FAST
@given(raw=hs.one_of(hs.binary(max_size=60), hs.text(max_size=60).map(lambda t: t.encode("utf-8"))))
def test_config_file_bytes_load_or_fail_with_one_error(raw):
    from emotion_mx.config import DatasetConfig, load_config
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "c.yaml")
        with open(path, "wb") as f:
            f.write(raw)
        try:
            load_config(path, DatasetConfig)
        except EmotionMXError:
            pass


# ----------------------------------------------------------------------------- sidecars and run specs

@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from emotion_mx.deploy.export import export
    from emotion_mx.deploy.testing import make_run
    root = tmp_path_factory.mktemp("fuzz_model")
    make_run(str(root / "run"), "audio_cnn")
    export(str(root / "run"), str(root / "model"))
    return str(root)


def _paths(d, prefix=()):
    out = []
    if isinstance(d, dict):
        for k, v in d.items():
            out.append(prefix + (k,))
            out += _paths(v, prefix + (k,))
    elif isinstance(d, list):
        for i, v in enumerate(d):
            out.append(prefix + (i,))
            out += _paths(v, prefix + (i,))
    return out


def _mutate(doc, path, value):
    target = doc
    for p in path[:-1]:
        target = target[p]
    if value == "__delete__" and isinstance(target, dict):
        del target[path[-1]]
    else:
        target[path[-1]] = value


@MEDIA
@given(data=hs.data())
def test_mutated_sidecar_reads_or_fails_with_one_error(model_dir, data):
    import shutil
    from emotion_mx import artifacts as A
    src = os.path.join(model_dir, "model")
    sidecar = json.load(open(os.path.join(src, A.SIDECAR)))
    paths = _paths(sidecar)
    for _ in range(data.draw(hs.integers(1, 3))):
        path = data.draw(hs.sampled_from(paths))
        try:
            _mutate(sidecar, path, data.draw(hs.one_of(json_value, hs.just("__delete__"),
                                                       hs.sampled_from(["../x", "/etc/passwd", "a\x00b"]))))
        except (KeyError, IndexError, TypeError):
            pass
    with tempfile.TemporaryDirectory() as d:
        dst = os.path.join(d, "m")
        shutil.copytree(src, dst)
        with open(os.path.join(dst, A.SIDECAR), "w") as f:
            json.dump(sidecar, f)
        try:
            sc = A.read_sidecar(dst)
        except EmotionMXError:
            return
        for key in ("vocab", "symbol_file", "params_file"):       # what it names stays inside
            if sc.get(key):
                assert os.path.realpath(os.path.join(dst, sc[key])).startswith(os.path.realpath(dst))


@MEDIA
@given(data=hs.data())
def test_mutated_model_spec_loads_or_fails_with_one_error(model_dir, data):
    import shutil
    from emotion_mx import artifacts as A
    src = os.path.join(model_dir, "run")
    spec = json.load(open(os.path.join(src, A.MODEL_SPEC)))
    path = data.draw(hs.sampled_from(_paths(spec)))
    _mutate(spec, path, data.draw(hs.one_of(json_value, hs.just("__delete__"))))
    with tempfile.TemporaryDirectory() as d:
        dst = os.path.join(d, "r")
        shutil.copytree(src, dst)
        with open(os.path.join(dst, A.MODEL_SPEC), "w") as f:
            json.dump(spec, f)
        try:
            A.load_model_spec(dst)
        except EmotionMXError:
            pass


# ----------------------------------------------------------------------------- .npy/.npz shards

@FAST
@given(cut=hs.integers(0, 4000), flips=hs.lists(hs.tuples(hs.integers(0, 4000), hs.integers(0, 255)), max_size=4))
def test_damaged_shard_is_removed_never_raised(cut, flips):
    from emotion_mx import store as st
    from emotion_mx.build import _existing
    with tempfile.TemporaryDirectory() as d:
        os.makedirs(os.path.join(d, st.SHARD_DIR))
        path = st.write_shard(d, "x", [("a", {"logmel": np.ones((5, 3), np.float32)}, {"label": "x"})])
        raw = bytearray(open(path, "rb").read())
        for pos, byte in flips:
            if pos < len(raw):
                raw[pos] = byte
        with open(path, "wb") as f:
            f.write(bytes(raw[:max(cut, 1)] if cut < len(raw) else raw))
        metas = _existing(d)
        assert set(metas) <= {"a"}
        assert bool(metas) == os.path.exists(path)


# ----------------------------------------------------------------------------- media files

def _wav_bytes():
    import soundfile as sf
    buf = io.BytesIO()
    sf.write(buf, (0.3 * np.sin(np.arange(1600) / 5.0)).astype(np.float32), 16000, format="WAV")
    return buf.getvalue()


WAV = _wav_bytes()


@MEDIA
@given(ext=hs.sampled_from([".wav", ".flac", ".mp3", ".mp4"]), cut=hs.integers(0, len(WAV)),
       flips=hs.lists(hs.tuples(hs.integers(0, len(WAV) - 1), hs.integers(0, 255)), max_size=6),
       junk=hs.binary(max_size=64))
def test_damaged_audio_is_a_bad_item_or_audio(ext, cut, flips, junk):
    from emotion_mx.features.audio import load_audio
    raw = bytearray(WAV[:cut]) + junk
    for pos, byte in flips:
        if pos < len(raw):
            raw[pos] = byte
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "a" + ext)
        with open(path, "wb") as f:
            f.write(bytes(raw))
        try:
            wave = load_audio(path, max_seconds=5.0)
        except BadItem:
            return
        assert wave.dtype == np.float32 and wave.ndim == 1 and np.isfinite(wave).all()


def _png_bytes():
    import cv2
    ok, buf = cv2.imencode(".png", (np.arange(64 * 64, dtype=np.uint32).reshape(64, 64) % 251).astype(np.uint8))
    return buf.tobytes()


PNG = _png_bytes()


@MEDIA
@given(ext=hs.sampled_from([".png", ".jpg"]), cut=hs.integers(0, len(PNG)),
       flips=hs.lists(hs.tuples(hs.integers(0, len(PNG) - 1), hs.integers(0, 255)), max_size=6))
def test_damaged_image_is_a_bad_item_or_a_face_crop(ext, cut, flips):
    from emotion_mx.features.face import extract_faces
    raw = bytearray(PNG[:cut])
    for pos, byte in flips:
        if pos < len(raw):
            raw[pos] = byte
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "f" + ext)
        with open(path, "wb") as f:
            f.write(bytes(raw))
        try:
            out = extract_faces(path, is_image=True, num_frames=1, size=16, detect=False)
        except BadItem:
            return
        assert out["frames"].shape == (1, 1, 16, 16)


@MEDIA
@given(w=hs.integers(1, 20000), h=hs.integers(1, 20000))
def test_image_header_size_is_bounded_before_decoding(w, h):
    """A PNG claiming w x h pixels (only the start of its data is there): refused over the limit."""
    import struct
    import zlib
    from emotion_mx.features.face import MAX_IMAGE_PIXELS, check_image_size
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    idat = b"IDAT" + zlib.compress(b"\0" * 64)          # a start of image data: Pillow stops at IDAT
    png = (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk))
           + struct.pack(">I", len(idat) - 4) + idat + struct.pack(">I", zlib.crc32(idat)))
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "h.png")
        with open(path, "wb") as f:
            f.write(png)
        if w * h > MAX_IMAGE_PIXELS:
            with pytest.raises(BadItem, match="over the limit"):
                check_image_size(path)
        else:
            check_image_size(path)


# ----------------------------------------------------------------------------- Python API arguments

# EMOTION_MX_FUZZ_EXAMPLES raises the example count for a long run (issue 24: >= 2,000 inputs)
API = settings(max_examples=int(os.environ.get("EMOTION_MX_FUZZ_EXAMPLES", "200")), deadline=None,
               suppress_health_check=list(HealthCheck))

any_number = hs.one_of(hs.integers(-10 ** 6, 10 ** 6), hs.floats(allow_nan=True, allow_infinity=True),
                       hs.booleans(), hs.none())
odd_value = hs.one_of(any_number, hs.text(max_size=8), hs.binary(max_size=8), hs.lists(hs.integers(), max_size=3),
                      hs.just({"a": 1}), hs.just(object()))
wave_array = hs.builds(
    lambda n, ch, dtype, special, seed: _wave_of(n, ch, dtype, special, seed),
    hs.integers(0, 40000), hs.sampled_from([0, 1, 2, 3]),
    hs.sampled_from(["float32", "float64", "int16", "int32", "uint8", "bool", "complex64", "object"]),
    hs.sampled_from(["none", "nan", "inf", "silent", "huge"]), hs.integers(0, 2 ** 16))
image_array = hs.builds(
    lambda h, w, c, dtype, special, seed: _image_of(h, w, c, dtype, special, seed),
    hs.integers(0, 80), hs.integers(0, 80), hs.sampled_from([None, 1, 2, 3, 4, 5]),
    hs.sampled_from(["uint8", "float32", "float64", "int16", "int64", "bool", "object"]),
    hs.sampled_from(["none", "nan", "over", "negative", "unit"]), hs.integers(0, 2 ** 16))


def _wave_of(n, ch, dtype, special, seed):
    rng = np.random.default_rng(seed)
    x = 0.3 * np.sin(np.arange(n) / 7.0) + 0.01 * rng.standard_normal(n)
    if ch == 0:
        x = x.reshape(n, 1, 1)[:, :, :] if n % 2 else x            # a 3-D array on odd lengths
    elif ch > 1:
        x = np.stack([x] * ch, 1)
    if special == "nan" and x.size:
        x.flat[x.size // 2] = np.nan
    elif special == "inf" and x.size:
        x.flat[0] = np.inf
    elif special == "silent":
        x = x * 0.0
    elif special == "huge":
        x = x * 1e30
    if dtype in ("int16", "int32", "uint8"):
        return np.nan_to_num(x * 30000, posinf=0, neginf=0).astype(dtype)
    return x.astype(dtype)


def _image_of(h, w, c, dtype, special, seed):
    rng = np.random.default_rng(seed)
    shape = (h, w) if c is None else (h, w, c)
    x = rng.uniform(0, 1, shape)
    if special == "nan" and x.size:
        x.flat[0] = np.nan
    elif special == "over":
        x = x * 300.0
    elif special == "negative":
        x = x - 2.0
    if dtype in ("uint8", "int16", "int64"):
        scale = 1.0 if special == "unit" else 255.0
        return np.nan_to_num(x * scale).astype(dtype)
    return x.astype(dtype)


audio_arg = hs.one_of(
    hs.none(), hs.tuples(wave_array, hs.one_of(hs.sampled_from([16000, 8000, 22050, 44100, 1, 0, -16000]),
                                               odd_value)),
    hs.just("/no/such/clip.wav"), hs.lists(odd_value, max_size=3), odd_value)
image_arg = hs.one_of(hs.none(), image_array, hs.just("/no/such/face.png"), odd_value)
text_arg = hs.one_of(hs.none(), hs.text(max_size=40), hs.just("hello\x00world"), hs.just("   "), odd_value)
seconds = hs.one_of(hs.none(), hs.floats(-5, 5), hs.floats(allow_nan=True, allow_infinity=True),
                    hs.integers(-3, 10), hs.booleans(), hs.text(max_size=3))
# plausible arguments (what a client means to send), then 0-2 of them replaced by hostile values:
# most calls reach the feature code and the model, not only the first argument check
# real files, written by the ``recognizer`` fixture (strategies are built at import time)
MEDIA_FILE = {"wav": "__wav__", "png": "__png__", "clip": "__clip__"}
plausible_kwargs = hs.fixed_dictionaries({}, optional={
    "audio": hs.one_of(hs.just(MEDIA_FILE["wav"]), hs.tuples(hs.builds(_wave_of, hs.integers(4000, 40000), hs.sampled_from([1, 2]),
                                 hs.sampled_from(["float32", "float64", "int16"]), hs.sampled_from(["none", "none", "huge"]),
                                 hs.integers(0, 2 ** 16)),
                       hs.sampled_from([16000, 8000, 22050, 44100]))),
    "text": hs.text(alphabet="abcdefghij klmnopqrstuvwxyzé,.!?\x00", min_size=1, max_size=40),
    "video": hs.just(MEDIA_FILE["clip"]),
    "image": hs.one_of(hs.builds(_image_of, hs.integers(1, 80), hs.integers(1, 80), hs.sampled_from([None, 3, 4]),
                                 hs.sampled_from(["uint8", "float32"]), hs.sampled_from(["none", "unit"]),
                                 hs.integers(0, 2 ** 16)), hs.just(MEDIA_FILE["png"])),
    "start": hs.one_of(hs.none(), hs.floats(0, 0.5)), "end": hs.one_of(hs.none(), hs.floats(1.0, 3)),
    "lang": hs.sampled_from(["en", "de"])}).map(lambda d: _consistent(dict(d)))


def _consistent(kw):
    """What a careful client sends: one face input, at least one input, a segment only with media."""
    if "image" in kw:
        kw.pop("video", None)
    if not any(k in kw for k in ("audio", "text", "image", "video")):
        kw["text"] = "hello there"
    if "audio" not in kw and "video" not in kw:
        kw.pop("start", None), kw.pop("end", None)
    return kw
hostile = {"audio": audio_arg, "text": text_arg, "image": image_arg, "start": seconds, "end": seconds,
           "video": hs.one_of(hs.just("/no/such.mp4"), odd_value),
           "lang": hs.one_of(hs.none(), hs.sampled_from(["en", "de", "xx"]), odd_value)}
api_kwargs = hs.builds(lambda base, changes: {**base, **dict(changes)}, plausible_kwargs,
                       hs.lists(hs.sampled_from(sorted(hostile)).flatmap(lambda k: hs.tuples(hs.just(k), hostile[k])),
                                max_size=2))


@pytest.fixture(scope="module")
def recognizer(tiny_export, tmp_path_factory):
    import cv2
    from emotion_mx import EmotionRecognizer
    from emotion_mx.inference.testing import face_image, tone_wave, write_face_clip, write_wav
    d = tmp_path_factory.mktemp("api_fuzz_media")
    files = {"__wav__": write_wav(str(d / "a.wav"), tone_wave(1.5)), "__png__": str(d / "f.png"),
             "__clip__": write_face_clip(str(d / "f.avi"), 1.0)}
    cv2.imwrite(files["__png__"], face_image(0.3))
    rec = EmotionRecognizer.load(tiny_export, batch_size=4)
    rec.media_files = files
    return rec


def _real_files(rec, kw):
    return {k: rec.media_files.get(v, v) if isinstance(v, str) else v for k, v in kw.items()}


def _check_api_outcome(call):
    """An EmotionResult (finite probabilities summing to 1) or an InputError: nothing else."""
    from emotion_mx.api import EmotionResult, InputError
    try:
        results = call()
    except InputError as e:
        assert "\n" not in str(e) and e.argument and e.reason
        return "refused"
    for r in results if isinstance(results, list) else [results]:
        assert isinstance(r, EmotionResult)
        p = np.array(list(r.probabilities.values()))
        assert np.isfinite(p).all() and abs(p.sum() - 1) < 1e-4 and r.label in r.probabilities
        json.dumps(r.to_json())
    return "result"


@pytest.mark.filterwarnings("ignore::RuntimeWarning")      # overflow in the power spectrum of 1e30 samples
@API
@given(kw=api_kwargs, strict=hs.booleans())
def test_api_predict_gives_a_result_or_an_input_error(recognizer, kw, strict):
    event(_check_api_outcome(lambda: recognizer.predict(**_real_files(recognizer, kw), strict=strict)))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@API
@given(inputs=hs.one_of(hs.lists(plausible_kwargs, min_size=1, max_size=6),
                        hs.lists(hs.one_of(api_kwargs, odd_value), max_size=5), odd_value, hs.just({"audio": "a.wav"})))
def test_api_predict_batch_gives_results_or_an_input_error(recognizer, inputs):
    if isinstance(inputs, list):
        inputs = [_real_files(recognizer, kw) if isinstance(kw, dict) else kw for kw in inputs]
    event(_check_api_outcome(lambda: recognizer.predict_batch(inputs)))
