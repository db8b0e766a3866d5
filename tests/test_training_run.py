"""Run directories: resume equivalence, early stopping and selection on validation only,
end-to-end train → evaluate → crossval → distill on a tiny synthetic store, CLI errors."""
import json
import os
import subprocess
import sys

import mxnet as mx
import numpy as np
import pytest

from emotion_mx import artifacts
from emotion_mx.config import DatasetConfig, load_config
from emotion_mx.errors import ConfigError
from emotion_mx.training.checkpoint import latest_checkpoint
from emotion_mx.training.config import load_train_config
from emotion_mx.training.trainer import fit

from test_training_support import LABELS, TinyNet, small_config, synth_split

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
QUIET = dict(progress=False, echo=lambda *a: None)


class _Killed(Exception):
    pass


def _params(net):
    return {k[k.index("_") + 1:]: p.data().asnumpy() for k, p in net.collect_params().items()}


def test_resume_continues_exactly(tmp_path):
    cfg = small_config(epochs=4)          # dropout + augmentation + warm-up + cosine: all seeded
    train, valid = synth_split(80, 0), synth_split(24, 1)
    straight = fit(TinyNet(3), train, valid, cfg, run_dir=str(tmp_path / "a"), labels=LABELS,
                   modalities=("audio",), tensorboard=False, **QUIET)

    def kill_after_epoch_2(msg):
        if msg.startswith("epoch 2:"):
            raise _Killed()               # after the epoch-2 checkpoint, like a SIGKILL
    with pytest.raises(_Killed):
        fit(TinyNet(3), train, valid, cfg, run_dir=str(tmp_path / "b"), labels=LABELS, modalities=("audio",),
            progress=False, echo=kill_after_epoch_2, tensorboard=False)
    assert latest_checkpoint(str(tmp_path / "b")).endswith("epoch-0002")
    resumed = fit(TinyNet(3), train, valid, cfg, run_dir=str(tmp_path / "b"), labels=LABELS,
                  modalities=("audio",), resume=True, tensorboard=False, **QUIET)
    pa, pb = _params(straight.net), _params(resumed.net)
    assert pa.keys() == pb.keys()
    for k in pa:
        np.testing.assert_allclose(pb[k], pa[k], atol=1e-5, err_msg=k)
    assert [r["valid_unweighted_accuracy"] for r in resumed.history] == \
           [r["valid_unweighted_accuracy"] for r in straight.history]
    assert resumed.best_epoch == straight.best_epoch and len(resumed.history) == 4
    rows = open(tmp_path / "b" / "metrics.csv").read().strip().splitlines()
    assert len(rows) == 5                 # header + 4 epochs, no duplicates after resuming


def test_early_stopping_and_best_follow_validation(tmp_path):
    cfg = small_config(epochs=10, patience=2, optim={"lr": 1e-9, "warmup_epochs": 0.0, "schedule": "constant"})
    res = fit(TinyNet(3), synth_split(48, 0), synth_split(24, 1), cfg, run_dir=str(tmp_path), labels=LABELS,
              modalities=("audio",), **QUIET)
    ua = [r["valid_unweighted_accuracy"] for r in res.history]
    assert res.stopped_early and res.epochs_run < 10
    assert res.best_epoch == 1 + int(np.argmax(ua)) and res.best_score == pytest.approx(max(ua))
    best = json.load(open(tmp_path / "best.json"))
    assert best["split"] == "valid" and best["epoch"] == res.best_epoch
    for name in ("best.params", "metrics.csv", "curves.png"):
        assert os.path.isfile(tmp_path / name)
    assert os.listdir(tmp_path / "tensorboard")


# ------------------------------------------------------------------------------------------
# a tiny synthetic tri-modal store (emotion_mx.demo + emotion_mx.build)
# ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def store(tmp_path_factory):
    pytest.importorskip("espeakng_loader")
    from emotion_mx.build import build_dataset
    from emotion_mx.demo import make_demo_corpus
    base = tmp_path_factory.mktemp("store")
    make_demo_corpus(str(base / "corpus"), per_class_per_speaker=1)
    cfg = load_config(os.path.join(ROOT, "configs", "datasets", "demo.yaml"), DatasetConfig)
    build_dataset(cfg.corpus, str(base / "corpus"), str(base / "store"), cfg=cfg, workers=1, progress=False)
    return str(base / "store")


def _tiny_cfg(**over):
    base = {"model": {"name": "mid_tiny"}, "data": {"modalities": ["audio", "text", "video"],
                                                    "max_audio_frames": 200, "max_tokens": 12},
            "epochs": 2, "batch_size": 8, "patience": None, "optim": {"lr": 0.002},
            "augment": {"noise_std": 0.05, "face_flip": 0.5, "time_masks": 1}}
    base.update(over)
    return load_train_config(None, base)


def test_train_reads_only_train_and_valid_then_evaluates_test(store, tmp_path, monkeypatch):
    from emotion_mx import data as data_mod
    from emotion_mx.training import evaluate_run, train
    requested = []
    real_ids = data_mod.FeatureStore.ids
    monkeypatch.setattr(data_mod.FeatureStore, "ids",
                        lambda self, fold, split: requested.append(split) or real_ids(self, fold, split))
    run = str(tmp_path / "run")
    res = train(_tiny_cfg(), store, run, fold=0, contexts=[mx.cpu(0), mx.cpu(1)], **QUIET)
    assert set(requested) == {"train", "valid"}            # selection never sees test
    assert res.epochs_run == 2
    for name in ("config.yaml", "labels.json", "norm.json", "vocab.json", "model.json", "best.params",
                 "metrics.csv", "curves.png"):
        assert os.path.isfile(os.path.join(run, name)), name
    spec = artifacts.load_model_spec(run)
    assert spec["modalities"] == ["audio", "text", "video"] and spec["inputs"]["audio"] == [200, 64]
    assert spec["kwargs"]["vocab_size"] > 0 and spec.data.max_tokens == 12
    net, _ = artifacts.load_run_model(run)                  # rebuilds through the registry
    requested.clear()
    m = evaluate_run(run, store, split="test")
    assert requested == ["test"]
    assert set(m) >= {"accuracy", "unweighted_accuracy", "macro_f1", "weighted_f1", "per_class",
                      "confusion_matrix", "labels"}
    assert np.array(m["confusion_matrix"]).sum() == m["num_samples"] > 0
    assert os.path.isfile(os.path.join(run, "eval", "metrics.json"))
    assert os.path.isfile(os.path.join(run, "eval", "confusion.png"))


def test_crossval_and_distill(store, tmp_path):
    from emotion_mx.training import cross_validate, distill, format_report
    out = str(tmp_path / "cv")
    res = cross_validate(_tiny_cfg(epochs=1), store, out, folds="0", seeds=(0, 1), **QUIET)
    assert len(res["runs"]) == 2 and "±" in res["markdown"]
    summary = json.load(open(os.path.join(out, "results.json")))["summary"]
    assert summary["unweighted_accuracy"]["std"] >= 0 and len(summary["accuracy"]["values"]) == 2
    assert os.path.isfile(os.path.join(out, "results.md"))

    report = distill(os.path.join(out, "fold0-seed0"), "mid_student", store, str(tmp_path / "student"),
                     alpha=0.7, temperature=3.0, epochs=1, **QUIET)
    for role in ("teacher", "student"):
        assert report[role]["params"] > 0 and report[role]["latency_ms_batch1"] > 0
        assert 0 <= report[role]["unweighted_accuracy"] <= 1
    # (mid_student is sized against mid_base; the tiny teacher here happens to be smaller)
    assert report["param_ratio"] == pytest.approx(report["student"]["params"] / report["teacher"]["params"])
    assert report["feature_matching"] is False and "feature matching: off" in report["note"]
    assert "teacher" in format_report(report)
    assert os.path.isfile(tmp_path / "student" / "distill.json")

    # feature matching: same seed and data, so the only difference in the loss is the feature term
    fm = distill(os.path.join(out, "fold0-seed0"), "mid_student", store, str(tmp_path / "student-fm"),
                 alpha=0.7, temperature=3.0, feature_weight=50.0, epochs=1, **QUIET)
    assert fm["feature_matching"] is True and "similarity-preserving" in fm["note"]
    loss = {d: float(open(os.path.join(tmp_path, d, "metrics.csv")).read().splitlines()[1].split(",")[2])
            for d in ("student", "student-fm")}
    assert loss["student-fm"] > loss["student"] + 1e-4, loss


def _cli(*args):
    return subprocess.run([sys.executable] + list(args), cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_cli_errors_are_one_line(tmp_path):
    missing = str(tmp_path / "no-store")
    for args in (["tools/train.py", "--data", missing, "--out", str(tmp_path / "r")],
                 ["tools/train.py", "--data", missing, "--out", str(tmp_path / "r"), "--modalities", "audio,smell"],
                 ["tools/train.py", "--config", str(tmp_path / "none.yaml"), "--data", missing, "--out", "x"],
                 ["tools/evaluate.py", "--run", str(tmp_path), "--data", missing],
                 ["tools/crossval.py", "--data", missing, "--out", str(tmp_path / "cv")]):
        p = _cli(*args)
        assert p.returncode == 2, (args, p.stderr)
        lines = [ln for ln in p.stderr.strip().splitlines() if not ln.startswith("WARNING")]
        assert len(lines) == 1 and lines[0].startswith("error: "), p.stderr
        assert "Traceback" not in p.stderr


def test_amp_cli_bfloat16_on_avx512_or_one_message(store, tmp_path):
    """--amp on CPU: where the CPU has AVX-512 a timed probe picks fp32 or bf16 (one line naming the
    choice, recorded in model.json), else one message + float32."""
    from emotion_mx.training.amp import PROBE_CHOICES, PROBE_LABELS, cpu_has_avx512
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text("model: {name: mid_tiny}\ndata: {modalities: [audio, text, video], max_audio_frames: 200, "
                   "max_tokens: 12}\nepochs: 1\nbatch_size: 8\n")
    run = tmp_path / "amp-run"
    p = _cli("tools/train.py", "--config", str(cfg), "--data", store, "--out", str(run), "--amp", "--quiet")
    assert p.returncode == 0, p.stderr[-3000:]
    precision = artifacts.load_model_spec(str(run))["precision"]
    if cpu_has_avx512():
        probe = [ln for ln in p.stdout.splitlines() if ln.startswith("--amp probe")]
        assert precision in PROBE_CHOICES and len(probe) == 1, p.stdout
        assert probe[0].split("; ")[-1].startswith(f"training in {PROBE_LABELS[precision].replace('fp32', 'float32')}")
    else:
        assert precision == "float32" and p.stdout.count("--amp:") == 1


def test_resumed_warm_start_keeps_the_trained_encoder(store, tmp_path):
    """A warm-started run resumed after epoch 1 ends where the uninterrupted run ends: the
    checkpoint's trained encoder is kept, not replaced by the source run's again."""
    from emotion_mx.training import train
    src = str(tmp_path / "audio")
    train(_tiny_cfg(data={"modalities": ["audio"], "max_audio_frames": 200}, epochs=1), store, src, fold=0, **QUIET)
    cfg = _tiny_cfg(init={"encoders": {"audio": src}, "encoder_lr_mult": 1.0}, epochs=2)
    straight = train(cfg, store, str(tmp_path / "a"), fold=0, **QUIET)

    def kill_after_epoch_1(msg):
        if msg.startswith("epoch 1:"):
            raise _Killed()
    with pytest.raises(_Killed):
        train(cfg, store, str(tmp_path / "b"), fold=0, progress=False, echo=kill_after_epoch_1)
    resumed = train(cfg, store, str(tmp_path / "b"), fold=0, resume=True, **QUIET)
    pa, pb = _params(straight.net), _params(resumed.net)
    enc = [k for k in pa if "audio_enc" in k]
    assert enc and pa.keys() == pb.keys()
    for k in pa:
        np.testing.assert_allclose(pb[k], pa[k], atol=1e-5, err_msg=k)


def test_warm_start_copies_encoders_of_the_same_fold_only(store, tmp_path):
    """init.encoders: the audio encoder of a fold-0 audio-only run is copied into a tri-modal
    run (lr_mult 0 keeps it bit-identical); a fold-1 source or another encoder size is refused."""
    from emotion_mx.errors import EmotionMXError
    from emotion_mx.training import train
    src = str(tmp_path / "audio-fold{fold}")
    for fold in (0, 1):
        train(_tiny_cfg(data={"modalities": ["audio"], "max_audio_frames": 200}, epochs=1),
              store, src.format(fold=fold), fold=fold, **QUIET)
    source = {k: v.asnumpy() for k, v in mx.nd.load(os.path.join(src.format(fold=0), "best.params")).items()
              if k.startswith("audio_enc.") and "running_" not in k}
    assert len(source) >= 4

    run = str(tmp_path / "warm")
    res = train(_tiny_cfg(init={"encoders": {"audio": src}, "encoder_lr_mult": 0.0}), store, run, fold=0, **QUIET)
    after = {k: p.data().asnumpy() for k, p in res.net._collect_params_with_prefix().items()}
    for k, v in source.items():
        np.testing.assert_array_equal(after[k], v, err_msg=k)            # copied, then frozen
    moved = [k for k in after if k.startswith("text_enc.")]
    assert moved                                                        # the rest was trained
    spec = artifacts.load_model_spec(run)
    assert spec["warm_start"]["encoders"] == {"audio": os.path.abspath(src.format(fold=0))}

    with pytest.raises(EmotionMXError, match="trained on fold 1, this run is fold 0"):
        train(_tiny_cfg(init={"encoders": {"audio": src.format(fold=1)}}), store, str(tmp_path / "leak"),
              fold=0, **QUIET)
    with pytest.raises(EmotionMXError, match="audio_enc.*has shape"):
        train(_tiny_cfg(model={"name": "mid_tiny", "kwargs": {"units": 48}}, init={"encoders": {"audio": src}}),
              store, str(tmp_path / "wide"), fold=0, **QUIET)
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "model.json").write_text(open(os.path.join(src.format(fold=0), "model.json")).read())
    (corrupt / "best.params").write_bytes(b"not an ndarray file")
    with pytest.raises(EmotionMXError, match="not a readable parameter file"):
        train(_tiny_cfg(init={"encoders": {"audio": str(corrupt)}}), store, str(tmp_path / "c"), fold=0, **QUIET)
    with pytest.raises(ConfigError, match="not in data.modalities"):
        _tiny_cfg(data={"modalities": ["text"]}, init={"encoders": {"audio": src}})
