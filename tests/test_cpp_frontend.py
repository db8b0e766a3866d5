"""C++ wrapper on raw audio (issue 12 item 5): the C++ Whisper log-mel front end against
``whisper_logmel`` (librosa), C++ ``--audio`` logits against the MXNet model on Python features,
and the error lines of unsupported WAV files and models."""
import json
import os
import shutil
import subprocess

import mxnet as mx
import numpy as np
import pytest
import soundfile as sf

from emotion_mx import artifacts as A
from emotion_mx.contract import input_names
from emotion_mx.data import assemble_inputs
from emotion_mx.deploy import cpp
from emotion_mx.deploy.testing import LABELS, make_whisper_logmel_export
from emotion_mx.errors import EmotionMXError
from emotion_mx.features.whisper_frontend import WHISPER_FRONTEND, whisper_logmel

SR = WHISPER_FRONTEND["sample_rate"]
FRAMES = 400                    # the test models' audio length T (4 s)
# Measured: 1.2e-7 (one float32 ulp of the output) on synthetic and EmoDB clips.
FEATURE_TOL = 1e-5
LOGIT_TOL = 1e-3


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("frontend_models")
    out = {name: str(root / name) for name in ("audio", "tri", "plain", "short")}
    nets = {"audio": make_whisper_logmel_export(out["audio"], audio_frames=FRAMES),
            "tri": make_whisper_logmel_export(out["tri"], "mid_tiny", modalities=None, audio_frames=FRAMES, seed=1)}
    make_whisper_logmel_export(out["plain"], audio_frames=FRAMES, whisper=False)
    make_whisper_logmel_export(out["short"], audio_frames=FRAMES, max_seconds=4.5)   # store cut at 4.5 s
    return {"dirs": out, "nets": nets}


def tone(seconds, seed=0, channels=1):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    wave = 0.3 * np.sin(2 * np.pi * 220 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t)) + 0.05 * rng.standard_normal(len(t))
    wave[int(0.4 * SR):int(0.6 * SR)] = 0.0                       # exact silence: the log floor
    if channels == 1:
        return wave.astype(np.float32)
    return np.stack([wave * (0.5 + 0.5 * c) for c in range(channels)], axis=1).astype(np.float32)


def write_wav(path, wave, subtype="PCM_16", rate=SR):
    sf.write(str(path), wave, rate, subtype=subtype)
    return str(path)


def decoded(path):
    """The waveform as the project decodes a WAV (soundfile, channels averaged)."""
    x, rate = sf.read(path, dtype="float32", always_2d=True)
    assert rate == SR
    return x.mean(axis=1)


def cpp_features(binary, model_dir, wavs, tmp_path):
    dump = str(tmp_path / "features.npy")
    out = cpp.run_audio(binary, model_dir, wavs, dump_features=dump)
    return np.load(dump), out


# ---- the front end itself ----------------------------------------------------------------------

def test_sidecar_names_the_front_end_only_for_whisper_logmel(models):
    audio = A.read_sidecar(models["dirs"]["audio"])
    assert audio["frontend"] == {"audio": {"kind": "whisper_logmel", **WHISPER_FRONTEND, "max_seconds": 30.0}}
    assert A.read_sidecar(models["dirs"]["short"])["frontend"]["audio"]["max_seconds"] == 4.5
    assert audio["format"] == "emotion_mx.exported/2"
    assert "frontend" not in A.read_sidecar(models["dirs"]["plain"])


@pytest.mark.parametrize("subtype,channels", [("PCM_16", 1), ("FLOAT", 1), ("PCM_16", 2), ("FLOAT", 3)])
def test_cpp_logmel_matches_librosa_on_a_synthetic_wav(cpp_binary, models, tmp_path, subtype, channels):
    wav = write_wav(tmp_path / "clip.wav", tone(3.7, channels=channels), subtype)
    ref = whisper_logmel(decoded(wav))                                         # (370, 80)
    got, out = cpp_features(cpp_binary, models["dirs"]["audio"], [wav], tmp_path)
    assert ref.shape == (370, 80) and got.shape == (1, FRAMES, 80)
    assert np.abs(got[0, :370] - ref).max() <= FEATURE_TOL
    assert not got[0, 370:].any()                                              # zero padding
    assert out["audio"] == [{"file": wav, "frames": 370, "used_frames": 370}]


def test_a_clip_longer_than_the_model_is_cut_after_the_front_end(cpp_binary, models, tmp_path):
    """The floor (max - 8) is taken over the whole clip, as whisper_logmel does; then cut to T."""
    wave = tone(5.0, seed=3)
    wave[int(4.5 * SR):] *= 8.0                     # the loudest part lies beyond the model's 4 s
    wav = write_wav(tmp_path / "long.wav", wave, "FLOAT")
    ref = whisper_logmel(decoded(wav))
    got, out = cpp_features(cpp_binary, models["dirs"]["audio"], [wav], tmp_path)
    assert ref.shape == (500, 80)
    assert np.abs(got[0] - ref[:FRAMES]).max() <= FEATURE_TOL
    assert out["audio"][0]["frames"] == 500 and out["audio"][0]["used_frames"] == FRAMES


def test_audio_is_cut_at_the_stores_max_seconds_before_the_front_end(cpp_binary, models, tmp_path):
    """The store build cuts the waveform at audio.max_seconds (4.5 s here), then computes the
    features: a loud tail after 4.5 s must not move the floor."""
    wave = tone(6.0, seed=8)
    wave[int(5.0 * SR):] *= 30.0
    wav = write_wav(tmp_path / "long.wav", wave, "FLOAT")
    ref = whisper_logmel(decoded(wav)[:int(4.5 * SR)])                         # (450, 80)
    got, out = cpp_features(cpp_binary, models["dirs"]["short"], [wav], tmp_path)
    assert np.abs(got[0] - ref[:FRAMES]).max() <= FEATURE_TOL
    assert out["audio"][0]["frames"] == 450
    assert np.abs(got[0] - whisper_logmel(decoded(wav))[:FRAMES]).max() > 0.1   # the uncut clip differs


def test_cpp_logmel_matches_librosa_on_real_emodb(cpp_binary, models, real_data, tmp_path):
    from emotion_mx.features.audio import load_audio
    src = os.path.join(real_data, "emodb", "wav")
    if not os.path.isdir(src):
        pytest.skip(f"no emodb/wav under {real_data}")
    files = sorted(os.listdir(src))[:3]
    wavs, refs = [], []
    for i, name in enumerate(files):               # EmoDB is 22.05 kHz: resampled as the project does
        wave = load_audio(os.path.join(src, name), sample_rate=SR)
        wavs.append(write_wav(tmp_path / f"{i}.wav", wave, "FLOAT"))
        refs.append(whisper_logmel(wave))
    got, out = cpp_features(cpp_binary, models["dirs"]["audio"], wavs, tmp_path)
    assert got.shape == (3, FRAMES, 80)
    for i, ref in enumerate(refs):
        n = len(ref)
        assert n == 200 and out["audio"][i]["frames"] == n                   # 2.0 s clips
        assert np.abs(got[i, :n] - ref).max() <= FEATURE_TOL
    # the original 22.05 kHz file is refused with what to do
    rc, lines = run_raw(cpp_binary, ["--model", models["dirs"]["audio"], "--audio", os.path.join(src, files[0])])
    assert rc == 2 and len(lines) == 1 and "22050 Hz" in lines[0] and "resample to 16000 Hz" in lines[0], lines


# ---- end to end: C++ --audio logits against the MXNet model on Python features -----------------

def python_audio_inputs(model_dir, wavs):
    """Inputs audio/audio_mask from whisper_logmel, through the data pipeline's assemble_inputs."""
    settings = A.exported_settings(A.read_sidecar(model_dir))
    x = assemble_inputs([{"whisper_logmel": whisper_logmel(decoded(w))} for w in wavs], ("audio",),
                        settings, norm=None)
    return x["audio"], x["audio_mask"]


def test_cpp_audio_logits_match_the_mxnet_model(cpp_binary, models, tmp_path):
    wavs = [write_wav(tmp_path / "a.wav", tone(2.3, seed=1)),
            write_wav(tmp_path / "b.wav", tone(4.6, seed=2, channels=2), "FLOAT")]
    x, m = python_audio_inputs(models["dirs"]["audio"], wavs)
    ref = models["nets"]["audio"](mx.nd.array(x), mx.nd.array(m)).asnumpy()
    out = cpp.run_audio(cpp_binary, models["dirs"]["audio"], wavs)
    got = np.asarray(out["logits"], np.float32)
    assert got.shape == ref.shape == (2, 4)
    assert np.abs(got - ref).max() <= LOGIT_TOL
    assert out["predicted"] == [LABELS[i] for i in ref.argmax(1)]


def test_cpp_audio_matches_the_python_raw_media_path(cpp_binary, models, tmp_path):
    """emotion_mx.api (load_audio → whisper features → assemble_inputs → the exported model)
    and emotion_predict --audio give the same probabilities for the same WAV files."""
    from emotion_mx.api import EmotionRecognizer
    wavs = [write_wav(tmp_path / "a.wav", tone(2.7, seed=9)),
            write_wav(tmp_path / "b.wav", tone(3.3, seed=10, channels=2), "FLOAT")]
    py = EmotionRecognizer.load(models["dirs"]["audio"])
    ref = np.array([[py.predict(audio=w).probabilities[l] for l in LABELS] for w in wavs])
    got = np.asarray(cpp.run_audio(cpp_binary, models["dirs"]["audio"], wavs)["probabilities"])
    assert np.abs(got - ref).max() <= 1e-5


def test_cpp_audio_runs_a_whisper_encoder_graph(cpp_binary, tmp_path):
    """The whisper_tiny_en preset (Whisper-tiny encoder slot, random weights), 3 s of audio."""
    model = str(tmp_path / "whisper")
    net = make_whisper_logmel_export(model, "whisper_tiny_en", audio_frames=300)
    wav = write_wav(tmp_path / "c.wav", tone(2.5, seed=4))
    x, m = python_audio_inputs(model, [wav])
    ref = net(mx.nd.array(x), mx.nd.array(m)).asnumpy()
    got = np.asarray(cpp.run_audio(cpp_binary, model, [wav])["logits"], np.float32)
    assert got.shape == ref.shape == (1, 4)
    assert np.abs(got - ref).max() <= LOGIT_TOL


def test_other_modalities_come_from_npy_or_are_missing(cpp_binary, models, tmp_path):
    """Tri-modal model: text from --input, video given neither way → zeros with a zero mask."""
    wav = write_wav(tmp_path / "a.wav", tone(3.0, seed=5))
    sidecar = A.read_sidecar(models["dirs"]["tri"])
    shapes = {i["name"]: i["shape"][1:] for i in sidecar["inputs"]}
    rng = np.random.default_rng(0)
    text = rng.integers(4, 60, size=(1, *shapes["text"])).astype(np.float32)
    text_mask = np.zeros((1, *shapes["text_mask"]), np.float32)
    text_mask[0, :5] = 1.0
    x, m = python_audio_inputs(models["dirs"]["tri"], [wav])
    ref = models["nets"]["tri"](*[mx.nd.array(a) for a in (
        x, m, text, text_mask, np.zeros((1, *shapes["video"]), np.float32),
        np.zeros((1, *shapes["video_mask"]), np.float32))]).asnumpy()
    assert input_names(sidecar["modalities"]) == ["audio", "audio_mask", "text", "text_mask", "video", "video_mask"]
    out = cpp.run_audio(cpp_binary, models["dirs"]["tri"], [wav], inputs={"text": text, "text_mask": text_mask})
    assert np.abs(np.asarray(out["logits"], np.float32) - ref).max() <= LOGIT_TOL
    # a modality with its input but not its mask is not "missing": it is an error
    with pytest.raises(EmotionMXError, match="missing input 'text_mask'"):
        cpp.run_audio(cpp_binary, models["dirs"]["tri"], [wav], inputs={"text": text})


def test_cpp_predict_cli_takes_wav_files(cpp_binary, models, tmp_path):
    from click.testing import CliRunner
    from emotion_mx.commands.cpp_predict import main
    wavs = [write_wav(tmp_path / "a.wav", tone(2.0, seed=6)), write_wav(tmp_path / "b.wav", tone(3.0, seed=7))]
    x, m = python_audio_inputs(models["dirs"]["audio"], wavs)
    ref = models["nets"]["audio"](mx.nd.array(x), mx.nd.array(m)).asnumpy()
    res = CliRunner().invoke(main, ["--model", models["dirs"]["audio"], "--audio", wavs[0], "--audio", wavs[1],
                                    "--build-dir", os.path.dirname(cpp_binary)])
    assert res.exit_code == 0, res.output
    rows = [line.split("\t") for line in res.output.strip().splitlines()]
    assert [r[0] for r in rows] == wavs
    assert [r[1] for r in rows] == [LABELS[i] for i in ref.argmax(1)]
    with pytest.raises(EmotionMXError, match="no raw-audio front end"):
        cpp.predict_audio(models["dirs"]["plain"], wavs, build_dir=os.path.dirname(cpp_binary))
    res = CliRunner().invoke(main, ["--model", models["dirs"]["audio"]])
    assert isinstance(res.exception, EmotionMXError) and "either --data STORE or --audio" in str(res.exception)


# ---- bad input: one "error:" line, exit code 2 ------------------------------------------------

def run_raw(binary, args):
    proc = subprocess.run([binary] + args, capture_output=True, text=True)
    return proc.returncode, [line for line in proc.stderr.splitlines() if line.strip()]


@pytest.mark.parametrize("case,expect", [
    ("pcm8", ["8-bit PCM WAV is not supported", "only 16-bit PCM and 32-bit float"]),
    ("pcm24", ["24-bit PCM WAV is not supported"]),
    ("rate44k", ["44100 Hz audio", "resample to 16000 Hz"]),
    ("truncated", ["truncated WAV", "the data chunk claims"]),
    ("not_wav", ["not a WAV file"]),
    ("too_short", ["too short for the front end"]),
    ("no_frontend", ["no raw-audio front end", "--input audio=FILE.npy"]),
    ("other_frontend", ["model.json", "frontend.audio.kind 'mfcc' is not supported"]),
    ("audio_twice", ["do not also pass them with --input"]),
    ("dump_without_audio", ["--dump-features needs --audio"]),
])
def test_cpp_audio_bad_input_is_one_error_line(cpp_binary, models, tmp_path, case, expect):
    model = models["dirs"]["audio"]
    wav = str(tmp_path / "clip.wav")
    extra = []
    if case == "pcm8":
        write_wav(wav, tone(1.0), "PCM_U8")
    elif case == "pcm24":
        write_wav(wav, tone(1.0), "PCM_24")
    elif case == "rate44k":
        write_wav(wav, tone(1.0), rate=44100)
    elif case == "truncated":
        write_wav(wav, tone(1.0))
        with open(wav, "r+b") as f:
            f.truncate(os.path.getsize(wav) - 1000)
    elif case == "not_wav":
        np.save(str(tmp_path / "clip.npy"), np.zeros(3, np.float32))
        os.replace(str(tmp_path / "clip.npy"), wav)
    elif case == "too_short":
        write_wav(wav, tone(0.01))                                             # 160 samples
    elif case == "no_frontend":
        write_wav(wav, tone(1.0))
        model = models["dirs"]["plain"]
    elif case == "other_frontend":
        write_wav(wav, tone(1.0))
        model = str(tmp_path / "model")
        shutil.copytree(models["dirs"]["audio"], model)
        sidecar = json.load(open(os.path.join(model, A.SIDECAR)))
        sidecar["frontend"]["audio"]["kind"] = "mfcc"
        json.dump(sidecar, open(os.path.join(model, A.SIDECAR), "w"))
    elif case == "audio_twice":
        write_wav(wav, tone(1.0))
        np.save(str(tmp_path / "a.npy"), np.zeros((1, FRAMES, 80), np.float32))
        extra = ["--input", f"audio={tmp_path / 'a.npy'}"]
    args = ["--model", model] + ([] if case == "dump_without_audio" else ["--audio", wav]) + extra
    if case == "dump_without_audio":
        args += ["--dump-features", str(tmp_path / "f.npy")]
    rc, lines = run_raw(cpp_binary, args)
    assert rc == 2 and len(lines) == 1, lines
    assert lines[0].startswith("error: ") and all(e in lines[0] for e in expect), lines[0]
    if case in ("pcm8", "pcm24", "rate44k", "truncated", "not_wav", "too_short"):
        assert wav in lines[0]                                                 # names the file


def test_run_audio_raises_emotionmx_error(cpp_binary, models, tmp_path):
    wav = write_wav(tmp_path / "clip.wav", tone(1.0), rate=22050)
    with pytest.raises(EmotionMXError, match="resample to 16000 Hz"):
        cpp.run_audio(cpp_binary, models["dirs"]["audio"], [wav])
