"""The recordings in data/samples, which the README's quick start transcribes: the bundled
model reads each as its transcript (no corpus needed)."""

from __future__ import annotations

from pathlib import Path

from speechrnn.cli import main

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "samples"


def test_the_quick_start_samples_transcribe_to_their_transcripts(capsys):
    recordings = sorted(SAMPLES.glob("*.opus"))
    assert len(recordings) == 6
    assert main(["transcribe", str(SAMPLES)]) == 0
    lines = capsys.readouterr().out.splitlines()
    got = dict(line.split("\t") for line in lines)
    for recording in recordings:
        expected = recording.with_suffix(".txt").read_text(encoding="utf-8").strip()
        assert got[str(recording)] == expected
