"""Corpus readers, label mapping and the composer on small fixture trees (no media decoding)."""
import json
from collections import Counter, defaultdict

import pytest

from emotion_mx.config import LabelConfig
from emotion_mx.corpora import get_reader, list_readers, read_corpus
from emotion_mx.corpora.compose import partition_groups
from emotion_mx.corpora.labels import DEFAULT_LABELS, apply_label_config, default_label_config
from emotion_mx.errors import EmotionMXError
from emotion_mx.manifest import Utterance


def touch(root, *paths, text=""):
    for p in paths:
        f = root / p
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(text, encoding="utf-8")


def by_id(items):
    return {it.id: it for it in items}


# ------------------------------------------------------------------------------------ registry

def test_registry_lists_all_readers():
    assert {"iemocap", "ravdess", "cremad", "meld", "casia", "emodb", "face_folder", "ckplus", "fer2013",
            "text_table", "isear", "goemotions", "manifest", "compose"} <= set(list_readers())
    assert get_reader("emodb") is get_reader("emodb")


def test_unknown_reader_lists_valid_names():
    with pytest.raises(EmotionMXError, match=r"unknown corpus reader 'emodbb' \(valid: .*emodb.*\)"):
        get_reader("emodbb")


def test_unknown_option_names_option_and_valid_ones(tmp_path):
    with pytest.raises(EmotionMXError, match=r"unknown option 'groupby' \(valid options: group_by, media\)"):
        read_corpus("iemocap", tmp_path, groupby="speaker")


def test_missing_root_and_wrong_layout(tmp_path):
    with pytest.raises(EmotionMXError, match=r"is not a folder; expected the emodb layout: wav/03a01Fa.wav"):
        read_corpus("emodb", tmp_path / "nope")
    with pytest.raises(EmotionMXError, match=r"no wav/ folder under .*; expected the emodb layout: wav/03a01Fa"):
        read_corpus("emodb", tmp_path)
    for name in ("iemocap", "ravdess", "cremad", "meld", "casia", "ckplus", "isear", "goemotions", "manifest"):
        with pytest.raises(EmotionMXError, match=f"reader '{name}': no .*; expected the {name} layout"):
            read_corpus(name, tmp_path)


# ------------------------------------------------------------------------------------ EmoDB

def test_emodb_from_names(tmp_path):
    touch(tmp_path, "wav/03a01Fa.wav", "wav/16b10Tb.wav", "wav/badname.wav", "wav/03a01Xa.wav", "wav/notes.txt")
    items, skipped = read_corpus("emodb", tmp_path)
    items = by_id(items)
    assert set(items) == {"03a01Fa", "16b10Tb"}
    it = items["16b10Tb"]
    assert (it.label, it.group, it.audio, it.lang) == ("T", "16", "wav/16b10Tb.wav", "de")
    assert it.text == "Die wird auf dem Platz sein, wo wir sie immer hinlegen."
    assert it.meta["gender"] == "female"
    assert sorted(e for e, _ in skipped) == ["wav/03a01Xa.wav", "wav/badname.wav"]
    assert "e.g. 03a01Fa.wav" in skipped[0][1]


def test_emodb_labels_csv_is_used(tmp_path):
    touch(tmp_path, "wav/03a01Fa.wav", "wav/08a02Nc.wav")
    touch(tmp_path, "labels.csv", text="file,speaker,sentence,text_de,emotion_code,emotion\n"
                                       "wav/03a01Fa.wav,03,a01,Text aus CSV.,F,happiness\n"
                                       "wav/nonsense.wav,03,a01,x,F,happiness\n")
    items, skipped = read_corpus("emodb", tmp_path)
    assert [(it.id, it.text) for it in items] == [("03a01Fa", "Text aus CSV.")]
    assert skipped == [("labels.csv:3", skipped[0][1])]
    assert len(read_corpus("emodb", tmp_path, use_labels_csv=False)[0]) == 2


# ------------------------------------------------------------------------------------ IEMOCAP

EVAL = """% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]

[6.2901 - 8.2357]\tSes01F_impro01_F000\tneu\t[2.5000, 2.5000, 2.5000]
C-E2:\tNeutral;\t()
A-E3:\tval 3; act 2; dom  2;\t()

[10.0100 - 11.3925]\tSes01F_impro01_M001\texc\t[3.0000, 3.5000, 3.0000]
[garbage line
"""
TRANSCRIPT = """Ses01F_impro01_F000 [006.2901-008.2357]: Excuse me.
Ses01F_impro01_M001 [010.0100-011.3925]: Do you have your forms?
M: breathing
"""


def iemocap_tree(root):
    touch(root, "Session1/dialog/EmoEvaluation/Ses01F_impro01.txt", text=EVAL)
    touch(root, "Session1/dialog/transcriptions/Ses01F_impro01.txt", text=TRANSCRIPT)
    touch(root, "Session1/dialog/avi/DivX/Ses01F_impro01.avi", "Session1/dialog/wav/Ses01F_impro01.wav",
          "Session1/sentences/wav/Ses01F_impro01/Ses01F_impro01_F000.wav",
          "Session1/sentences/ForcedAlignment/Ses01F_impro01/Ses01F_impro01_F000.wdseg")
    touch(root, "Session1/dialog/EmoEvaluation/Categorical/Ses01F_impro01_e1_cat.txt", text="ignored")


def test_iemocap_dialog_media(tmp_path):
    iemocap_tree(tmp_path)
    items, skipped = read_corpus("iemocap", tmp_path)
    items = by_id(items)
    it = items["Ses01F_impro01_F000"]
    assert (it.label, it.group, it.text, it.lang) == ("neu", "Ses01", "Excuse me.", "en")
    assert (it.start, it.end) == (6.2901, 8.2357)
    assert it.audio == "Session1/dialog/wav/Ses01F_impro01.wav"
    assert it.video == "Session1/dialog/avi/DivX/Ses01F_impro01.avi"
    assert it.meta["word_timings"] == "Session1/sentences/ForcedAlignment/Ses01F_impro01/Ses01F_impro01_F000.wdseg"
    assert it.meta["vad"] == [2.5, 2.5, 2.5]
    m = items["Ses01F_impro01_M001"]
    assert (m.label, m.text, m.meta["gender"]) == ("exc", "Do you have your forms?", "male")
    assert "word_timings" not in m.meta
    assert len(skipped) == 1 and skipped[0][0].endswith("Ses01F_impro01.txt:8")


def test_iemocap_sentence_media_and_speaker_groups(tmp_path):
    iemocap_tree(tmp_path)
    items = by_id(get_reader("iemocap")(tmp_path, group_by="speaker", media="sentence"))
    it = items["Ses01F_impro01_F000"]
    assert it.audio == "Session1/sentences/wav/Ses01F_impro01/Ses01F_impro01_F000.wav"
    assert (it.video, it.start, it.end, it.meta["dialog_span"]) == (None, None, None, [6.2901, 8.2357])
    assert (it.group, items["Ses01F_impro01_M001"].group) == ("Ses01_F", "Ses01_M")
    with pytest.raises(EmotionMXError, match="option 'group_by' must be one of 'session', 'speaker'"):
        read_corpus("iemocap", tmp_path, group_by="dialog")


# ------------------------------------------------------------------------------------ RAVDESS

def test_ravdess(tmp_path):
    touch(tmp_path, "Audio_Speech_Actors_01-24/Actor_12/03-01-05-01-02-01-12.wav",
          "Audio_Song_Actors_01-24/Actor_12/03-02-03-02-01-02-12.wav",
          "Video_Speech_Actor_12/Actor_12/01-01-05-01-02-01-12.mp4",
          "Video_Speech_Actor_12/Actor_12/02-01-05-01-02-01-12.mp4",
          "Video_Speech_Actor_12/Actor_12/01-01-09-01-02-01-12.mp4",
          "Video_Speech_Actor_12/Actor_12/03-01-05-01-02-01-12.mp4")
    items, skipped = read_corpus("ravdess", tmp_path)
    items = by_id(items)
    a = items["03-01-05-01-02-01-12"]
    assert (a.label, a.group, a.text, a.video) == ("angry", "Actor_12", "Dogs are sitting by the door", None)
    assert a.audio == "Audio_Speech_Actors_01-24/Actor_12/03-01-05-01-02-01-12.wav"
    av = items["01-01-05-01-02-01-12"]
    assert av.audio == av.video == "Video_Speech_Actor_12/Actor_12/01-01-05-01-02-01-12.mp4"
    v = items["02-01-05-01-02-01-12"]
    assert v.audio is None and v.video.endswith(".mp4")
    song = items["03-02-03-02-01-02-12"]
    assert (song.label, song.text, song.meta["channel"], song.meta["intensity"]) == \
           ("happy", "Kids are talking by the door", "song", "strong")
    assert song.meta["gender"] == "female"
    reasons = dict(skipped)
    assert "unknown emotion code '09'" in reasons["Video_Speech_Actor_12/Actor_12/01-01-09-01-02-01-12.mp4"]
    assert "should be a .wav file" in reasons["Video_Speech_Actor_12/Actor_12/03-01-05-01-02-01-12.mp4"]
    only = get_reader("ravdess")(tmp_path, modalities=["audio"], channels="speech")
    assert [it.id for it in only] == ["03-01-05-01-02-01-12"]


# ------------------------------------------------------------------------------------ CREMA-D

def test_cremad(tmp_path):
    touch(tmp_path, "AudioWAV/1001_DFA_ANG_XX.wav", "VideoFlash/1001_DFA_ANG_XX.flv",
          "VideoFlash/1002_IEO_HAP_HI.flv", "AudioWAV/1003_XYZ_SAD_LO.wav", "AudioWAV/junk.wav")
    items, skipped = read_corpus("cremad", tmp_path)
    items = by_id(items)
    a = items["1001_DFA_ANG_XX"]
    assert (a.label, a.group, a.text) == ("ANG", "1001", "Don't forget a jacket")
    assert (a.audio, a.video) == ("AudioWAV/1001_DFA_ANG_XX.wav", "VideoFlash/1001_DFA_ANG_XX.flv")
    b = items["1002_IEO_HAP_HI"]
    assert b.audio == b.video == "VideoFlash/1002_IEO_HAP_HI.flv"
    assert (b.text, b.meta["intensity"]) == ("It's eleven o'clock", "high")
    assert sorted(e for e, _ in skipped) == ["AudioWAV/1003_XYZ_SAD_LO.wav", "AudioWAV/junk.wav"]


# ------------------------------------------------------------------------------------ MELD

MELD_HEADER = "Sr No.,Utterance,Speaker,Emotion,Sentiment,Dialogue_ID,Utterance_ID,Season,Episode,StartTime,EndTime\n"


def test_meld(tmp_path):
    touch(tmp_path, "train_sent_emo.csv", text=MELD_HEADER +
          '1,"also I was the point person on my company\x92s transition, ok?",Chandler,neutral,neutral,0,0,8,21,'
          '"00:16:16,059","00:16:21,731"\n'
          "2,You must\x92ve had your hands full.,The Interviewer,joy,positive,0,1,8,21,\"00:16:21,940\",\"00:16:23,442\"\n"
          "3,broken row,Monica,,neutral,x,2,8,21,,\n")
    touch(tmp_path, "dev_sent_emo.csv", text=MELD_HEADER + '1,"Oh my God!\nWow.",Rachel,surprise,positive,3,5,1,1,,\n')
    touch(tmp_path, "train/train_splits/dia0_utt0.mp4", "dev_splits_complete/dia3_utt5.mp4")
    items, skipped = read_corpus("meld", tmp_path)
    items = by_id(items)
    t = items["train_dia0_utt0"]
    assert (t.label, t.group, t.split, t.lang) == ("neutral", "Chandler", "train", "en")
    assert t.text == "also I was the point person on my company\u2019s transition, ok?"
    assert t.audio == t.video == "train/train_splits/dia0_utt0.mp4"
    assert t.start is None and t.meta["episode_start"] == "00:16:16,059"
    assert items["train_dia0_utt1"].label == "joy"
    d = items["valid_dia3_utt5"]
    assert (d.split, d.video, d.text) == ("valid", "dev_splits_complete/dia3_utt5.mp4", "Oh my God!\nWow.")
    assert [e for e, _ in skipped] == ["train_sent_emo.csv:4"]


# ------------------------------------------------------------------------------------ CASIA

def test_casia(tmp_path):
    touch(tmp_path, "liuchang/angry/201.wav", "ZhaoZuoxiang/sad/250.wav", "wangzhe/bored/1.wav")
    items, skipped = read_corpus("casia", tmp_path)
    items = by_id(items)
    it = items["ZhaoZuoxiang_sad_250"]
    assert (it.label, it.group, it.audio, it.lang) == ("sad", "ZhaoZuoxiang", "ZhaoZuoxiang/sad/250.wav", "cmn")
    assert set(items) == {"liuchang_angry_201", "ZhaoZuoxiang_sad_250"}
    assert skipped[0][0] == "wangzhe/bored" and "unknown emotion folder" in skipped[0][1]


# ------------------------------------------------------------------------------------ faces

def test_ckplus_groups_from_file_names(tmp_path):
    touch(tmp_path, "anger/S010_004_00000017.png", "happy/S125_005_00000011.png", "happy/unknown.png")
    items, skipped = read_corpus("ckplus", tmp_path)
    items = by_id(items)
    it = items["anger-S010_004_00000017"]
    assert (it.label, it.group, it.image, it.audio, it.video) == ("anger", "S010", "anger/S010_004_00000017.png",
                                                                 None, None)
    assert skipped == [("happy/unknown.png", skipped[0][1])] and "group_regex" in skipped[0][1]


def test_face_folder_labels_csv_subject_and_splits(tmp_path):
    touch(tmp_path, "anger/a.png", "fear/b.jpg")
    touch(tmp_path, "labels.csv", text="file,subject\nanger/a.png,S001\n")
    items = by_id(get_reader("face_folder")(tmp_path))
    assert (items["anger-a"].group, items["fear-b"].group) == ("S001", "fear-b")
    fer = tmp_path / "fer"
    touch(fer, "train/angry/Training_1.jpg", "test/happy/PrivateTest_2.jpg")
    items = by_id(get_reader("fer2013")(fer))
    assert (items["train-angry-Training_1"].split, items["train-angry-Training_1"].label) == ("train", "angry")
    assert items["test-happy-PrivateTest_2"].group == "test-happy-PrivateTest_2"


# ------------------------------------------------------------------------------------ text tables

def test_text_table_generic(tmp_path):
    touch(tmp_path, "data.tsv", text="id\twriter\ttext\tlabel\tsplit\n"
                                     "a\tw1\tI am so happy\tjoy\ttrain\n"
                                     "b\tw1\tWhat?\tsurprise;joy\tdev\n"
                                     "c\tw2\t\tanger\ttest\n"
                                     "d\tw2\tshort row\n"
                                     "e\tw3\tfine\tsadness\tholdout\n")
    opts = dict(path="data.tsv", delimiter="\t", text_column="text", label_column="label", id_column="id",
                group_column="writer", split_column="split", label_separator=";")
    items, skipped = read_corpus("text_table", tmp_path, **opts)
    items = by_id(items)
    assert (items["a"].label, items["a"].group, items["a"].split, items["a"].lang) == ("joy", "w1", "train", "en")
    assert (items["b"].label, items["b"].split) == ("surprise", "valid")          # multi_label "first"
    reasons = dict(skipped)
    assert reasons == {"c": "empty text", "data.tsv:5": "bad row: 3 fields, header has 5",
                       "e": "unknown split 'holdout'"}
    dup = by_id(get_reader("text_table")(tmp_path, **opts, multi_label="duplicate"))
    assert {"b#surprise", "b#joy"} <= set(dup) and dup["b#joy"].group == "w1"
    _, skipped = read_corpus("text_table", tmp_path, **opts, multi_label="drop")
    assert dict(skipped)["b"] == "multi-label row (surprise, joy); multi_label policy 'drop'"
    with pytest.raises(EmotionMXError, match="option 'text_column': no column 'body'"):
        read_corpus("text_table", tmp_path, **{**opts, "text_column": "body"})
    with pytest.raises(EmotionMXError, match="option 'path' is required"):
        read_corpus("text_table", tmp_path)


ISEAR_HEADER = "ID|CITY|Field1|MYKEY|SIT|STATE|\n"


def test_isear_preset(tmp_path):
    touch(tmp_path, "isear.csv", text=ISEAR_HEADER +
          "11001|1|joy|0110011|During the period of falling in love, each time á that we met.|1|\n"
          "11001|1|fear|0110012|[ No response.]|1|\n"
          "41022|1|joy|0410221|we were speaking á \\the same language\\\"- an inspiring discussion and á|encounter.|1|\n")
    items, skipped = read_corpus("isear", tmp_path)
    items = by_id(items)
    assert items["0110011"].text == "During the period of falling in love, each time that we met."
    assert (items["0110011"].label, items["0110011"].group) == ("joy", "11001")
    assert items["0410221"].text == 'we were speaking "the same language"- an inspiring discussion and encounter.'
    assert skipped == [("0110012", "placeholder text '[ No response.]'")]


def test_goemotions_preset(tmp_path):
    touch(tmp_path, "ekman/labels.txt", text="anger\ndisgust\nfear\njoy\nneutral\nsadness\nsurprise\n")
    touch(tmp_path, "ekman/train.tsv", text='My "favourite" food.\t4\teebbqej\nSo sad and angry\t0,5\tedivtm3\n')
    touch(tmp_path, "ekman/dev.tsv", text="Yay\t3\tabc\nBad index\t9\tdef\n")
    touch(tmp_path, "ekman/test.tsv", text="Wow\t6\tghi\n")
    items, skipped = read_corpus("goemotions", tmp_path)
    items = by_id(items)
    assert (items["eebbqej"].label, items["eebbqej"].split, items["eebbqej"].text) == \
           ("neutral", "train", 'My "favourite" food.')
    assert (items["abc"].split, items["ghi"].split, items["ghi"].label) == ("valid", "test", "surprise")
    reasons = dict(skipped)
    assert reasons["edivtm3"] == "multi-label row (anger, sadness); multi_label policy 'drop'"
    assert "not a list of indices" in reasons["def"]
    first = by_id(get_reader("goemotions")(tmp_path, multi_label="first"))
    assert first["edivtm3"].label == "anger"


# ------------------------------------------------------------------------------------ manifest

def test_manifest_pass_through_and_bad_lines(tmp_path):
    rows = [{"id": "u1", "label": "anger", "group": "s1", "audio": "a/u1.wav", "text": "hi", "lang": "en"},
            {"id": "u2", "label": "joy", "group": "s1", "audio": "../outside.wav"},
            {"id": "u3", "label": "joy", "group": "s2", "colour": "red"},
            {"id": "u1", "label": "joy", "group": "s2"}]
    (tmp_path / "manifest.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n{not json\n")
    items, skipped = read_corpus("manifest", tmp_path)
    assert [it.to_json() for it in items] == [rows[0]]
    reasons = dict(skipped)
    assert "outside the corpus root" in reasons["u2"]
    assert "unknown manifest field 'colour'" in reasons["manifest.jsonl:3"]
    assert reasons["u1"] == "duplicate item id 'u1'"
    assert reasons["manifest.jsonl:5"].startswith("not valid JSON")
    with pytest.raises(EmotionMXError, match="no other.jsonl under"):
        read_corpus("manifest", tmp_path, path="other.jsonl")


# ------------------------------------------------------------------------------------ labels

def _utts(*labels):
    return [Utterance(id=str(i), label=lab, group="g") for i, lab in enumerate(labels)]


def test_apply_label_config_map_drop_keep():
    cfg = LabelConfig(map={"exc": "hap", "hap": "happy"}, drop=("xxx",), keep=("happy", "neu", "hap"))
    kept, skipped = apply_label_config(_utts("exc", "hap", "neu", "xxx", "oth"), cfg)
    assert [(it.label, it.meta.get("raw_label")) for it in kept] == [("hap", "exc"), ("happy", "hap"), ("neu", None)]
    assert [r for _, r in skipped] == ["label 'xxx' dropped by config",
                                       "label 'oth' not in keep list (happy, neu, hap)"]
    kept, skipped = apply_label_config(_utts("a"), {"map": {"a": "b"}, "drop": ["b"]})
    assert not kept and skipped[0][1] == "label 'a' (→ 'b') dropped by config"
    assert apply_label_config(_utts("a"), None)[0][0].label == "a"


def test_corpus_default_label_maps():
    kept, skipped = apply_label_config(_utts("neu", "hap", "exc", "ang", "sad", "fru", "xxx"), None, corpus="iemocap")
    assert Counter(it.label for it in kept) == {"happiness": 2, "neutral": 1, "anger": 1, "sadness": 1}
    assert [r for _, r in skipped][0] == "label 'fru' not in keep list (anger, happiness, neutral, sadness)"
    kept, _ = apply_label_config(_utts(*"WLEAFTN"), LabelConfig(), corpus="emodb")
    assert [it.label for it in kept] == ["anger", "boredom", "disgust", "fear", "happiness", "sadness", "neutral"]
    # the user's config is layered on top of the default: keep frustration as its own class
    kept, _ = apply_label_config(_utts("fru", "exc"), {"map": {"fru": "frustration", "exc": "excitement"},
                                                       "keep": ["frustration", "excitement"]}, corpus="iemocap")
    assert [it.label for it in kept] == ["frustration", "excitement"]
    assert default_label_config("text_table") == LabelConfig()
    assert set(DEFAULT_LABELS) <= set(list_readers())


# ------------------------------------------------------------------------------------ compose

EMODB_SPEAKERS = ("03", "08", "09", "10", "11", "12", "13", "14", "15", "16")


def compose_tree(root):
    """EmoDB-like speech (10 speakers), CK+-like faces (15 subjects), ISEAR-like text (12 writers)."""
    for s in EMODB_SPEAKERS:
        touch(root, *(f"speech/wav/{s}{sent}{e}a.wav" for sent in ("a01", "a02", "b01") for e in "WFTLNE"))
    for k in range(15):
        for emo in ("anger", "happy", "sadness", "surprise", "disgust"):
            touch(root, f"faces/{emo}/S{k:03d}_001_0000000{k % 3}.png")
    lines = [f"{w}|1|{emo}|{w}{i}|I felt {emo} when thing {i} happened.|1|"
             for w in range(11000, 11012) for i, emo in enumerate(("joy", "anger", "sadness", "disgust", "shame"))]
    touch(root, "text/isear.csv", text=ISEAR_HEADER + "\n".join(lines) + "\n")


COMPOSE = dict(audio={"corpus": "emodb", "path": "speech"}, video={"corpus": "ckplus", "path": "faces"},
               text={"corpus": "isear", "path": "text"}, parts=5, seed=0)


def test_compose_pairs_by_label_and_keeps_parts_disjoint(tmp_path):
    compose_tree(tmp_path)
    items, skipped = read_corpus("compose", tmp_path, **COMPOSE)
    # shared: anger (W), happiness (F), sadness (T), disgust (E); not boredom (L), neutral (N)
    assert len(items) == 10 * 3 * 4
    assert Counter(r for _, r in skipped if "not shared" in r).total() == 10 * 3 * 2
    part_of = defaultdict(set)
    for it in items:
        assert it.label in {"anger", "happiness", "sadness", "disgust"}
        assert it.audio.startswith("speech/wav/") and it.image.startswith("faces/") and it.text
        assert it.group.startswith("part") and it.lang == "en"
        src = it.meta["sources"]
        face_label = it.image.split("/")[1]
        assert {"happy": "happiness"}.get(face_label, face_label) == it.label
        assert src["text"].startswith("isear:") and "I felt " in it.text
        assert {"joy": "happiness"}.get(it.text.split()[2], it.text.split()[2]) == it.label
        for key, group in it.meta["groups"].items():
            part_of[group].add(it.group)
        assert (tmp_path / it.audio).is_file() and (tmp_path / it.image).is_file()
    assert all(len(parts) == 1 for parts in part_of.values()), "a group appears in two parts"
    assert len({it.group for it in items}) == 5
    # reuse of faces is spread evenly within each (part, label) cell
    uses = Counter((it.group, it.label, it.meta["sources"]["video"]) for it in items)
    per_cell = defaultdict(list)
    for (part, label, _), n in uses.items():
        per_cell[part, label].append(n)
    assert all(max(ns) - min(ns) <= 1 for ns in per_cell.values())
    again, _ = read_corpus("compose", tmp_path, **COMPOSE)
    assert again == items


def test_compose_errors(tmp_path):
    compose_tree(tmp_path)
    with pytest.raises(EmotionMXError, match="at least two of the options audio, video, text"):
        read_corpus("compose", tmp_path, audio=COMPOSE["audio"])
    with pytest.raises(EmotionMXError, match=r"'video': unknown key 'folder'"):
        read_corpus("compose", tmp_path, audio=COMPOSE["audio"], video={"corpus": "ckplus", "folder": "faces"})
    with pytest.raises(EmotionMXError, match="has 10 groups with items of the shared labels; cannot fill 20 parts"):
        read_corpus("compose", tmp_path, **{**COMPOSE, "parts": 20})


def test_partition_groups_balances_labels_and_is_seeded():
    items = [Utterance(id=f"{g}-{i}", label="ab"[i % 2], group=f"g{g}") for g in range(10) for i in range(g + 2)]
    parts = partition_groups(items, 3, seed=1)
    assert partition_groups(items, 3, seed=1) == parts
    cells = Counter((parts[it.group], it.label) for it in items)
    for label in "ab":
        counts = [cells[p, label] for p in range(3)]
        assert max(counts) - min(counts) <= 2, counts
    equal = [Utterance(id=f"{g}-{i}", label="a", group=f"g{g}") for g in range(12) for i in range(3)]
    assert partition_groups(equal, 4, seed=0) != partition_groups(equal, 4, seed=1)
