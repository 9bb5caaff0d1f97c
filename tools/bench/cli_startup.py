#!/usr/bin/env python
"""Time and peak memory of `speechrnn --help`, each subcommand's --help and --version, each
in a fresh process (median of 5). Target: under 0.5 s on a 2-core machine, which holds only
while answering them imports neither torch nor numba.

    python tools/bench/cli_startup.py
"""

from __future__ import annotations

import resource
import statistics
import subprocess
import sys
import time

COMMANDS = [["--help"], ["--version"], ["transcribe", "--help"], ["evaluate", "--help"],
            ["train", "--help"], ["prepare", "--help"], ["prepare", "folder", "--help"],
            ["tune-lm", "--help"]]


def run(arguments: list[str]) -> tuple[float, float]:
    """(seconds, peak MiB) of one fresh `python -m speechrnn.cli ARGUMENTS`."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "speechrnn.cli", *arguments], check=True,
                   stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return seconds, max(peak, before) / 1024


def main() -> None:
    print(f"{'command':32s} {'median s':>9s} {'peak MiB':>9s}")
    for arguments in COMMANDS:
        runs = [run(arguments) for _ in range(5)]
        seconds = statistics.median(s for s, _ in runs)
        peak = max(p for _, p in runs)
        print(f"{' '.join(['speechrnn', *arguments]):32s} {seconds:9.2f} {peak:9.0f}"
              + ("" if seconds < 0.5 else "  (over the 0.5 s target)"))


if __name__ == "__main__":
    main()
