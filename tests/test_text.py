"""Normalisation and tokenizers: explicit policies, exact round trips, JSON persistence."""

from __future__ import annotations

import pytest

from speechrnn.text import (
    BPETokenizer,
    CharTokenizer,
    TokenizerError,
    load_tokenizer,
    normalize,
    save_tokenizer,
)


def test_normalize_is_explicit():
    assert normalize("  Hello,  WORLD! It's  fine-tuned.") == "hello world it's fine tuned"
    assert normalize("'quoted' rock'n'roll", case="upper") == "QUOTED ROCK'N'ROLL"
    assert normalize("Don't", keep_apostrophes=False) == "dont"
    assert normalize("ｆｕｌｌ width") == "full width"  # NFKC
    with pytest.raises(ValueError):
        normalize("x", case="title")


def test_char_tokenizer_blank_space_and_roundtrip():
    tokenizer = CharTokenizer.build(["WE CALL IT BEAR", "zero three five"])
    assert tokenizer.symbols[:2] == ["<blank>", " "]
    assert tokenizer.blank_id == 0
    ids = tokenizer.encode("We call it bear!")
    assert 0 not in ids and tokenizer.decode(ids) == "we call it bear"
    assert tokenizer.decode([0, ids[0], 0]) == "w"


def test_oov_policies():
    texts = ["abc def"]
    assert CharTokenizer.build(texts, oov="skip").decode(
        CharTokenizer.build(texts, oov="skip").encode("abz")) == "ab"
    unk = CharTokenizer.build(texts, oov="unk")
    assert unk.encode("az")[-1] == unk.symbols.index("<unk>")
    with pytest.raises(TokenizerError, match="'z'"):
        CharTokenizer.build(texts, oov="error").encode("az")


def test_json_roundtrip(tmp_path):
    tokenizer = CharTokenizer.build(["hello world"], oov="unk")
    save_tokenizer(tokenizer, tmp_path / "tok.json")
    restored = load_tokenizer(tmp_path / "tok.json")
    assert restored.symbols == tokenizer.symbols and restored.oov == "unk"
    assert restored.encode("hello") == tokenizer.encode("hello")


def test_bpe_tokenizer_roundtrip(tmp_path):
    pytest.importorskip("sentencepiece")
    texts = ["the cat sat on the mat", "the dog sat on the log", "a cat and a dog"] * 20
    tokenizer = BPETokenizer.build(texts, vocab_size=30)
    ids = tokenizer.encode("The cat sat.")
    assert 0 not in ids and tokenizer.decode(ids) == "the cat sat"
    assert tokenizer.word_boundary(ids[0])
    save_tokenizer(tokenizer, tmp_path / "bpe.json")
    assert load_tokenizer(tmp_path / "bpe.json").encode("the dog") == tokenizer.encode("the dog")
