#!/usr/bin/env python
"""Real-time factor and peak memory of `speechrnn transcribe` with the bundled model, with and
without its LM, on ≥ 60 s of real speech (2 CPU threads by default).

    python tools/bench/transcribe.py --data ../shared/data
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import torch

from speechrnn import audio
from speechrnn.transcriber import Transcriber


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--model")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    corpus = args.data / "speechocean762"
    files, total = [], 0.0
    for line in (corpus / "test" / "wav.scp").read_text().splitlines()[-400:]:
        files.append(corpus / line.split()[1])
        total += audio.duration(files[-1])
        if total >= args.seconds:
            break
    print(f"{len(files)} files, {total:.1f} s of speechocean762 test audio, "
          f"{args.threads} threads")
    for lm in (None, "default"):  # greedy; the model's LM at its tuned beam (its default)
        transcriber = Transcriber(args.model, lm=lm, beam=1 if lm is None else None)
        beam = transcriber.settings()["beam"]
        label = "greedy, no LM" if lm is None else f"beam {beam} + LM"
        transcriber(files[0])  # warm-up (numba compile cache, allocator)
        started = time.perf_counter()
        for path in files:
            transcriber(path)
        elapsed = time.perf_counter() - started
        print(f"  {label:14s} RTF {elapsed / total:.4f} (target ≤ 0.05)")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"  peak resident memory {peak:.0f} MiB")


if __name__ == "__main__":
    main()
