"""an4_mini: a 40-utterance excerpt of CMU AN4 given as train.jsonl/test.jsonl + WAV.

Speakers come from the AN4 file names (``an46-mmap-b`` → ``mmap``); dev holds the train
utterances of one speaker, so train and dev are speaker-disjoint.
"""

from __future__ import annotations

import json
from pathlib import Path

from speechrnn.data.prepare.common import (
    PrepareError,
    PrepareReport,
    audio_entry,
    speaker_split,
)


def _speaker(stem: str) -> str:
    parts = stem.split("-")
    return parts[1] if len(parts) >= 3 else stem


def prepare(src: Path, outdir: Path, dev_fraction: float = 0.1, seed: int = 0) -> PrepareReport:
    report = PrepareReport(outdir)
    splits = {}
    for split in ("train", "test"):
        listing = src / f"{split}.jsonl"
        if not listing.exists():
            raise PrepareError(f"{listing} not found: not an an4_mini folder")
        entries = []
        lines = listing.read_text(encoding="utf-8").splitlines()
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
                path = src / item["audio"]
                text = item["text"]
            except (json.JSONDecodeError, KeyError, TypeError) as error:
                report.skip(f"{listing}:{number}: bad line ({error})")
                continue
            entry = audio_entry(report, path.stem, path, text, _speaker(path.stem))
            if entry is not None:
                entries.append(entry)
        splits[split] = entries
    train, dev = speaker_split(splits["train"], dev_fraction, seed)
    report.write("train", train)
    report.write("dev", dev)
    report.write("test", splits["test"])
    return report
