"""Text normalisation and tokenizers (characters, optional SentencePiece BPE).

One ``normalize`` is used by training, decoding and scoring, so the text a model learns and
the text it is scored against are cleaned the same way. Token id 0 is always the CTC blank.
"""

from __future__ import annotations

import base64
import io
import json
import re
import unicodedata
from collections.abc import Iterable
from pathlib import Path

from speechrnn.fileio import write_atomic

BLANK = "<blank>"
UNK = "<unk>"
_NOT_KEPT = re.compile(r"[^\w' ]+")
_SPACES = re.compile(r"\s+")


def normalize(text: str, case: str = "lower", keep_apostrophes: bool = True) -> str:
    """Canonical form of a transcript: NFKC, one case, no punctuation, single spaces.

    ``case`` is "lower", "upper" or "keep". Apostrophes inside words ("don't") are kept unless
    ``keep_apostrophes`` is False; hyphens and other punctuation become word breaks.
    """
    text = unicodedata.normalize("NFKC", text)
    if case == "lower":
        text = text.lower()
    elif case == "upper":
        text = text.upper()
    elif case != "keep":
        raise ValueError(f"case must be lower, upper or keep, not {case!r}")
    text = text.replace("_", " ")
    text = _NOT_KEPT.sub(" ", text)
    if keep_apostrophes:
        text = re.sub(r"(?<!\w)'|'(?!\w)", " ", text)
    else:
        text = text.replace("'", "")
    return _SPACES.sub(" ", text).strip()


class TokenizerError(ValueError):
    """Text that the tokenizer's policy refuses (a character outside its vocabulary)."""


class CharTokenizer:
    """Characters as tokens: blank = 0, then the space, then the training text's characters.

    ``oov`` says what happens to a character outside the vocabulary: "error" raises
    :class:`TokenizerError`, "skip" drops it, "unk" maps it to an ``<unk>`` token.
    """

    kind = "char"

    def __init__(self, symbols: list[str], oov: str = "skip", case: str = "lower"):
        if oov not in ("error", "skip", "unk"):
            raise ValueError(f"oov policy must be error, skip or unk, not {oov!r}")
        if symbols[:2] != [BLANK, " "]:
            raise ValueError("a character vocabulary starts with <blank>, space")
        if oov == "unk" and UNK not in symbols:
            symbols = [*symbols, UNK]
        self.symbols = symbols
        self.oov = oov
        self.case = case
        self._index = {s: i for i, s in enumerate(symbols)}

    @classmethod
    def build(cls, texts: Iterable[str], oov: str = "skip", case: str = "lower") -> CharTokenizer:
        """Vocabulary from (already or not yet normalised) training transcripts."""
        chars: set[str] = set()
        for text in texts:
            chars.update(normalize(text, case))
        chars.discard(" ")
        return cls([BLANK, " ", *sorted(chars)], oov=oov, case=case)

    @property
    def blank_id(self) -> int:
        return 0

    @property
    def space_id(self) -> int:
        return 1

    def __len__(self) -> int:
        return len(self.symbols)

    def normalize(self, text: str) -> str:
        return normalize(text, self.case)

    def encode(self, text: str) -> list[int]:
        """Normalise and map to token ids (no blanks)."""
        ids = []
        for char in self.normalize(text):
            index = self._index.get(char)
            if index is None:
                if self.oov == "error":
                    raise TokenizerError(f"character {char!r} is not in the vocabulary")
                if self.oov == "unk":
                    ids.append(self._index[UNK])
                continue
            ids.append(index)
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        """Token ids (blanks ignored) to text with single spaces."""
        text = "".join(self.symbols[i] for i in ids if i != 0)
        return _SPACES.sub(" ", text).strip()

    def word_boundary(self, token_id: int) -> bool:
        """True if the token separates words (the space)."""
        return token_id == self.space_id

    def group_words(self, ids: list[int]) -> list[list[int]]:
        """Positions in ``ids`` grouped into words (spaces separate, belong to none)."""
        groups: list[list[int]] = [[]]
        for position, token in enumerate(ids):
            if token == self.space_id:
                groups.append([])
            else:
                groups[-1].append(position)
        return [g for g in groups if g]

    def to_dict(self) -> dict:
        return {"type": self.kind, "symbols": self.symbols, "oov": self.oov, "case": self.case}


class BPETokenizer:
    """SentencePiece subword units (optional ``sentencepiece`` package); blank = 0.

    The trained SentencePiece model is embedded (base64) in the JSON, so one file restores it.
    """

    kind = "bpe"

    def __init__(self, model_proto: bytes, case: str = "lower"):
        import sentencepiece as spm

        self.model_proto = model_proto
        self.case = case
        self._sp = spm.SentencePieceProcessor(model_proto=model_proto)
        self.symbols = [BLANK] + [self._sp.id_to_piece(i) for i in range(self._sp.get_piece_size())]

    @classmethod
    def build(
        cls, texts: Iterable[str], vocab_size: int = 256, case: str = "lower"
    ) -> BPETokenizer:
        import sentencepiece as spm

        model = io.BytesIO()
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter([normalize(t, case) for t in texts]),
            model_writer=model,
            vocab_size=vocab_size,
            model_type="bpe",
            character_coverage=1.0,
            bos_id=-1,
            eos_id=-1,
            minloglevel=2,
        )
        return cls(model.getvalue(), case)

    @property
    def blank_id(self) -> int:
        return 0

    def __len__(self) -> int:
        return len(self.symbols)

    def normalize(self, text: str) -> str:
        return normalize(text, self.case)

    def encode(self, text: str) -> list[int]:
        return [i + 1 for i in self._sp.encode(self.normalize(text))]

    def decode(self, ids: Iterable[int]) -> str:
        return self._sp.decode([i - 1 for i in ids if i != 0])

    def word_boundary(self, token_id: int) -> bool:
        """True if the token starts a new word (SentencePiece's ▁ prefix)."""
        return token_id > 0 and self.symbols[token_id].startswith("\u2581")

    def group_words(self, ids: list[int]) -> list[list[int]]:
        """Positions in ``ids`` grouped into words (a ▁ piece starts a new word)."""
        groups: list[list[int]] = []
        for position, token in enumerate(ids):
            if self.word_boundary(token) or not groups:
                groups.append([])
            groups[-1].append(position)
        return groups

    def to_dict(self) -> dict:
        proto = base64.b64encode(self.model_proto).decode("ascii")
        return {"type": self.kind, "model": proto, "case": self.case}


Tokenizer = CharTokenizer | BPETokenizer


def tokenizer_from_dict(data: dict) -> Tokenizer:
    """Rebuild a tokenizer from its ``to_dict`` form."""
    if data.get("type") == "char":
        return CharTokenizer(data["symbols"], oov=data.get("oov", "skip"), case=data["case"])
    if data.get("type") == "bpe":
        return BPETokenizer(base64.b64decode(data["model"]), case=data["case"])
    raise ValueError(f"unknown tokenizer type {data.get('type')!r}")


def save_tokenizer(tokenizer: Tokenizer, path: str | Path) -> None:
    write_atomic(path, json.dumps(tokenizer.to_dict(), ensure_ascii=False, indent=1))


def load_tokenizer(path: str | Path) -> Tokenizer:
    return tokenizer_from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
