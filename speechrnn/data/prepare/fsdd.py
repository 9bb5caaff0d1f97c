"""Free Spoken Digit Dataset → connected-digit utterances, speaker-disjoint splits.

Each utterance joins 2–7 isolated digit recordings of one speaker with random pauses of
50–300 ms of faint noise (seeded). Every recording of a speaker is used once per pass; train
speakers get ``train_passes`` passes (new groupings each pass), dev and test one. The test
speaker is chosen on the command line; the dev speaker defaults to the next one in order.
Generated WAVs go to ``OUTDIR/wav/<split>/``.
"""

from __future__ import annotations

import random
import re
from collections import defaultdict
from pathlib import Path

import numpy as np
import soundfile as sf

from speechrnn import audio
from speechrnn.data.manifest import Entry
from speechrnn.data.prepare.common import PrepareError, PrepareReport, download

URL = "https://github.com/Jakobovski/free-spoken-digit-dataset/archive/refs/heads/master.zip"
DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
NAME = re.compile(r"^(\d)_([a-z]+)_(\d+)$")
RATE = 8000


def _find_recordings(src: Path) -> Path:
    for candidate in (src, src / "recordings", *src.glob("*/recordings")):
        if candidate.is_dir() and any(candidate.glob("*_*_*.wav")):
            return candidate
    raise PrepareError(f"no FSDD recordings under {src} (use --download to fetch them)")


def prepare(
    src: Path,
    outdir: Path,
    test_speaker: str = "yweweler",
    dev_speaker: str | None = None,
    seed: int = 0,
    train_passes: int = 3,
    min_digits: int = 2,
    max_digits: int = 7,
    download_corpus: bool = False,
) -> PrepareReport:
    if download_corpus:
        download(URL, src)
    folder = _find_recordings(src)
    by_speaker: dict[str, list[tuple[int, Path]]] = defaultdict(list)
    report = PrepareReport(outdir)
    for path in sorted(folder.glob("*.wav")):
        match = NAME.match(path.stem)
        if match is None:
            report.skip(f"{path}: name is not digit_speaker_index")
            continue
        by_speaker[match.group(2)].append((int(match.group(1)), path))
    speakers = sorted(by_speaker)
    if test_speaker not in by_speaker:
        raise PrepareError(f"test speaker {test_speaker!r} not in FSDD ({', '.join(speakers)})")
    if dev_speaker is None:
        dev_speaker = speakers[(speakers.index(test_speaker) + 1) % len(speakers)]
    if dev_speaker not in by_speaker or dev_speaker == test_speaker:
        raise PrepareError(f"dev speaker {dev_speaker!r} must be another FSDD speaker")
    rng = random.Random(seed)
    splits: dict[str, list[Entry]] = {"train": [], "dev": [], "test": []}
    for speaker in speakers:
        split = "test" if speaker == test_speaker else "dev" if speaker == dev_speaker else "train"
        passes = train_passes if split == "train" else 1
        for pass_index in range(passes):
            recordings = by_speaker[speaker][:]
            rng.shuffle(recordings)
            while recordings:
                count = min(rng.randint(min_digits, max_digits), len(recordings))
                group, recordings = recordings[:count], recordings[count:]
                utt_id = f"{speaker}-{pass_index}-{len(splits[split]):04d}"
                entry = _join(group, outdir / "wav" / split / f"{utt_id}.wav", utt_id, speaker,
                              rng, report)
                if entry is not None:
                    splits[split].append(entry)
    for split, entries in splits.items():
        report.write(split, entries)
    return report


def _join(group, target: Path, utt_id: str, speaker: str, rng: random.Random,
          report: PrepareReport) -> Entry | None:
    pieces, words = [], []
    noise = np.random.default_rng(rng.randrange(2**32))
    for digit, path in group:
        try:
            waveform = audio.load(path, RATE).numpy()
        except audio.AudioError as error:
            report.skip(str(error))
            return None
        pause = int(RATE * rng.uniform(0.05, 0.3))
        pieces.append((1e-4 * noise.standard_normal(pause)).astype(np.float32))
        pieces.append(waveform)
        words.append(DIGITS[digit])
    pieces.append((1e-4 * noise.standard_normal(int(RATE * 0.1))).astype(np.float32))
    signal = np.concatenate(pieces)
    target.parent.mkdir(parents=True, exist_ok=True)
    sf.write(target, signal, RATE, subtype="PCM_16")
    return Entry(utt_id, str(target.resolve()), round(len(signal) / RATE, 4), " ".join(words),
                 speaker)
