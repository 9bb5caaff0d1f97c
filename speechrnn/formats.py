"""Transcript output formats: text, json, srt, vtt, tsv (word times in seconds)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the import would load the decoders (torch) for --help
    from speechrnn.decoding.hypothesis import Word

FORMATS = ("text", "json", "srt", "vtt", "tsv")


def _clock(seconds: float, separator: str) -> str:
    millis = int(round(seconds * 1000))
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def cues(words: list[Word], max_words: int = 10, max_seconds: float = 6.0,
         max_gap: float = 1.0) -> list[tuple[float, float, str]]:
    """Group words into subtitle cues, breaking at pauses and at size limits."""
    groups: list[list[Word]] = []
    for word in words:
        current = groups[-1] if groups else None
        if (current is None or len(current) >= max_words
                or word.end - current[0].start > max_seconds
                or word.start - current[-1].end > max_gap):
            groups.append([word])
        else:
            current.append(word)
    return [(g[0].start, g[-1].end, " ".join(w.text for w in g)) for g in groups]


TSV_HEADER = "start\tend\tword\tconfidence"
# Formats whose documents cannot be concatenated (cue numbers, one header per file): several
# files need one output file each.
SINGLE_DOCUMENT = ("srt", "vtt")


def tsv_rows(transcript, source: str | None = None) -> str:
    """The word rows of a transcript's TSV, each led by ``source`` when given (for several
    files in one table under ``"file\t" + TSV_HEADER``)."""
    lead = "" if source is None else f"{source}\t"
    return "".join(f"{lead}{w.start:.3f}\t{w.end:.3f}\t{w.text}\t{w.confidence:.3f}\n"
                   for w in transcript.words)


def render(transcript, fmt: str, source: str = "") -> str:
    """One transcript in ``fmt``."""
    if fmt == "text":
        return transcript.text + "\n"
    if fmt == "json":
        return json.dumps({"file": source, **transcript.to_dict()}, ensure_ascii=False) + "\n"
    if fmt == "tsv":
        return TSV_HEADER + "\n" + tsv_rows(transcript)
    if fmt == "srt":
        blocks = [f"{i}\n{_clock(s, ',')} --> {_clock(e, ',')}\n{text}\n"
                  for i, (s, e, text) in enumerate(cues(transcript.words), start=1)]
        return "\n".join(blocks)
    if fmt == "vtt":
        blocks = [f"{_clock(s, '.')} --> {_clock(e, '.')}\n{text}\n"
                  for s, e, text in cues(transcript.words)]
        return "WEBVTT\n\n" + "\n".join(blocks)
    raise ValueError(f"unknown format {fmt!r} ({', '.join(FORMATS)})")
