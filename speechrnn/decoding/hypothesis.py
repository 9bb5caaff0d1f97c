"""Decoder output types shared by every decoder."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Word:
    """A recognised word with start/end in seconds from the start of the file."""

    text: str
    start: float
    end: float
    confidence: float = 1.0


@dataclass
class Hypothesis:
    """One decoding result: text, total log score, token ids and word timings."""

    text: str
    score: float = 0.0
    tokens: list[int] = field(default_factory=list)
    words: list[Word] = field(default_factory=list)
