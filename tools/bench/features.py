#!/usr/bin/env python
"""80-dim fbank throughput (× real time) on real speech, one thread, against the peers.

Peers, measured in the same run on the same audio: librosa (melspectrogram + log),
torchaudio.compliance.kaldi.fbank, torchaudio.transforms.MelSpectrogram (+ log). Peers run per
utterance, as they are used; speechrnn runs on length-sorted batches (its intended use) and is
also timed per utterance. Also prints the bucketing sampler's padding waste on a manifest.

    python tools/bench/features.py --data ../shared/data [--seconds 120]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import librosa
import numpy as np
import torch
import torchaudio
import torchaudio.compliance.kaldi as kaldi
from threadpoolctl import threadpool_limits

from speechrnn import audio
from speechrnn.data.manifest import read_manifest
from speechrnn.data.prepare import prepare_corpus
from speechrnn.data.sampler import BucketingSampler, padding_waste
from speechrnn.features import Fbank, FeatureConfig

RATE = 16000


def load_utterances(corpus: Path, seconds: float) -> list[torch.Tensor]:
    lines = (corpus / "test" / "wav.scp").read_text().splitlines()
    waves, total = [], 0.0
    for line in lines:
        waves.append(audio.load(corpus / line.split()[1], RATE))
        total += waves[-1].numel() / RATE
        if total >= seconds:
            break
    return waves


def best_times(functions: dict, repeats: int) -> dict[str, float]:
    """Fastest of ``repeats`` runs of each function, run round-robin so that a slow spell of
    the machine hits every contender alike."""
    best = {name: float("inf") for name in functions}
    for function in functions.values():
        function()
    for _ in range(repeats):
        for name, function in functions.items():
            start = time.perf_counter()
            function()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def batched(extractor: Fbank, waves: list[torch.Tensor], batch_size: int):
    order = sorted(waves, key=len)
    batches = []
    for i in range(0, len(order), batch_size):
        group = order[i : i + batch_size]
        lengths = torch.tensor([len(w) for w in group])
        padded = torch.nn.utils.rnn.pad_sequence(group, batch_first=True)
        batches.append((padded, lengths))

    def run():
        with torch.inference_mode():
            for padded, lengths in batches:
                extractor(padded, lengths)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    torch.set_num_threads(1)
    # torch.set_num_threads does not reach numpy's BLAS, which librosa's mel product uses:
    # pin it too, so that every contender really runs on one thread.
    threadpool_limits(1)
    corpus = args.data / "speechocean762"
    waves = load_utterances(corpus, args.seconds)
    seconds = sum(w.numel() for w in waves) / RATE
    arrays = [w.numpy() for w in waves]
    mel_kw = dict(n_fft=512, hop_length=160, win_length=400, n_mels=80, fmin=20.0)

    def run_librosa():
        for y in arrays:
            m = librosa.feature.melspectrogram(y=y, sr=RATE, center=False, power=2.0, **mel_kw)
            np.log(np.maximum(m, 1e-10))

    def run_kaldi():
        with torch.inference_mode():
            for w in waves:
                kaldi.fbank(w.unsqueeze(0), num_mel_bins=80, dither=0.0)

    melspec = torchaudio.transforms.MelSpectrogram(
        RATE, n_fft=512, win_length=400, hop_length=160, f_min=20.0, n_mels=80, center=False,
        norm="slaney", mel_scale="slaney",
    )

    def run_melspec():
        with torch.inference_mode():
            for w in waves:
                melspec(w).clamp(min=1e-10).log()

    ours = Fbank(FeatureConfig(n_mels=80)).eval()
    ours_kaldi = Fbank(FeatureConfig(n_mels=80, mode="kaldi")).eval()

    def per_utt(extractor):
        def run():
            with torch.inference_mode():
                for w in waves:
                    extractor(w)

        return run

    results = best_times({
        "librosa": run_librosa,
        "kaldi.fbank": run_kaldi,
        "MelSpectrogram": run_melspec,
        "speechrnn default (batched)": batched(ours, waves, args.batch_size),
        "speechrnn default (per utt)": per_utt(ours),
        "speechrnn kaldi (batched)": batched(ours_kaldi, waves, args.batch_size),
        "speechrnn kaldi (per utt)": per_utt(ours_kaldi),
    }, args.repeats)
    print(f"{len(waves)} utterances, {seconds:.1f} s of speechocean762 test audio, 1 thread")
    print(f"{'extractor':32s} {'x real time':>12s}")
    speed = {name: seconds / t for name, t in results.items()}
    for name, value in speed.items():
        print(f"{name:32s} {value:12.0f}")
    print("ratios (target):")
    for ours_name, peer, target in [
        ("speechrnn default (batched)", "librosa", 5),
        ("speechrnn default (batched)", "MelSpectrogram", 1),
        ("speechrnn kaldi (batched)", "kaldi.fbank", 2),
    ]:
        ratio = speed[ours_name] / speed[peer]
        print(f"  {ours_name.split(' (')[0]:17s} / {peer:15s} {ratio:5.2f}  (target >= {target})")

    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        prepare_corpus("speechocean762", corpus, Path(tmp))
        entries = read_manifest(Path(tmp) / "train.jsonl")
    frames = [int(e.duration * 100) for e in entries]
    sampler = BucketingSampler(frames, max_frames=20000, shuffle=True, seed=0)
    waste = padding_waste(frames, list(sampler))
    print(f"bucketing sampler padding waste on speechocean762 train: {100 * waste:.1f}% (<= 10%)")


if __name__ == "__main__":
    main()
