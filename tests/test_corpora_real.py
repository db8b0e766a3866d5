"""Readers on the real corpora in $EMOTION_MX_DATA (e.g. ../shared/data); skipped without it."""
import csv
import os
from collections import Counter

import pytest

from emotion_mx.corpora import read_corpus
from emotion_mx.corpora.labels import apply_label_config

DATA = os.environ.get("EMOTION_MX_DATA")
pytestmark = pytest.mark.skipif(not DATA or not os.path.isdir(DATA),
                                reason="set EMOTION_MX_DATA to the shared data folder to run real-corpus tests")


def data(*parts):
    path = os.path.join(DATA, *parts)
    if not os.path.exists(path):
        pytest.skip(f"{path} not present")
    return path


def csv_rows(path, **kw):
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f, **kw))


def test_emodb_matches_labels_csv():
    root = data("emodb")
    items, skipped = read_corpus("emodb", root)
    assert len(items) == 535 and not skipped
    kept, dropped = apply_label_config(items, None, corpus="emodb")
    assert not dropped
    truth = {os.path.basename(r["file"])[:-4]: (r["emotion"], r["speaker"]) for r in csv_rows(os.path.join(root, "labels.csv"))}
    assert {it.id: (it.label, it.group) for it in kept} == truth
    by_names, _ = read_corpus("emodb", root, use_labels_csv=False)
    assert [(it.id, it.label, it.group, it.text) for it in by_names] == [(it.id, it.label, it.group, it.text) for it in items]


def test_ckplus_subjects():
    items, skipped = read_corpus("ckplus", data("ckplus48"))
    assert len(items) == 981 and not skipped
    assert len({it.group for it in items}) == 118
    truth = {r["file"]: (r["emotion"], r["subject"]) for r in csv_rows(data("ckplus48", "labels.csv"))}
    assert {it.image: (it.label, it.group) for it in items} == truth


def test_isear_counts_match_csv_minus_placeholders():
    root = data("isear")
    items, skipped = read_corpus("isear", root)
    with open(os.path.join(root, "isear.csv"), encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f, delimiter="|", quoting=csv.QUOTE_NONE))
    label_col = rows[0].index("Field1")
    in_csv = Counter(r[label_col] for r in rows[1:])
    assert all(reason.startswith("placeholder text") for _, reason in skipped)
    assert len(skipped) == 128                      # documented in docs/corpora.md
    placeholder_ids = {i for i, _ in skipped}
    assert Counter(it.label for it in items) + Counter(
        r[label_col] for r in rows[1:] if r[rows[0].index("MYKEY")] in placeholder_ids) == in_csv
    assert len({it.group for it in items}) == 1096
    assert not any("á" in it.text for it in items)


def test_goemotions_single_label_rows_per_split():
    root = data("goemotions")
    items, skipped = read_corpus("goemotions", root)
    names = open(os.path.join(root, "ekman", "labels.txt"), encoding="utf-8").read().split()
    for split, name in (("train", "train"), ("valid", "dev"), ("test", "test")):
        with open(os.path.join(root, "ekman", f"{name}.tsv"), encoding="utf-8", newline="") as f:
            rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
        single = Counter(names[int(r[1])] for r in rows if "," not in r[1])
        assert Counter(it.label for it in items if it.split == split) == single
    assert all("multi-label row" in reason for _, reason in skipped)


def test_compose_emodb_ckplus_isear():
    items, _ = read_corpus("compose", DATA, audio={"corpus": "emodb", "path": "emodb"},
                           video={"corpus": "ckplus", "path": "ckplus48"}, text={"corpus": "isear", "path": "isear"},
                           parts=5, seed=0)
    emodb, _ = read_corpus("emodb", data("emodb"))
    emodb, _ = apply_label_config(emodb, None, corpus="emodb")
    shared = {"anger", "disgust", "fear", "happiness", "sadness"}
    assert Counter(it.label for it in items) == Counter(it.label for it in emodb if it.label in shared)
    assert len(items) == 375
    parts_of = {}
    for it in items:
        for group in it.meta["groups"].values():
            assert parts_of.setdefault(group, it.group) == it.group, f"{group} is in two parts"
        assert os.path.isfile(os.path.join(DATA, it.audio)) and os.path.isfile(os.path.join(DATA, it.image))
