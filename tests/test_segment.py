"""Cutting isolated-word utterances into words (speechrnn.data.segment, speechrnn split-words)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speechrnn.data.manifest import Entry, load_entry, read_manifest, write_manifest
from speechrnn.data.segment import word_segments

NAMES = "zero one two three four five six seven eight nine".split()
DIGITS = [3, 1, 4, 1, 5, 9, 2, 6]
PAUSE_S = 0.3


def _digit_string(data_dir: Path, speaker: str, out: Path) -> tuple[Entry, list[tuple]]:
    """Real FSDD digits of one speaker joined with known pauses of digital silence: the entry
    and each digit's (start, end) in seconds, the reference the cuts are checked against."""
    pause = np.zeros(int(PAUSE_S * 8000), np.float32)
    parts, spans, samples = [pause], [], len(pause)
    for digit in DIGITS:
        take, _ = sf.read(data_dir / "fsdd" / "recordings" / f"{digit}_{speaker}_0.wav",
                          dtype="float32")
        parts += [take, pause]
        spans.append((samples / 8000, (samples + len(take)) / 8000))
        samples += len(take) + len(pause)
    sf.write(out, np.concatenate(parts), 8000)
    entry = Entry(id=speaker, audio=str(out), duration=samples / 8000,
                  text=" ".join(NAMES[d] for d in DIGITS), speaker=speaker)
    return entry, spans


@pytest.mark.parametrize("speaker", ["george", "jackson", "lucas", "nicolas", "yweweler"])
def test_cuts_fall_in_the_pauses_between_real_digits(data_dir, tmp_path, speaker):
    entry, spans = _digit_string(data_dir, speaker, tmp_path / "digits.wav")
    segments = word_segments(entry)
    assert segments is not None
    assert [s.text for s in segments] == entry.text.split()
    for segment, (start, end) in zip(segments, spans, strict=True):
        finish = segment.offset + segment.duration
        # Each cut lies in the pause next to its digit, and the segment is centred on it
        # (not on all of it: a quiet final "s" of "six" can fall below the threshold).
        assert start - PAUSE_S / 2 - 1e-3 <= segment.offset and finish <= end + PAUSE_S / 2 + 1e-3
        assert start < segment.offset + segment.duration / 2 < end
    # The dataset reads exactly the segment, not the whole file.
    first = load_entry(segments[0], 8000)
    assert len(first) == pytest.approx(segments[0].duration * 8000, abs=2)


def test_a_word_count_the_silences_do_not_match_gives_none(data_dir, tmp_path):
    entry, _ = _digit_string(data_dir, "george", tmp_path / "digits.wav")
    entry.text += " seven"
    assert word_segments(entry) is None


def test_a_segment_may_start_at_zero_and_keeps_its_duration(data_dir, tmp_path):
    # Offset 0 is a real offset: the segment starts at the first sample and its duration is
    # honoured (a whole file is an entry without an offset).
    take, _ = sf.read(data_dir / "fsdd" / "recordings" / "3_jackson_0.wav", dtype="float32")
    path = tmp_path / "seven.wav"
    sf.write(path, np.concatenate([take, np.zeros(4000, np.float32)]), 8000)
    [segment] = word_segments(Entry(id="s", audio=str(path), duration=len(take) / 8000 + 0.5,
                                    text="three"))
    assert segment.offset == 0.0
    assert len(load_entry(segment, 8000)) == round(segment.duration * 8000)
    assert len(load_entry(segment, 8000)) < len(take) + 4000
    whole = Entry(id="w", audio=str(path), duration=1.0, text="three")
    assert len(load_entry(whole, 8000)) == len(take) + 4000


def test_split_words_tool_cuts_yesno_and_skips_a_broken_file(prepared, tmp_path):
    entries = read_manifest(prepared["yesno"] / "train.jsonl")
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF not really")
    entries.append(Entry(id="broken", audio=str(broken), duration=1.0, text="yes"))
    source, output = tmp_path / "train.jsonl", tmp_path / "words.jsonl"
    write_manifest(source, entries)
    result = subprocess.run([sys.executable, "-m", "speechrnn.cli", "split-words",
                             str(source), str(output)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "skipped broken" in result.stderr and str(broken) in result.stderr
    words = read_manifest(output)
    # Every yesno training recording is cut into its eight words (measured: 25 of 25).
    assert len(words) == 25 * 8
    assert "200 words from 25 of 26 utterances" in result.stdout
    assert {w.text for w in words} == {"yes", "no"}
    assert all(0.25 < w.duration < 1.2 for w in words)
