#!/usr/bin/env python
"""The first transcription after installing: wall time of a fresh `speechrnn transcribe` of a
short file with an empty numba compile cache (cold) and with a filled one (warm), and where a
fresh process spends it (imports, model and LM loading, the first decode). Target: cold
≤ 3 s on 2 cores, warm no slower than today.

    python tools/bench/cold_start.py [--file data/samples/so762-000920094.opus]

The cache is emptied in a copy of the package made for the run, so the installed one keeps
its compiled functions.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

STAGES = """
import sys, time
started = time.perf_counter()
import torch  # noqa: F401
imported_torch = time.perf_counter()
from speechrnn.transcriber import Transcriber
imported = time.perf_counter()
transcriber = Transcriber()
loaded = time.perf_counter()
text = transcriber(sys.argv[1]).text
decoded = time.perf_counter()
print(f"{imported_torch - started:.2f} {imported - imported_torch:.2f} "
      f"{loaded - imported:.2f} {decoded - loaded:.2f} {text!r}")
"""


def fresh(copy: Path, audio: Path) -> tuple[float, list[str]]:
    """(wall seconds, [torch import, speechrnn import, loading, first decode, text]) of one
    fresh process that imports speechrnn from ``copy``."""
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", STAGES, str(audio)], cwd=copy,
                            capture_output=True, text=True, check=True)
    return time.perf_counter() - started, result.stdout.split(" ", 4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file", type=Path,
                        default=REPO / "data" / "samples" / "so762-000920094.opus")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        copy = Path(folder)
        shutil.copytree(REPO / "speechrnn", copy / "speechrnn",
                        ignore=shutil.ignore_patterns("__pycache__"))
        print(f"{'run':6s} {'wall s':>7s} {'torch':>6s} {'speechrnn':>9s} {'load':>6s} "
              f"{'decode':>7s}  text")
        for name in ("cold", "warm", "warm"):
            wall, (torch_s, ours, load, decode, text) = fresh(copy, args.file.resolve())
            print(f"{name:6s} {wall:7.2f} {torch_s:>6s} {ours:>9s} {load:>6s} {decode:>7s}  "
                  f"{text.strip()}" + ("  (over the 3 s target)" if name == "cold" and
                                       wall > 3 else ""))


if __name__ == "__main__":
    main()
