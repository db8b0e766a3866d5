"""Text features: tokenisation, vocabulary, fixed-length id/mask encoding, word vectors.

Tokenisation is gluonnlp's BERT basic tokenizer (splits punctuation, one token per CJK
character, optional lower-casing), with one change: that tokenizer always strips accents
(``Kühlschrank`` -> ``kuhlschrank``, merging German ``schön``/``schon``), so by default the
accented spelling is restored on each token.

Vocabulary layout (gluonnlp 0.10 ``Vocab``): index 0 = ``<unk>``, index 1 = ``<pad>``
(``PAD_INDEX``), then tokens by decreasing frequency (ties in first-seen order).
"""
import collections
import contextlib
import logging
import os
import tempfile
import unicodedata
import warnings

import numpy as np
from mxnet.base import MXNetError

from ..errors import EmotionMXError
from ..fileio import write_text

__all__ = ["tokenize", "build_vocab", "save_vocab", "load_vocab", "encode",
           "load_word_vectors", "UNK_TOKEN", "PAD_TOKEN", "UNK_INDEX", "PAD_INDEX"]

UNK_TOKEN = "<unk>"
PAD_TOKEN = "<pad>"
UNK_INDEX = 0
PAD_INDEX = 1
OOV_VECTOR_STD = 0.1     # rows for tokens without a pretrained vector ~ N(0, 0.1^2)
OOV_VECTOR_SEED = 0


def _nlp():
    """Import gluonnlp quietly (it warns about optional dependencies on import)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import gluonnlp
    return gluonnlp


# --------------------------------------------------------------------------------------------
# Tokenisation
# --------------------------------------------------------------------------------------------

_TOKENIZERS = {}


def _basic_tokenizer(lower):
    if lower not in _TOKENIZERS:
        _TOKENIZERS[lower] = _nlp().data.BERTBasicTokenizer(lower=lower)
    return _TOKENIZERS[lower]


def tokenize(text, lower=True, strip_accents=False):
    """Split ``text`` into word and punctuation tokens; CJK characters are single tokens.

    Empty or whitespace-only text (or ``None``) gives ``[]``. With ``strip_accents=True``
    the output is exactly gluonnlp's (BERT-uncased style, accents removed).
    """
    if text is None or not str(text).strip():
        return []
    # control characters (NUL, escape...) separate words: the basic tokenizer deletes them,
    # which joined "hello\x00world" into one unknown word
    text = "".join(" " if unicodedata.category(ch) == "Cc" else ch for ch in str(text))
    tokens = _basic_tokenizer(lower)(text)
    if strip_accents:
        return tokens
    source = unicodedata.normalize("NFC", text.lower() if lower else text)
    return _restore_accents(source, tokens)


def _strip(ch):
    """What the BERT tokenizer keeps of one character: NFD without combining marks."""
    return "".join(c for c in unicodedata.normalize("NFD", ch) if unicodedata.category(c) != "Mn")


def _restore_accents(source, tokens):
    """Map accent-stripped ``tokens`` back onto their spelling in ``source``.

    The tokenizer only deletes characters (control, combining marks) and inserts spaces, so
    walking ``source`` and matching stripped characters recovers each token's span. If
    anything does not line up, the stripped tokens are returned unchanged.
    """
    out, pos = [], 0
    for token in tokens:
        while pos < len(source) and not _strip(source[pos]).strip():
            pos += 1                      # whitespace, control characters, lone marks
        begin, matched = pos, ""
        while pos < len(source) and len(matched) < len(token):
            matched += _strip(source[pos])
            pos += 1
        if matched != token:
            return tokens
        out.append(source[begin:pos])
    return out


# --------------------------------------------------------------------------------------------
# Vocabulary and encoding
# --------------------------------------------------------------------------------------------

def build_vocab(token_lists, min_freq=1, max_size=None):
    """gluonnlp ``Vocab`` over ``token_lists``: ``<unk>`` = 0, ``<pad>`` = 1, then tokens.

    Tokens seen fewer than ``min_freq`` times are dropped; ``max_size`` caps the number of
    regular tokens (the two special tokens come on top).
    """
    counter = collections.Counter()
    for tokens in token_lists:
        counter.update(tokens)
    vocab = _nlp().Vocab(counter, max_size=max_size, min_freq=min_freq,
                         unknown_token=UNK_TOKEN, padding_token=PAD_TOKEN,
                         bos_token=None, eos_token=None)
    assert vocab[UNK_TOKEN] == UNK_INDEX and vocab[PAD_TOKEN] == PAD_INDEX
    return vocab


def save_vocab(vocab, path):
    """Write ``vocab.to_json()`` atomically."""
    write_text(path, vocab.to_json() + "\n")


def load_vocab(path):
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            return _nlp().Vocab.from_json(f.read())
    except FileNotFoundError:
        raise EmotionMXError(f"vocabulary file not found: {path}") from None
    except (ValueError, KeyError, TypeError) as e:
        raise EmotionMXError(f"{path}: not a gluonnlp vocabulary JSON ({e})") from None


def encode(tokens, vocab, max_tokens):
    """Token ids and mask of fixed length ``max_tokens``: truncated, then padded.

    Returns ``(ids int32 (max_tokens,), mask float32 (max_tokens,))``; padding positions hold
    the ``<pad>`` id and mask 0; unknown tokens map to ``<unk>``.
    """
    tokens = list(tokens)[:max_tokens]
    ids = np.full(max_tokens, vocab[vocab.padding_token], dtype=np.int32)  # (L,)
    mask = np.zeros(max_tokens, dtype=np.float32)  # (L,)
    if tokens:
        ids[:len(tokens)] = vocab[tokens]
        mask[:len(tokens)] = 1.0
    return ids, mask


# --------------------------------------------------------------------------------------------
# Pretrained word vectors
# --------------------------------------------------------------------------------------------

def load_word_vectors(path, vocab):
    """Embedding matrix for ``vocab`` from a local GloVe / word2vec / fastText text file.

    Returns ``(matrix float32 (len(vocab), D), coverage)``: row i is the vector of
    ``vocab.idx_to_token[i]`` (exact spelling first, else a case-insensitive match); the
    ``<pad>`` row is zeros; rows without a vector (including ``<unk>``) are N(0, 0.1^2) with a
    fixed seed. ``coverage`` is the fraction of regular (non-special) vocabulary tokens found.
    A word2vec "N D" header line is skipped. Only lines for vocabulary words are parsed, so
    multi-GB files load in one streaming pass with little memory.
    """
    special = {vocab.unknown_token, vocab.padding_token}
    wanted = [t for t in vocab.idx_to_token if t not in special]
    table = _read_vector_file(path, {t.lower() for t in wanted})
    vectors = table.idx_to_vec.asnumpy()  # (V_file, D)
    exact = table.token_to_idx
    folded = {}
    for token, j in exact.items():
        folded.setdefault(token.lower(), j)
    rng = np.random.RandomState(OOV_VECTOR_SEED)
    matrix = (rng.standard_normal((len(vocab), vectors.shape[1])) * OOV_VECTOR_STD).astype(np.float32)  # (V, D)
    found = 0
    for token in wanted:
        j = exact.get(token, folded.get(token.lower()))
        if j is not None:
            matrix[vocab[token]] = vectors[j]
            found += 1
    matrix[vocab[vocab.padding_token]] = 0.0
    return matrix, (found / len(wanted) if wanted else 0.0)


def _read_vector_file(path, keep_lower):
    """gluonnlp ``TokenEmbedding`` of the lines of ``path`` whose word (lower-cased) is in
    ``keep_lower``, plus the first two lines (a word2vec header and/or a vector giving D).
    Errors become one line."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise EmotionMXError(f"word vector file not found: {path} (text.vectors in the config)")
    if os.path.getsize(path) == 0:
        raise EmotionMXError(f"{path}: word vector file is empty")
    fd, tmp = tempfile.mkstemp(prefix="emotion_mx_vectors.", suffix=".txt")
    try:
        with open(path, "rb") as src, os.fdopen(fd, "wb") as dst:
            for lineno, line in enumerate(src):
                word = line.split(b" ", 1)[0].decode("utf-8", "replace").lower()
                if lineno < 2 or word in keep_lower:  # lines 0-1: header and/or first vector (D)
                    dst.write(line)
        table = _token_embedding(tmp)
    except (AssertionError, ValueError, TypeError, IndexError, MXNetError) as e:
        detail = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise EmotionMXError(f"{path}: not a GloVe/word2vec/fastText text vector file "
                             f"({detail})") from None
    finally:
        os.unlink(tmp)
    if table.idx_to_vec is None or not len(table.idx_to_token):
        raise EmotionMXError(f"{path}: no word vectors in the file")
    return table


def _token_embedding(path):
    nlp = _nlp()
    # gluonnlp warns once per skipped header/duplicate line and logs the load: keep quiet.
    with warnings.catch_warnings(), _quiet_logging():
        warnings.simplefilter("ignore")
        return nlp.embedding.TokenEmbedding.from_file(path, elem_delim=" ", unknown_token=None)


@contextlib.contextmanager
def _quiet_logging():
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        root.setLevel(level)
