"""Tokenisation, vocabulary, encoding and local word vectors."""
import json

import numpy as np
import pytest

from emotion_mx.errors import EmotionMXError
from emotion_mx.features.text import (PAD_INDEX, UNK_INDEX, build_vocab, encode,
                                      load_vocab, load_word_vectors, save_vocab, tokenize)


def test_tokenize_english_punctuation():
    assert tokenize("I can't believe it... Really?!") == \
        ["i", "can", "'", "t", "believe", "it", ".", ".", ".", "really", "?", "!"]
    assert tokenize("Hello World", lower=False) == ["Hello", "World"]


def test_tokenize_german_keeps_umlauts():
    text = "Der Kühlschrank ist ÜBERGELAUFEN, schön!"
    assert tokenize(text) == ["der", "kühlschrank", "ist", "übergelaufen", ",", "schön", "!"]
    assert tokenize(text, lower=False)[1] == "Kühlschrank"
    assert tokenize("e\u0301clair")[0] == "\u00e9clair"                     # NFD input → NFC token
    assert tokenize(text, strip_accents=True)[1] == "kuhlschrank"           # gluonnlp as is


def test_tokenize_mandarin_one_token_per_character():
    assert tokenize("我今天很高兴！你呢？") == ["我", "今", "天", "很", "高", "兴", "！", "你", "呢", "？"]


@pytest.mark.parametrize("text", ["", "   ", "\n\t", None])
def test_tokenize_empty(text):
    assert tokenize(text) == []


def test_build_vocab_layout_min_freq_max_size():
    lists = [["a", "b", "b", "c", "c", "c"], ["c", "d"]]
    vocab = build_vocab(lists)
    assert vocab.idx_to_token[:2] == ["<unk>", "<pad>"]
    assert vocab["<unk>"] == UNK_INDEX and vocab["<pad>"] == PAD_INDEX
    assert vocab.idx_to_token[2:] == ["c", "b", "a", "d"]                    # by frequency
    assert vocab["never-seen"] == UNK_INDEX
    assert build_vocab(lists, min_freq=2).idx_to_token[2:] == ["c", "b"]
    assert build_vocab(lists, max_size=1).idx_to_token == ["<unk>", "<pad>", "c"]


def test_save_load_vocab(tmp_path):
    vocab = build_vocab([tokenize("schön und 高兴")])
    path = tmp_path / "vocab" / "fold0.json"
    save_vocab(vocab, path)
    assert json.loads(path.read_text(encoding="utf-8"))["idx_to_token"] == vocab.idx_to_token
    again = load_vocab(path)
    assert again.idx_to_token == vocab.idx_to_token and again["高"] == vocab["高"]
    with pytest.raises(EmotionMXError, match="not found"):
        load_vocab(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(EmotionMXError, match="not a gluonnlp vocabulary"):
        load_vocab(tmp_path / "bad.json")


def test_encode_padding_truncation_mask():
    vocab = build_vocab([["a", "b", "c"]])
    ids, mask = encode(["a", "zzz", "c"], vocab, 5)
    assert ids.dtype == np.int32 and mask.dtype == np.float32
    assert ids.tolist() == [vocab["a"], UNK_INDEX, vocab["c"], PAD_INDEX, PAD_INDEX]
    assert mask.tolist() == [1, 1, 1, 0, 0]
    ids, mask = encode(["a", "b", "c", "a"], vocab, 2)
    assert ids.tolist() == [vocab["a"], vocab["b"]] and mask.tolist() == [1, 1]
    ids, mask = encode([], vocab, 3)
    assert ids.tolist() == [PAD_INDEX] * 3 and mask.sum() == 0


@pytest.fixture
def vocab():
    return build_vocab([["hello", "world", "kühlschrank", "missing"]])


def test_glove_vectors_and_coverage(tmp_path, vocab):
    path = tmp_path / "glove.txt"
    path.write_text("hello 0.1 0.2 0.3\nWorld 1 2 3\nkühlschrank 4 5 6\nother 9 9 9\n",
                    encoding="utf-8")
    matrix, coverage = load_word_vectors(path, vocab)
    assert matrix.shape == (len(vocab), 3) and matrix.dtype == np.float32
    assert coverage == pytest.approx(3 / 4)
    np.testing.assert_allclose(matrix[vocab["hello"]], [0.1, 0.2, 0.3], rtol=1e-6)
    np.testing.assert_allclose(matrix[vocab["world"]], [1, 2, 3])           # case-folded match
    np.testing.assert_allclose(matrix[vocab["kühlschrank"]], [4, 5, 6])
    assert not matrix[PAD_INDEX].any()
    oov = matrix[vocab["missing"]]
    assert oov.any() and np.abs(oov).max() < 1.0
    again, _ = load_word_vectors(path, vocab)
    np.testing.assert_array_equal(matrix, again)                             # fixed seed


def test_word2vec_text_with_header(tmp_path, vocab):
    path = tmp_path / "w2v.txt"
    path.write_text("3 2\nhello 1 2\nfoo 3 4\nworld 5 6\n", encoding="utf-8")
    matrix, coverage = load_word_vectors(path, vocab)
    assert matrix.shape == (len(vocab), 2) and coverage == pytest.approx(2 / 4)
    np.testing.assert_allclose(matrix[vocab["world"]], [5, 6])


@pytest.mark.parametrize("content,text", [("hello 0.1 x\n", "not a GloVe"),
                                          ("hello 1 2\nworld 1 2 3\n", "not a GloVe"),
                                          ("", "empty")])
def test_bad_vector_files(tmp_path, vocab, content, text):
    path = tmp_path / "bad.txt"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(EmotionMXError, match=text) as info:
        load_word_vectors(path, vocab)
    assert "\n" not in str(info.value)


def test_missing_vector_file(tmp_path, vocab):
    with pytest.raises(EmotionMXError, match="not found"):
        load_word_vectors(tmp_path / "nope.vec", vocab)
