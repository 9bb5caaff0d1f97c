"""Any folder of audio files, each with a same-name ``.txt`` transcript beside it.

The speaker is the name of the file's parent folder. Writes ``all.jsonl`` and a seeded
train/dev/test split (dev and test ``dev_fraction`` of the utterances each).
"""

from __future__ import annotations

import random
import re
from pathlib import Path

from speechrnn.audio import AUDIO_SUFFIXES
from speechrnn.data.prepare.common import (
    PrepareError,
    PrepareReport,
    audio_entry,
    read_text_file,
)


def prepare(src: Path, outdir: Path, dev_fraction: float = 0.1, seed: int = 0) -> PrepareReport:
    if not src.is_dir():
        raise PrepareError(f"{src} is not a folder")
    report = PrepareReport(outdir)
    entries = []
    for path in sorted(src.rglob("*")):
        if path.suffix.lower() not in AUDIO_SUFFIXES:
            continue
        transcript = path.with_suffix(".txt")
        if not transcript.exists():
            report.skip(f"{path}: no transcript {transcript.name} beside it")
            continue
        text = read_text_file(transcript, report)
        if text is None:
            continue
        # an id a trn file can hold: no whitespace or parentheses (sclite reads up to them)
        utt_id = re.sub(r"[\s()/]", "_", str(path.relative_to(src).with_suffix("")))
        entry = audio_entry(report, utt_id, path, " ".join(text.split()), path.parent.name)
        if entry is not None:
            entries.append(entry)
    if not entries:
        raise PrepareError(f"no audio file with a .txt transcript found under {src}")
    shuffled = entries[:]
    random.Random(seed).shuffle(shuffled)
    held = max(1, int(dev_fraction * len(shuffled))) if len(shuffled) >= 3 else 0
    report.write("all", entries)
    report.write("dev", shuffled[:held])
    report.write("test", shuffled[held : 2 * held])
    report.write("train", shuffled[2 * held :])
    return report
