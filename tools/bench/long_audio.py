#!/usr/bin/env python
"""Peak resident memory and real-time factor of `speechrnn transcribe` on one long file
(1, 10 and 60 minutes of real speech by default), each in a fresh process, with the bundled
model and its LM. Target: peak ≤ 1.2 GB (1,144 MiB) for 60 minutes of 16 kHz audio, and a peak that
does not grow with the file beyond the waveform itself (4 bytes a sample: 230 MB an hour).

    python tools/bench/long_audio.py --data ../shared/data [--minutes 1 10 60]

The long files are speechocean762 test recordings played one after another (16-bit WAV).

    python tools/bench/long_audio.py --data ../shared/data --wer [--minutes 10]

measures instead what cutting costs: the WER of one long file against its recordings'
transcripts, next to the same recordings decoded one by one (the bundled model and LM).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

RATE = 16000


def long_recording(data: Path, minutes: float, target: Path) -> None:
    """Write ``minutes`` of speechocean762 test speech, file after file, to ``target``."""
    corpus = data / "speechocean762"
    lines = (corpus / "test" / "wav.scp").read_text().splitlines()
    needed = int(minutes * 60 * RATE)
    with sf.SoundFile(target, "w", RATE, 1, "PCM_16") as out:
        written = 0
        while written < needed:
            for line in lines:
                samples, rate = sf.read(corpus / line.split()[1], dtype="float32")
                assert rate == RATE, f"{line}: {rate} Hz"
                piece = samples[: needed - written]
                out.write(piece)
                written += len(piece)
                if written >= needed:
                    break


def measure(path: Path, threads: int, lm: str) -> tuple[float, float, str]:
    """(peak RSS in MiB, wall seconds, transcript) of one fresh transcribe process; called
    in a helper process of its own, so that the children's peak is this process's."""
    command = [sys.executable, "-m", "speechrnn.cli", "--threads", str(threads), "transcribe",
               str(path), "--lm", lm]
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = process.communicate()
    wall = time.perf_counter() - started
    if process.returncode != 0:
        raise SystemExit(f"transcribe failed: {err.decode()[-500:]}")
    import resource

    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return peak, wall, out.decode()


def cutting_cost(data: Path, minutes: float) -> None:
    """WER of ``minutes`` of test recordings decoded as one file and one by one."""
    import jiwer

    from speechrnn import audio
    from speechrnn.text import normalize
    from speechrnn.transcriber import Transcriber, split_at_pauses

    corpus = data / "speechocean762"
    texts = dict(line.split(None, 1) for line in
                 (corpus / "test" / "text").read_text().splitlines() if len(line.split()) > 1)
    pieces, references, seconds = [], [], 0.0
    for line in (corpus / "test" / "wav.scp").read_text().splitlines():
        utterance, relative = line.split()
        pieces.append(audio.load(corpus / relative, RATE))
        references.append(normalize(texts[utterance]))
        seconds += pieces[-1].numel() / RATE
        if seconds >= minutes * 60:
            break
    import torch

    transcriber = Transcriber()
    one_by_one = [transcriber.transcribe_waveform(p).text for p in pieces]
    whole = torch.cat(pieces)
    long_text = transcriber.transcribe_waveform(whole).text
    reference = " ".join(references)
    segments = split_at_pauses(whole, RATE, transcriber.max_segment)
    print(f"{len(pieces)} recordings, {seconds / 60:.1f} min, {len(segments)} segments "
          f"(median {sorted(e - s for s, e in segments)[len(segments) // 2] / RATE:.1f} s)")
    print(f"  one by one: WER {100 * jiwer.wer(references, one_by_one):.1f}%")
    print(f"  one file:   WER {100 * jiwer.wer(reference, long_text):.1f}%")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--minutes", type=float, nargs="+", default=[1, 10, 60])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--lm", default="default", help="'default' (the model's) or 'none'")
    parser.add_argument("--one", type=Path, help=argparse.SUPPRESS)  # internal: one run
    parser.add_argument("--wer", action="store_true",
                        help="the WER cost of cutting one long file, not memory and time")
    args = parser.parse_args()
    if args.wer:
        cutting_cost(args.data, args.minutes[0] if args.minutes != [1, 10, 60] else 10)
        return
    if args.one is not None:  # a helper process, so RUSAGE_CHILDREN holds this run alone
        peak, wall, text = measure(args.one, args.threads, args.lm)
        print(f"{peak:.0f} {wall:.2f} {len(text.split())}")
        return
    print(f"bundled model, --lm {args.lm}, {args.threads} threads, one fresh process per file "
          "(model loading included in the time)")
    print(f"{'minutes':>7s} {'peak MiB':>9s} {'waveform MiB':>12s} {'wall s':>8s} "
          f"{'RTF':>7s} {'words':>6s}")
    with tempfile.TemporaryDirectory() as folder:
        for minutes in args.minutes:
            path = Path(folder) / f"long-{minutes:g}min.wav"
            long_recording(args.data, minutes, path)
            helper = subprocess.run(
                [sys.executable, __file__, "--one", str(path), "--threads", str(args.threads),
                 "--lm", args.lm], capture_output=True, text=True, check=True,
                env={**os.environ, "OMP_NUM_THREADS": str(args.threads)})
            peak, wall, words = helper.stdout.split()
            waveform = minutes * 60 * RATE * np.dtype(np.float32).itemsize / 2**20
            print(f"{minutes:7g} {float(peak):9.0f} {waveform:12.0f} {float(wall):8.1f} "
                  f"{float(wall) / (minutes * 60):7.4f} {int(words):6d}")
            path.unlink()


if __name__ == "__main__":
    main()
