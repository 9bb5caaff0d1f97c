#!/usr/bin/env python
"""Posteriogram of one utterance with its CTC forced alignment (torchaudio) drawn on top.

    python tools/plot_alignment.py --model exp/best --manifest data/test.jsonl --out post.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib
import torch
import torchaudio.functional as AF

from speechrnn.data.manifest import load_entry, read_manifest
from speechrnn.models.checkpoint import load_checkpoint

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--manifest", required=True)
    parser.add_argument("--index", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    checkpoint = load_checkpoint(args.model)
    entry = read_manifest(args.manifest)[args.index]
    waveform = load_entry(entry, checkpoint.features.config.sample_rate)  # its segment
    with torch.no_grad():
        features, frames = checkpoint.features(waveform)
        log_probs, lengths = checkpoint.model(features[None], frames[None])
    targets = torch.tensor([checkpoint.tokenizer.encode(entry.text)], dtype=torch.int32)
    alignment, _ = AF.forced_align(log_probs, targets, blank=0)
    posteriors = log_probs[0].exp().T.numpy()
    figure, axis = plt.subplots(figsize=(12, 5))
    axis.imshow(posteriors, aspect="auto", origin="lower", cmap="Blues")
    path = alignment[0].tolist()
    axis.plot(range(len(path)), path, "r.", markersize=4, label="forced alignment")
    symbols = [s if s != " " else "␣" for s in checkpoint.tokenizer.symbols]
    axis.set_yticks(range(len(symbols)), symbols, fontsize=7)
    shift = checkpoint.frame_shift
    axis.set(xlabel=f"output frame ({1000 * shift:.0f} ms)", ylabel="token",
             title=f"{entry.id}: {entry.text}")
    axis.legend(loc="upper right")
    figure.tight_layout()
    figure.savefig(args.out, dpi=100)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
