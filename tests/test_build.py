"""Dataset building end to end: store files, bad items, strict mode, resume after a kill, loading."""
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from emotion_mx import store as st
from emotion_mx.build import build_dataset
from emotion_mx.config import DatasetConfig, FaceConfig, SplitConfig
from emotion_mx.data import FeatureStore, data_spec, load_arrays
from emotion_mx.demo import make_demo_corpus
from emotion_mx.errors import EmotionMXError
from emotion_mx.fileio import read_json
from emotion_mx.manifest import read_manifest, write_manifest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CFG = DatasetConfig(corpus="manifest", face=FaceConfig(detect=False, num_frames=4),
                    splits=SplitConfig(folds=3), shard_size=4)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """12 synthetic tri-modal items: 4 classes x 3 speakers."""
    root = tmp_path_factory.mktemp("corpus")
    make_demo_corpus(str(root), per_class_per_speaker=1, speakers=("en+m1", "en+f2", "en+m3"))
    return str(root)


@pytest.fixture(scope="module")
def built(corpus, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("store"))
    stats = build_dataset("manifest", corpus, out, cfg=CFG, progress=False)
    return out, stats


def test_store_files_and_counts(built):
    out, stats = built
    for name in ("manifest.jsonl", "labels.json", "folds.json", "stats.json", "index.json", "config.yaml",
                 "norm/fold0.json", "vocab/fold0.json"):
        assert os.path.isfile(os.path.join(out, name)), name
    assert stats["items"] == 12 and stats["skipped"] == 0
    assert stats["labels"] == {"anger": 3, "happiness": 3, "neutral": 3, "sadness": 3}
    assert read_json(os.path.join(out, "labels.json")) == ["anger", "happiness", "neutral", "sadness"]
    assert stats["aligned_items"] == 12                      # every item has speech + transcript
    index = read_json(os.path.join(out, "index.json"))
    assert len(index) == 12 and len(st.shard_paths(out)) == 3   # shard_size 4
    shapes = index["spk01_anger_00"]["shapes"]
    assert shapes["logmel"][1] == 64 and shapes["mfcc"][1] == 60 and shapes["prosody"][1] == 4
    assert shapes["frames"] == [4, 1, 48, 48]
    assert shapes["word_spans"][0] == len(index["spk01_anger_00"]["words"]) == shapes["logmel_words"][0]


def test_folds_speaker_independent_and_norm_from_train_only(built):
    out, _ = built
    store = FeatureStore(out)
    for f in range(store.num_folds):
        sides = {s: {store.by_id[i].group for i in store.ids(f, s)} for s in ("train", "valid", "test")}
        assert all(len(v) == 1 for v in sides.values())
        assert len(set.union(*sides.values())) == 3
        # the stored statistics are those of the train split's frames, recomputed here
        train = np.concatenate([store.array(i, "logmel") for i in store.ids(f, "train")])
        norm = store.norm(f)["logmel"]
        np.testing.assert_allclose(norm["mean"], train.mean(0), rtol=1e-4, atol=1e-3)
        np.testing.assert_allclose(norm["std"], train.std(0), rtol=1e-3, atol=1e-3)
        # and the fold vocabulary knows only train-split tokens
        vocab = store.vocab(f)
        train_tokens = {t for i in store.ids(f, "train") for t in store.tokens(i)}
        assert set(vocab.idx_to_token) - {"<unk>", "<pad>", "<bos>", "<eos>"} == train_tokens


def test_load_arrays_contract(built):
    out, _ = built
    store = FeatureStore(out)
    ids = store.ids(0, "test")
    spec = data_spec(store, 0, "audio,text,video", audio_feature="logmel+prosody")
    x, y = load_arrays(store, ids, ("audio", "text", "video"), fold=0, audio_feature="logmel+prosody")
    kw = spec["model_kwargs"]
    assert x["audio"].shape == (4, kw["audio_frames"], 68) and kw["audio_dim"] == 68
    assert x["text"].shape == x["text_mask"].shape == (4, kw["max_tokens"])
    assert x["video"].shape == (4, 4, 1, 48, 48) and x["video_mask"].shape == (4, 4)
    assert all(v.dtype == np.float32 for v in x.values()) and y.dtype == np.int32
    # padding is zero and masked; real frames are unmasked
    lengths = [store.array(i, "logmel").shape[0] for i in ids]
    for row, n in enumerate(lengths):
        n = min(n, kw["audio_frames"])
        assert x["audio_mask"][row, :n].all() and not x["audio_mask"][row, n:].any()
        assert not x["audio"][row, n:].any()
    assert sorted(y.tolist()) == [0, 1, 2, 3]


def _bad_corpus(corpus, tmp_path):
    """The fixture corpus plus one item per kind of bad input, in a new root."""
    root = tmp_path / "bad"
    root.mkdir()
    items = read_manifest(os.path.join(corpus, "manifest.jsonl"))
    import shutil
    for sub in ("audio", "video"):
        shutil.copytree(os.path.join(corpus, sub), root / sub)
    os.symlink(os.path.join(corpus, "audio"), root / "linked")     # leaves the root: refused
    (root / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt garbage")
    (root / "silent.wav").write_bytes(b"")
    import soundfile as sf
    sf.write(str(root / "zeros.wav"), np.zeros(16000, np.float32), 16000)
    base = items[0]
    bad = [
        base.replace(id="missing", audio="audio/nope.wav"),
        base.replace(id="corrupt", audio="broken.wav"),
        base.replace(id="empty_file", audio="silent.wav"),
        base.replace(id="silence", audio="zeros.wav"),
        base.replace(id="no_text", text="  "),
        base.replace(id="escape", audio="../outside.wav"),
        base.replace(id="symlink_escape", audio="linked/" + os.path.basename(base.audio)),
    ]
    write_manifest(str(root / "manifest.jsonl"), items + bad)
    return str(root), [b.id for b in bad]


def test_bad_items_are_skipped_with_reasons(corpus, tmp_path):
    root, bad_ids = _bad_corpus(corpus, tmp_path)
    stats = build_dataset("manifest", root, str(tmp_path / "store"), cfg=CFG, progress=False)
    reasons = {s["id"]: s["reason"] for s in stats["skipped_items"]}
    assert sorted(reasons) == sorted(bad_ids) and stats["items"] == 12
    assert "missing file" in reasons["missing"]
    assert "outside the corpus root" in reasons["escape"]
    assert "outside the corpus root" in reasons["symlink_escape"]
    assert "empty transcript" in reasons["no_text"]
    assert "silent" in reasons["silence"]
    for key in ("corrupt", "empty_file"):
        assert reasons[key] and "Traceback" not in reasons[key]
    index = read_json(str(tmp_path / "store" / "index.json"))
    assert not set(bad_ids) & set(index)


def test_strict_fails_with_one_line_naming_the_item(corpus, tmp_path):
    root, _ = _bad_corpus(corpus, tmp_path)
    proc = subprocess.run([sys.executable, "tools/build_dataset.py", "--corpus", "manifest", "--root", root,
                           "--out", str(tmp_path / "s"), "--strict", "--quiet"],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: item ") and "--strict" in lines[0]


@pytest.mark.parametrize("args,msg", [
    (["--corpus", "nosuch", "--root", "."], "unknown corpus"),
    (["--corpus", "manifest", "--root", "/no/such/dir"], "does not exist"),
    (["--corpus", "manifest", "--root", ".", "--config", "/no/such.yaml"], "config file not found"),
])
def test_cli_errors_are_one_line(tmp_path, args, msg):
    proc = subprocess.run([sys.executable, "tools/build_dataset.py", *args, "--out", str(tmp_path / "o")],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and msg in proc.stderr.lower(), proc.stderr


def test_changed_settings_on_same_out_are_refused(corpus, built):
    out, _ = built
    with pytest.raises(EmotionMXError, match="other settings"):
        build_dataset("manifest", corpus, out, cfg=DatasetConfig(corpus="manifest"), progress=False)


def test_incomplete_store_is_not_read_as_whole(tmp_path):
    (tmp_path / "shards").mkdir()
    with pytest.raises(EmotionMXError, match="incomplete"):
        FeatureStore(str(tmp_path))


def test_resume_after_kill_stores_every_item_once(corpus, tmp_path):
    """Kill a build (SIGKILL) once some shards exist; the rerun finishes with each item once."""
    out = tmp_path / "store"
    cfg_path = tmp_path / "cfg.yaml"
    cfg_path.write_text("corpus: manifest\nshard_size: 2\nface: {detect: false, num_frames: 4}\nsplits: {folds: 3}\n")
    cmd = [sys.executable, "tools/build_dataset.py", "--config", str(cfg_path), "--root", corpus,
           "--out", str(out), "--quiet"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and len(st.shard_paths(str(out))) < 2 and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = len(st.shard_paths(str(out)))
    assert 0 < before < 6 and not (out / "index.json").exists()
    (out / "shards" / ".shard-x.tmp.npz").write_bytes(b"partial")      # a torn temporary write
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    stats = read_json(str(out / "stats.json"))
    assert stats["items"] == 12 and stats["resumed_items"] == 2 * before
    seen = []
    for path in st.shard_paths(str(out)):
        seen += list(st.read_shard_meta(path))
    assert sorted(seen) == sorted(set(seen)) and len(seen) == 12      # each item exactly once
    assert not list((out / "shards").glob(".shard-*"))


def test_utterance_audio_norm_removes_each_utterance_mean(built):
    out, _ = built
    store = FeatureStore(out)
    ids = store.ids(0, "train")
    fold_x, _ = load_arrays(store, ids, ("audio",), fold=0)
    utt_x, _ = load_arrays(store, ids, ("audio",), fold=0, audio_norm="utterance")
    m = utt_x["audio_mask"][:, :, None]
    means = (utt_x["audio"] * m).sum(1) / m.sum(1)                        # (N, F)
    assert np.abs(means).max() < 1e-4 and np.abs((fold_x["audio"] * m).sum(1) / m.sum(1)).max() > 0.1
    assert not utt_x["audio"][m[:, :, 0] == 0].any()                     # padding stays zero
    with pytest.raises(EmotionMXError, match="unknown audio_norm"):
        load_arrays(store, ids, ("audio",), fold=0, audio_norm="speaker")


def test_shipped_word_timings_give_dtw_error_in_stats(tmp_path):
    """An item with forced alignments (IEMOCAP .wdseg) gets DTW's error against them in stats."""
    import soundfile as sf
    from emotion_mx.features.align import tts_word_spans
    from emotion_mx.manifest import Utterance
    text = "The quick brown fox jumps over the lazy dog"
    items = []
    for k, (voice, rate) in enumerate([("en+f3", 140), ("en-us", 200), ("en+m3", 170)]):
        wave, sr, spans = tts_word_spans(text, voice=voice, rate=rate, sample_rate=16000)   # known truth
        sf.write(str(tmp_path / f"u{k}.wav"), wave, sr)
        rows = ["SFrm  EFrm  SegAScr Word", "0 4 -100 <s>"]
        rows += [f"{int(round(s.start * 100))} {int(round(s.end * 100)) - 1} -1000 {s.word.upper()}" for s in spans]
        (tmp_path / f"u{k}.wdseg").write_text("\n".join(rows) + "\n")
        items.append(Utterance(id=f"u{k}", label=["anger", "sadness", "neutral"][k], group=f"s{k}",
                               audio=f"u{k}.wav", text=text, lang="en", meta={"word_timings": f"u{k}.wdseg"}))
    write_manifest(str(tmp_path / "manifest.jsonl"), items)
    stats = build_dataset("manifest", str(tmp_path), str(tmp_path / "store"),
                          cfg=DatasetConfig(corpus="manifest", splits=SplitConfig(folds=3)), progress=False)
    assert stats["aligned_items"] == 3
    err = stats["align_error_vs_reference_ms"]
    assert err is not None and 0 < err < 30.0, err    # DTW vs the reference word boundaries, in ms
