#!/usr/bin/env python
"""Draw training loss and dev WER curves of an experiment folder (train.csv, valid.csv) to PNG.

    python tools/plot_training.py exp/blstm --out exp/blstm/curves.png
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("expdir", type=Path)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    train = read(args.expdir / "train.csv")
    valid = read(args.expdir / "valid.csv") if (args.expdir / "valid.csv").exists() else []
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot([int(r["step"]) for r in train], [float(r["loss"]) for r in train], label="train")
    if valid:
        left.plot([int(r["step"]) for r in valid], [float(r["loss"]) for r in valid], "o-",
                  label="dev")
        right.plot([int(r["epoch"]) for r in valid], [100 * float(r["wer"]) for r in valid],
                   "o-", label="WER")
        right.plot([int(r["epoch"]) for r in valid], [100 * float(r["cer"]) for r in valid],
                   "s-", label="CER")
    # Log scale: the first steps' loss (~1,000 on long utterances) would flatten the rest.
    left.set(xlabel="step", ylabel="CTC loss per utterance", title="loss", yscale="log")
    right.set(xlabel="epoch", ylabel="%", title="dev error rates (greedy)")
    left.legend()
    right.legend()
    figure.tight_layout()
    out = args.out or args.expdir / "curves.png"
    figure.savefig(out, dpi=100)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
