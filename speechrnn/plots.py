"""Figures of a run (``speechrnn plot``; needs matplotlib: ``pip install -e ".[plot]"``):
training curves from a run folder's logs, and one utterance's posteriogram with its CTC
forced alignment (torchaudio) drawn on top."""

from __future__ import annotations

import csv
from pathlib import Path

import torch
import torchaudio.functional as AF

from speechrnn.data.manifest import Entry, load_entry
from speechrnn.models.checkpoint import Checkpoint


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise ImportError("plots need matplotlib: pip install -e \".[plot]\"") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def plot_curves(run: Path, output: Path) -> None:
    """Training loss and dev WER/CER of run folder ``run`` (train.csv, valid.csv) → PNG."""
    plt = _pyplot()
    if not (run / "train.csv").exists():
        raise FileNotFoundError(f"{run / 'train.csv'}: no training log in this run folder")
    train = _rows(run / "train.csv")
    valid = _rows(run / "valid.csv") if (run / "valid.csv").exists() else []
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
    figure.savefig(output, dpi=100)
    plt.close(figure)


def plot_alignment(checkpoint: Checkpoint, entry: Entry, output: Path) -> None:
    """Posteriogram of ``entry`` (its segment) under ``checkpoint`` with the forced
    alignment of its transcript → PNG."""
    plt = _pyplot()
    waveform = load_entry(entry, checkpoint.features.config.sample_rate)
    with torch.no_grad():
        features, frames = checkpoint.features(waveform)
        log_probs, _ = checkpoint.model(features[None], frames[None])
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
    figure.savefig(output, dpi=100)
    plt.close(figure)
