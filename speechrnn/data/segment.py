"""Cut utterances of isolated words (yes/no strings, digit strings) into one entry per word,
at the silences between the words.

Why: on a tiny corpus of such utterances a CTC model can fit the word sequence from the
utterance boundaries before it learns the words' sounds, and some initialisations never
leave that state (yesno: 0.4-83% test WER over five seeds). Single-word segments, trained
beside the whole utterances, leave no such shortcut. Silences are found with
``librosa.effects.split``; an utterance is cut only when the number of sounding stretches
equals its number of words, otherwise it is left out (the caller reports it).
"""

from __future__ import annotations

import librosa
import numpy as np

from speechrnn.audio import AudioError
from speechrnn.data.manifest import Entry, load_entry

ANALYSIS_RATE = 16000
FRAME_S, HOP_S = 0.025, 0.010


def sounding_spans(waveform: np.ndarray, sample_rate: int, top_db: float = 18.0,
                   min_span_s: float = 0.08) -> list[tuple[float, float]]:
    """(start, end) seconds of the stretches louder than ``top_db`` below the loudest frame;
    stretches shorter than ``min_span_s`` (clicks, breaths) are dropped."""
    intervals = librosa.effects.split(waveform, top_db=top_db,
                                      frame_length=int(FRAME_S * sample_rate),
                                      hop_length=int(HOP_S * sample_rate))
    spans = [(float(start) / sample_rate, float(end) / sample_rate) for start, end in intervals]
    return [(start, end) for start, end in spans if end - start >= min_span_s]


def word_segments(entry: Entry, top_db: float = 18.0, min_word_s: float = 0.08,
                  margin_s: float = 0.1) -> list[Entry] | None:
    """One entry per word of ``entry`` (ids ``<id>-w<k>``), each span widened by up to
    ``margin_s`` of silence on both sides but never past the middle of a pause; None when
    the sounding stretches do not match the words one to one."""
    words = entry.text.split()
    waveform = load_entry(entry, ANALYSIS_RATE).numpy()
    spans = sounding_spans(waveform, ANALYSIS_RATE, top_db, min_word_s)
    if not words or len(spans) != len(words):
        return None
    length = len(waveform) / ANALYSIS_RATE
    edges = [0.0] + [(end + next_start) / 2 for (_, end), (next_start, _)
                     in zip(spans, spans[1:], strict=False)] + [length]
    segments = []
    for k, ((start, end), word) in enumerate(zip(spans, words, strict=True)):
        begin = max(start - margin_s, edges[k])
        finish = min(end + margin_s, edges[k + 1])
        start_of_file = entry.offset or 0.0
        offset = start_of_file + begin
        segments.append(Entry(id=f"{entry.id}-w{k}", audio=entry.audio,
                              duration=round(start_of_file + finish - offset, 3),
                              text=word, speaker=entry.speaker, offset=round(offset, 3)))
    return segments


def split_words(entries: list[Entry], top_db: float = 18.0, min_word_s: float = 0.08,
                margin_s: float = 0.1) -> tuple[list[Entry], dict[str, str]]:
    """(one entry per word of every utterance that splits, {id: why} of those that do not:
    their sounding stretches do not match their words one to one, or their audio is
    unusable)."""
    segments, left_out = [], {}
    for entry in entries:
        try:
            words = word_segments(entry, top_db, min_word_s, margin_s)
        except AudioError as error:
            left_out[entry.id] = str(error)
            continue
        if words is None:
            left_out[entry.id] = "its silences do not match its words"
        else:
            segments.extend(words)
    return segments, left_out
