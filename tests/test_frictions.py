"""Frictions a new user meets when bringing public corpora (FER2013, MELD transcripts, own
configs on top of shipped ones, long silent steps, the embed summary), each on a small fixture."""
import glob
import io
import json
import logging
import os
import re

import numpy as np
import pytest

from emotion_mx.build import build_dataset
from emotion_mx.config import DatasetConfig, load_config
from emotion_mx.corpora import read_corpus
from emotion_mx.data import FeatureStore
from emotion_mx.errors import ConfigError, EmotionMXError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FER_CONFIG = os.path.join(ROOT, "configs", "datasets", "fer2013.yaml")
MELD_CONFIG = os.path.join(ROOT, "configs", "datasets", "meld_text.yaml")


def _png(path, value):
    import cv2
    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.full((48, 48), value, np.uint8)
    img[10:38, 10:38] = 255 - value
    assert cv2.imwrite(str(path), img)


@pytest.fixture()
def fer(tmp_path):
    """9 FER2013 faces as images in class folders + labels.csv in the original CSV's terms
    (emotion and Usage, no subject column)."""
    root = tmp_path / "fer2013"
    rows = ["file,emotion,Usage"]
    usage = ["Training", "PublicTest", "PrivateTest"] * 3
    for k, label in enumerate(("angry", "happy", "sad")):
        for i in range(3):
            name = f"{label}/{k}{i}.png"
            _png(root / name, 30 + 20 * i + 60 * k)
            rows.append(f"{name},{k},{usage[3 * k + i]}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


# -- 1. fer2013: labels.csv without subjects, Usage column as the split -----------------------------

def test_fer2013_labels_csv_without_subject_gives_usage_split_and_says_so_once(fer, caplog):
    caplog.set_level(logging.INFO, logger="emotion_mx.corpora.faces")
    items, skipped = read_corpus("fer2013", str(fer))
    assert skipped == [] and len(items) == 9
    by = {it.id: it for it in items}
    assert (by["angry-00"].split, by["happy-11"].split, by["sad-22"].split) == ("train", "valid", "test")
    assert all(it.group == it.id for it in items)                    # each image its own group
    said = [r.getMessage() for r in caplog.records if "own group" in r.getMessage()]
    assert said == ["9 of 9 files have no subject id (labels.csv has no 'subject' column): each is its own "
                    "group, so the folds are not subject-independent"]


def test_fer2013_store_from_the_shipped_config_uses_the_official_split(fer, tmp_path):
    cfg = load_config(FER_CONFIG, DatasetConfig)
    out = str(tmp_path / "store")
    stats = build_dataset(cfg.corpus, str(fer), out, cfg=cfg, progress=False)
    assert stats["items"] == 9 and stats["modalities"] == {"video": 9}
    assert stats["labels"] == {"anger": 3, "happiness": 3, "sadness": 3}
    store = FeatureStore(out)
    assert store.folds["kind"] == "official"
    assert sorted(store.ids(0, "valid")) == ["angry-01", "happy-11", "sad-21"]
    usage = {r.split(",")[0]: r.split(",")[2] for r in (fer / "labels.csv").read_text().splitlines()[1:]}
    want = {"Training": "train", "PublicTest": "valid", "PrivateTest": "test"}
    for split in ("train", "valid", "test"):
        files = sorted(store.by_id[i].image for i in store.ids(0, split))
        assert files == sorted(f for f, u in usage.items() if want[u] == split), split


def test_labels_csv_without_subject_is_still_refused_where_subjects_matter(fer):
    with pytest.raises(EmotionMXError, match=r"labels.csv: needs columns 'file' and 'subject' or 'speaker' "
                                             r"\(has: file, emotion, Usage\); add them, or set reader.labels_csv: null"):
        read_corpus("face_folder", str(fer))
    (fer / "labels.csv").write_text("name,Usage\nangry/00.png,Training\n")
    with pytest.raises(EmotionMXError, match=r"needs columns 'file' \(has: name, Usage\)"):
        read_corpus("fer2013", str(fer))
    (fer / "labels.csv").write_text("file,Usage\nangry/00.png,Holdout\n")
    items, skipped = read_corpus("fer2013", str(fer))
    assert skipped == [("angry/00.png", "labels.csv: unknown split 'Holdout' (give train/valid/test or "
                                        "FER2013's Training/PublicTest/PrivateTest)")]


# -- 2. MELD transcripts only: one shipped config, the store records what it holds --------------------

MELD_HEADER = "Sr No.,Utterance,Speaker,Emotion,Sentiment,Dialogue_ID,Utterance_ID,Season,Episode,StartTime,EndTime"
MELD_ROWS = [("Oh my God, you are here!", "Rachel", "joy"), ("I hate this so much.", "Ross", "anger"),
             ("Okay, then we go.", "Monica", "neutral"), ("Wow, that is great news!", "Joey", "joy")]


@pytest.fixture()
def meld_text(tmp_path):
    """MELD.Raw with the three CSVs and no clip folders."""
    root = tmp_path / "MELD.Raw"
    root.mkdir()
    for split, csv in (("train", "train_sent_emo.csv"), ("dev", "dev_sent_emo.csv"), ("test", "test_sent_emo.csv")):
        lines = [MELD_HEADER] + [f'{n},"{text} ({split})",{who},{emo},x,{n // 2},{n % 2},1,1,00:00:0{n},00:00:0{n + 1}'
                                 for n, (text, who, emo) in enumerate(MELD_ROWS)]
        (root / csv).write_text("\n".join(lines) + "\n")
    return root


def test_meld_transcripts_build_with_the_shipped_text_config(meld_text, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="emotion_mx.corpora.meld")
    cfg = load_config(MELD_CONFIG, DatasetConfig)
    out = str(tmp_path / "store")
    stats = build_dataset(cfg.corpus, str(meld_text), out, cfg=cfg, progress=False)
    assert stats["items"] == 12 and stats["skipped"] == 0
    assert stats["modalities"] == {"text": 12}                        # not audio+text+video
    assert stats["labels"] == {"anger": 3, "happiness": 6, "neutral": 3}
    assert any("build with --config configs/datasets/meld_text.yaml" in r.getMessage() for r in caplog.records)
    store = FeatureStore(out)
    assert sorted(store.ids(0, "valid")) == [f"valid_dia{n // 2}_utt{n % 2}" for n in range(4)]
    assert store.tokens("train_dia0_utt1") == ["i", "hate", "this", "so", "much", ".", "(", "train", ")"]
    assert store.resolve_settings(("text",)).max_tokens == 11        # "oh my god , you are here ! ( x )"
    with pytest.raises(EmotionMXError, match="has no 'logmel' audio features"):
        store.resolve_settings(("audio", "text"))


def test_store_modalities_are_the_built_ones_when_a_section_is_off(tmp_path):
    from emotion_mx.config import AlignConfig, FaceConfig, SplitConfig
    from emotion_mx.demo import make_demo_corpus
    root = str(tmp_path / "corpus")
    make_demo_corpus(root, per_class_per_speaker=1, speakers=("en+m1", "en+f2", "en+m3"))
    cfg = DatasetConfig(corpus="manifest", face=FaceConfig(enabled=False), align=AlignConfig(enabled=False),
                        splits=SplitConfig(folds=3))
    stats = build_dataset("manifest", root, str(tmp_path / "store"), cfg=cfg, progress=False)
    assert stats["modalities"] == {"audio+text": 12}


# -- 3. base: against the shipped configs ---------------------------------------------------------------

def test_base_resolves_against_the_shipped_configs(tmp_path, monkeypatch):
    mine = tmp_path / "my_configs"
    mine.mkdir()
    monkeypatch.chdir(tmp_path)                      # no configs/ here: only the package's configs can match
    (mine / "a.yaml").write_text("base: configs/datasets/emodb.yaml\nshard_size: 7\n")
    (mine / "b.yaml").write_text("base: datasets/emodb_pretrained.yaml\n")
    (mine / "c.yaml").write_text("base: meld_text\nshard_size: 9\n")
    a = load_config(str(mine / "a.yaml"), DatasetConfig)
    assert (a.corpus, a.shard_size, a.face.enabled) == ("emodb", 7, True)
    b = load_config(str(mine / "b.yaml"), DatasetConfig)
    assert (b.corpus, b.audio.whisper) == ("emodb", True)           # and its own base: emodb.yaml
    c = load_config(str(mine / "c.yaml"), DatasetConfig)
    assert (c.corpus, c.audio.enabled, c.shard_size) == ("meld", False, 9)
    (mine / "emodb.yaml").write_text("corpus: ravdess\n")           # a file next to it still wins
    (mine / "d.yaml").write_text("base: emodb.yaml\n")
    assert load_config(str(mine / "d.yaml"), DatasetConfig).corpus == "ravdess"


def test_base_not_found_names_both_places(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x.yaml").write_text("base: configs/datasets/nope.yaml\n")
    with pytest.raises(ConfigError) as e:
        load_config(str(tmp_path / "x.yaml"), DatasetConfig)
    msg = str(e.value)
    assert msg.startswith(f"{tmp_path / 'x.yaml'}: base file 'configs/datasets/nope.yaml' not found (looked next "
                          f"to it: {tmp_path / 'configs' / 'datasets' / 'nope.yaml'}; and in the shipped configs: ")
    assert os.path.join(ROOT, "configs") in msg and "\n" not in msg
    (tmp_path / "y.yaml").write_text("base: emodb.yaml\n")          # in datasets/ and zoo/
    with pytest.raises(ConfigError, match=r"base 'emodb.yaml' names several shipped configs "
                                          r"\(configs/datasets/emodb.yaml, configs/zoo/emodb.yaml\)"):
        load_config(str(tmp_path / "y.yaml"), DatasetConfig)


# -- 6. the shipped dataset configs load ----------------------------------------------------------------

def test_every_shipped_dataset_config_loads():
    paths = sorted(glob.glob(os.path.join(ROOT, "configs", "datasets", "*.yaml")))
    assert FER_CONFIG in paths and MELD_CONFIG in paths
    for p in paths:
        assert load_config(p, DatasetConfig).corpus, p
    fer = load_config(FER_CONFIG, DatasetConfig)
    assert (fer.corpus, fer.face.size, fer.face.grayscale, fer.face.detect) == ("fer2013", 48, True, False)
    meld = load_config(MELD_CONFIG, DatasetConfig)
    assert (meld.corpus, meld.audio.enabled, meld.face.enabled, meld.align.enabled, meld.text.enabled) == \
        ("meld", False, False, False, True)


# -- 4. long steps show progress when the output is a file or a pipe -----------------------------------

class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_lines_off_a_terminal_and_a_bar_on_one(monkeypatch):
    from emotion_mx.progress import INTERVAL_ENV, Progress
    monkeypatch.setenv(INTERVAL_ENV, "0")
    out = io.StringIO()
    with Progress(4, "features", unit="item", stream=out) as bar:
        bar.update(1)
        bar.set_postfix(loss="0.5000")                           # shown with the next line
        bar.set_postfix(refresh=True, epoch="7/60")              # a line of its own (one long step)
        bar.update(3)
    lines = out.getvalue().splitlines()
    assert [ln.split(", ")[0] for ln in lines] == ["features: 1/4 items (25%)", "features: 1/4 items (25%)",
                                                  "features: 4/4 items (100%)"]
    assert "about" in lines[0] and lines[0].endswith(" left") and lines[1].endswith(" left, epoch 7/60")
    assert lines[2].startswith("features: 4/4 items (100%), done in ") and lines[2].endswith("s, epoch 7/60")
    monkeypatch.setenv(INTERVAL_ENV, "30")                       # a short step adds nothing
    out = io.StringIO()
    for _ in Progress(None, "epoch 1/3", unit="batch", stream=out, iterable=range(5)):
        pass
    assert out.getvalue() == ""
    term = _Terminal()
    with Progress(3, "features", stream=term) as bar:             # a terminal gets the tqdm bar
        assert bar.bar is not None
        bar.update(3)
    assert term.getvalue().startswith("\rfeatures:") and "| 0/3 [" in term.getvalue()    # tqdm's own format
    assert "items (" not in term.getvalue()
    assert Progress(3, "quiet", enabled=False, stream=out).bar is None and out.getvalue() == ""
    monkeypatch.setenv(INTERVAL_ENV, "soon")
    with pytest.raises(EmotionMXError, match=r"\$EMOTION_MX_PROGRESS_SECONDS='soon': give the seconds between "
                                             r"progress lines \(a number >= 0, e.g. 30\), or unset it"):
        Progress(3, "x", stream=out)


def test_build_shows_progress_in_a_log(meld_text, tmp_path, monkeypatch, capsys):
    from emotion_mx.config import AlignConfig, AudioConfig, FaceConfig
    monkeypatch.setenv("EMOTION_MX_PROGRESS_SECONDS", "0")
    cfg = DatasetConfig(corpus="meld", audio=AudioConfig(enabled=False), face=FaceConfig(enabled=False),
                        align=AlignConfig(enabled=False), shard_size=4)
    build_dataset(cfg.corpus, str(meld_text), str(tmp_path / "store"), cfg=cfg)
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("features:")]
    assert [ln.split(", ")[0] for ln in lines] == ["features: 4/12 items (33%)", "features: 8/12 items (67%)",
                                                  "features: 12/12 items (100%)"]
    assert "about" in lines[0] and "done in" in lines[-1]
    build_dataset(cfg.corpus, str(meld_text), str(tmp_path / "quiet"), cfg=cfg, progress=False)   # --quiet
    assert "features:" not in capsys.readouterr().err


def test_training_shows_batches_within_an_epoch(tmp_path, monkeypatch, capsys):
    from test_training_support import LABELS, TinyNet, small_config, synth_split

    from emotion_mx.training.trainer import fit
    monkeypatch.setenv("EMOTION_MX_PROGRESS_SECONDS", "0")
    echoed = []
    fit(TinyNet(3), synth_split(80, 0), synth_split(24, 1), small_config(epochs=2, batch_size=16),
        run_dir=str(tmp_path / "run"), labels=LABELS, modalities=("audio",), tensorboard=False, echo=echoed.append)
    lines = capsys.readouterr().err.splitlines()
    first = [ln for ln in lines if ln.startswith("epoch 1/2:")]
    assert [ln.split(", ")[0] for ln in first] == [f"epoch 1/2: {k}/5 batches ({20 * k}%)" for k in range(1, 6)]
    assert all(re.search(r", loss \d\.\d{4}, lr \d\.\d\de-\d\d$", ln) for ln in first)
    assert "done in" in first[-1]
    assert sum(ln.startswith("epoch 2/2:") for ln in lines) == 5
    assert [m.split(":")[0] for m in echoed if m.startswith("epoch ")] == ["epoch 1", "epoch 2"]


def test_the_documented_fer2013_csv_conversion_reads_with_the_official_split(tmp_path, monkeypatch):
    """docs/corpora.md's snippet turns FER2013's original fer2013.csv into images + labels.csv."""
    text = open(os.path.join(ROOT, "docs", "corpora.md"), encoding="utf-8").read()
    snippet = re.search(r"FER2013 from the original `fer2013.csv`.*?```python\n(.*?)```", text, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    pixels = " ".join(["128"] * 48 * 48)
    (tmp_path / "fer2013.csv").write_text("emotion,pixels,Usage\n" + "".join(
        f"{e},{pixels},{u}\n" for e, u in ((0, "Training"), (3, "PublicTest"), (6, "PrivateTest"), (3, "Training"))))
    exec(compile(snippet, "docs/corpora.md", "exec"), {})
    items, skipped = read_corpus("fer2013", str(tmp_path / "fer2013"))
    assert skipped == []
    got = sorted((it.image, it.label, it.split, it.group == it.id) for it in items)
    assert got == [("angry/00000.png", "angry", "train", True), ("happy/00001.png", "happy", "valid", True),
                   ("happy/00003.png", "happy", "train", True), ("neutral/00002.png", "neutral", "test", True)]
