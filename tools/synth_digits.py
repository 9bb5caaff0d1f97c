#!/usr/bin/env python
"""Synthesise connected-digit utterances with many TTS voices (espeak-ng, flite).

    python tools/synth_digits.py data/synth --count 1200 --seed 0

FSDD has five speakers, so a digits model trains on three; synthetic voices (espeak-ng's
accents × voice variants × pitch/speed/gap, flite's voices × pitch/duration) add speaker
variety that the held-out speaker benefits from. Writes ``OUTDIR/wav/*.wav`` and
``OUTDIR/train.jsonl`` (manifest; ``speaker`` is the voice). Needs the ``espeak-ng`` and
``flite`` programs (Debian/Ubuntu: ``apt-get install espeak-ng flite``). Same seed, same
utterances.
"""

from __future__ import annotations

import argparse
import random
import shutil
import subprocess
import sys
from pathlib import Path

import soundfile as sf

from speechrnn.data.manifest import Entry, write_manifest

DIGITS = "zero one two three four five six seven eight nine".split()
ESPEAK_ACCENTS = ["en-gb", "en-us", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-rp",
                  "en-gb-x-gbcwmd", "en-029"]
ESPEAK_VARIANTS = ["", "+m1", "+m2", "+m3", "+m4", "+m5", "+m6", "+m7", "+f1", "+f2", "+f3",
                   "+f4", "+f5", "+klatt", "+klatt2", "+klatt3"]
FLITE_VOICES = ["kal", "awb", "rms", "slt", "kal16"]


def synth_command(text: str, path: Path, rng: random.Random) -> tuple[list[str], str]:
    """A random voice's command line that writes ``text`` to ``path``, and the voice name."""
    if rng.random() < 0.75:
        voice = rng.choice(ESPEAK_ACCENTS) + rng.choice(ESPEAK_VARIANTS)
        return ["espeak-ng", "-v", voice, "-p", str(rng.randint(20, 80)),
                "-s", str(rng.randint(120, 200)), "-g", str(rng.randint(2, 12)),
                "-w", str(path), text], voice
    voice = rng.choice(FLITE_VOICES)
    return ["flite", "-voice", voice,
            "--setf", f"duration_stretch={rng.uniform(0.8, 1.3):.2f}",
            "--setf", f"int_f0_target_mean={rng.randint(90, 220)}",
            "-t", text, "-o", str(path)], f"flite-{voice}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("outdir", type=Path)
    parser.add_argument("--count", type=int, default=1200)
    parser.add_argument("--min-digits", type=int, default=2)
    parser.add_argument("--max-digits", type=int, default=7)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    missing = [tool for tool in ("espeak-ng", "flite") if shutil.which(tool) is None]
    if missing:
        print(f"synth_digits: error: {' and '.join(missing)} not found "
              "(apt-get install espeak-ng flite)", file=sys.stderr)
        return 2
    rng = random.Random(args.seed)
    (args.outdir / "wav").mkdir(parents=True, exist_ok=True)
    entries = []
    for index in range(args.count):
        words = [rng.choice(DIGITS) for _ in range(rng.randint(args.min_digits,
                                                              args.max_digits))]
        path = (args.outdir / "wav" / f"synth-{index:05d}.wav").resolve()
        command, voice = synth_command(" ".join(words), path, rng)
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            print(f"synth_digits: error: {' '.join(command)}: {result.stderr.strip()}",
                  file=sys.stderr)
            return 1
        info = sf.info(path)
        entries.append(Entry(id=f"synth-{index:05d}", audio=str(path),
                             duration=round(info.frames / info.samplerate, 4),
                             text=" ".join(words), speaker=voice))
    write_manifest(args.outdir / "train.jsonl", entries)
    print(f"wrote {len(entries)} utterances to {args.outdir / 'train.jsonl'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
