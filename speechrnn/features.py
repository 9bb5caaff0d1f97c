"""Acoustic features: batched log-mel filterbanks, MFCC and log spectrograms, and CMVN.

All extractors are ``nn.Module``\\ s that take a padded batch of waveforms ``(B, N)`` with their
lengths and return ``(B, T, F)`` features with frame counts, on whatever device the input is.
Frames are cut without centre padding (Kaldi's ``snip_edges``): frame ``t`` covers samples
``[t*shift, t*shift + length)``, so frame times are exact and derived from ``frame_shift``.

Two mel conventions share one implementation:

* ``mode="default"``: Hann window, Slaney mel scale and area normalisation — the same
  filterbank as librosa's and ``torchaudio.transforms.MelSpectrogram(norm="slaney",
  mel_scale="slaney")``.
* ``mode="kaldi"``: Povey window, DC removal, pre-emphasis 0.97, Kaldi's mel banks — matches
  ``torchaudio.compliance.kaldi.fbank``. torchaudio's version works on one utterance at a time
  in float64-heavy Python; this one frames a whole batch with one ``unfold`` and one FFT.

On CPU the mel product is a small compiled loop (numba) over the filterbank's few non-zero
weights instead of a dense matmul; on GPU it is a matmul.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numba
import numpy as np
import torch
import torchaudio.compliance.kaldi as kaldi
import torchaudio.functional as AF
from torch import nn

from speechrnn.fileio import input_problem, write_atomic

LOG_FLOOR = torch.finfo(torch.float32).eps


@dataclass
class FeatureConfig:
    """Everything needed to rebuild a feature extractor (stored in checkpoints)."""

    kind: str = "fbank"  # fbank | mfcc | spectrogram
    mode: str = "default"  # default | kaldi
    sample_rate: int = 16000
    n_mels: int = 80
    n_mfcc: int = 13
    frame_length_ms: float = 25.0
    frame_shift_ms: float = 10.0
    dither: float = 0.0  # noise added to training waveforms by the dataset (seeded per utterance)
    preemphasis: float | None = None  # None: the mode's default (0 default, 0.97 kaldi)
    deltas: int = 0  # 0, 1 (Δ) or 2 (Δ+ΔΔ)
    low_freq: float = 20.0
    high_freq: float | None = None  # None: Nyquist

    def high_freq_hz(self) -> float:
        """Upper edge of the mel bands in Hz: Nyquist when unset; Kaldi mode reads a value
        ≤ 0 as an offset from Nyquist (as Kaldi does)."""
        nyquist = self.sample_rate / 2
        if not self.high_freq:
            return nyquist
        if self.mode == "kaldi" and self.high_freq < 0:
            return nyquist + self.high_freq
        return self.high_freq


BLOCK_FRAMES = 768  # CPU frames per block (fastest of 256–1280 on the 2-core EPYC VM, one thread)


class _FrameAnalysis(nn.Module):
    """Shared front half: framing, DC removal, pre-emphasis, window, FFT."""

    def __init__(self, config: FeatureConfig):
        super().__init__()
        if config.mode not in ("default", "kaldi"):
            raise ValueError(f"unknown feature mode {config.mode!r} (default | kaldi)")
        self.config = config
        rate = config.sample_rate
        self.win_length = int(round(rate * config.frame_length_ms / 1000))
        self.hop_length = int(round(rate * config.frame_shift_ms / 1000))
        self.n_fft = 1 << (self.win_length - 1).bit_length()
        kaldi_mode = config.mode == "kaldi"
        self.remove_dc = kaldi_mode
        default_preemph = 0.97 if kaldi_mode else 0.0
        self.preemphasis = default_preemph if config.preemphasis is None else config.preemphasis
        # Frames are win_length samples, zero-padded to n_fft by the FFT. librosa and
        # torch.stft centre the window in n_fft instead; that is a circular shift, which leaves
        # the power spectrum unchanged.
        if kaldi_mode:
            window = torch.hann_window(self.win_length, periodic=False).pow(0.85)  # "povey"
        else:
            window = torch.hann_window(self.win_length, periodic=True)
        self.register_buffer("window", window, persistent=False)

    @property
    def frame_shift(self) -> float:
        """Seconds between consecutive frames."""
        return self.hop_length / self.config.sample_rate

    def num_frames(self, lengths: torch.Tensor) -> torch.Tensor:
        """Frames produced for waveforms of ``lengths`` samples (0 when shorter than a frame)."""
        return torch.clamp((lengths - self.win_length) // self.hop_length + 1, min=0)

    def frames(self, waveforms: torch.Tensor) -> torch.Tensor:
        """(B, N) → (B, T, win_length) overlapping frames, a view (no copy)."""
        return waveforms.unfold(-1, self.win_length, self.hop_length)

    def window_frames(self, frames: torch.Tensor, out: torch.Tensor | None = None
                      ) -> torch.Tensor:
        """(..., win_length) frames → DC removal, pre-emphasis, window (Kaldi's order, op for
        op, so Kaldi mode rounds as torchaudio's float32 fbank does), written into ``out``."""
        if self.remove_dc:
            frames = frames - frames.mean(dim=-1, keepdim=True)
        if not self.preemphasis:
            return torch.mul(frames, self.window, out=out)
        if out is None:
            out = torch.empty_like(frames)
        out[..., 0] = frames[..., 0] * (1.0 - self.preemphasis)
        torch.sub(frames[..., 1:], frames[..., :-1] * self.preemphasis, out=out[..., 1:])
        return out.mul_(self.window)

    def spectrum(self, windowed: torch.Tensor) -> torch.Tensor:
        """(..., n_fft) or (..., win_length) windowed frames → (..., n_fft/2+1) complex."""
        return torch.fft.rfft(windowed, n=self.n_fft)


def _power(spectrum: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """|X|² of a complex spectrum, written into ``out`` when given."""
    parts = torch.view_as_real(spectrum).square()
    return torch.add(parts[..., 0], parts[..., 1], out=out)


@numba.njit(cache=True, nogil=True, fastmath={"contract"})  # fused multiply-adds: ~8% faster
def _chain_product(parts, starts, low_weight, high_weight, out):
    """``out[n, m] = Σ_k |X[n, k]|² W[k, m]`` for a filterbank W in chain form (see
    MelFilterbank): the bins ``starts[m]:starts[m + 1]`` feed filter m with ``low_weight``
    and filter m + 1 with ``high_weight``. ``parts`` is the spectrum as (frames, bins, 2) real
    and imaginary parts; ``out`` is (frames, filters).

    Four frames at a time, unrolled by hand: one frame's sums are a chain of dependent
    multiply-adds that waits on each result, four independent chains keep the core busy
    (~25% faster than one frame; numba keeps small arrays in memory, so no loop over them).
    The last group re-reads the last frame instead of branching; its writes are idempotent."""
    frames = parts.shape[0]
    filters = out.shape[1]
    last = frames - 1
    for n in range(0, frames, 4):
        r0, r1, r2, r3 = n, min(n + 1, last), min(n + 2, last), min(n + 3, last)
        c0 = c1 = c2 = c3 = np.float32(0.0)  # the previous segment's share of filter m
        for m in range(filters):
            l0 = l1 = l2 = l3 = h0 = h1 = h2 = h3 = np.float32(0.0)
            for k in range(starts[m], starts[m + 1]):
                low, high = low_weight[k], high_weight[k]
                p0 = parts[r0, k, 0] * parts[r0, k, 0] + parts[r0, k, 1] * parts[r0, k, 1]
                p1 = parts[r1, k, 0] * parts[r1, k, 0] + parts[r1, k, 1] * parts[r1, k, 1]
                p2 = parts[r2, k, 0] * parts[r2, k, 0] + parts[r2, k, 1] * parts[r2, k, 1]
                p3 = parts[r3, k, 0] * parts[r3, k, 0] + parts[r3, k, 1] * parts[r3, k, 1]
                l0 += low * p0
                l1 += low * p1
                l2 += low * p2
                l3 += low * p3
                h0 += high * p0
                h1 += high * p1
                h2 += high * p2
                h3 += high * p3
            out[r0, m] = l0 + c0
            out[r1, m] = l1 + c1
            out[r2, m] = l2 + c2
            out[r3, m] = l3 + c3
            c0, c1, c2, c3 = h0, h1, h2, h3


class MelFilterbank(nn.Module):
    """Complex spectrum (..., bins) → mel energies (..., filters): ``|X|² @ weight``.

    Triangular filters overlap only their neighbours, so each frequency bin feeds at most two
    adjacent filters: about 2 of the ``filters`` weights in a row are non-zero. On CPU a
    compiled loop does just those multiply-adds, straight from the FFT output — torch has no
    banded product, and its dense matmul does ~40× the work. On GPU: the dense matmul."""

    def __init__(self, weight: torch.Tensor):
        super().__init__()
        self.register_buffer("weight", weight.contiguous(), persistent=False)
        bins, filters = weight.shape
        nonzero = weight != 0
        # A bin with no filter takes its predecessor's, so that `first` never decreases.
        first = torch.where(nonzero.any(1), nonzero.int().argmax(1), 0).cummax(0).values
        next_filter = (first + 1).clamp(max=filters - 1)
        rows = torch.arange(bins)
        low = weight[rows, first]
        high = torch.where(first + 1 < filters, weight[rows, next_filter], 0.0)
        chain = torch.zeros_like(weight)
        chain[rows, first] = low
        chain[rows, next_filter] += high
        if not torch.equal(chain, weight):
            raise ValueError("filterbank has a bin that feeds non-adjacent filters")
        # Bins of one `first` value are contiguous: filter m's segment starts where m begins.
        starts = torch.searchsorted(first, torch.arange(filters + 1))
        starts[-1] = bins
        self.chain = (starts.numpy().astype(np.int64), low.float().numpy(), high.float().numpy())

    def forward(self, spectrum: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """(..., bins) complex → (..., filters), written into ``out`` when given."""
        if spectrum.device.type != "cpu":
            return torch.matmul(_power(spectrum), self.weight, out=out)
        parts = torch.view_as_real(spectrum).reshape(-1, spectrum.shape[-1], 2)
        if out is None:
            out = spectrum.new_empty(*spectrum.shape[:-1], self.weight.shape[1], dtype=parts.dtype)
        _chain_product(parts.numpy(), *self.chain, out.view(-1, out.shape[-1]).numpy())
        return out


class _FeatureBase(nn.Module):
    """Common forward: accept (N,) or (B, N) [+ lengths], return features and frame counts."""

    def __init__(self, config: FeatureConfig):
        super().__init__()
        self.config = config
        self.analysis = _FrameAnalysis(config)

    @property
    def frame_shift(self) -> float:
        return self.analysis.frame_shift

    @property
    def dim(self) -> int:
        return self._base_dim() * (1 + self.config.deltas)

    def num_frames(self, lengths: torch.Tensor) -> torch.Tensor:
        return self.analysis.num_frames(lengths)

    def forward(
        self, waveforms: torch.Tensor, lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, N) waveforms [+ (B,) sample counts] → ((B, T, F) features, (B,) frame counts).

        A 1-D waveform gives (T, F) features and a 0-d frame count. Frames past an
        utterance's length are zero and never computed.
        """
        single = waveforms.dim() == 1
        if single:
            waveforms = waveforms.unsqueeze(0)
        if waveforms.shape[-1] < self.analysis.win_length:
            raise ValueError(
                f"audio shorter than one frame ({waveforms.shape[-1]} < "
                f"{self.analysis.win_length} samples)"
            )
        if lengths is None:
            lengths = torch.full((waveforms.shape[0],), waveforms.shape[-1], dtype=torch.long)
        frame_counts = self.num_frames(lengths.to(torch.long).cpu())
        frames = self.analysis.frames(waveforms.float())
        if waveforms.device.type == "cpu":
            features = self._blockwise(frames, frame_counts.tolist())
        else:  # one batched pass; zero the padding frames afterwards
            windowed = self.analysis.window_frames(frames)
            features = self._compute(self.analysis.spectrum(windowed))
            valid = torch.arange(frames.shape[1], device=features.device)
            counts = frame_counts.to(features.device)
            features = features * (valid[None, :, None] < counts[:, None, None])
        if self.config.deltas:
            features = _append_deltas(features, self.config.deltas, frame_counts)
        return (features[0], frame_counts[0]) if single else (features, frame_counts)

    def _blockwise(self, frames: torch.Tensor, counts: list[int]) -> torch.Tensor:
        """CPU path: the utterances' frames, packed end to end, in blocks of BLOCK_FRAMES
        that stay in cache; padding frames are never computed. Packing across utterances
        keeps blocks full, because each torch call has a fixed cost that short blocks repeat.
        Each block's features go straight to their place in one packed buffer, which is then
        laid out per utterance (no copy for a single unpadded utterance).
        (B, T, win_length) → (B, T, F)."""
        analysis = self.analysis
        total = sum(counts)
        packed = frames.new_empty(total, self._base_dim())
        block_size = min(BLOCK_FRAMES, total)
        # The FFT's zero padding is this scratch's tail, written once.
        scratch = frames.new_zeros(block_size, analysis.n_fft)
        done = 0
        for pieces in _pack(counts, block_size):
            for row, start, stop, at in pieces:
                target = scratch[at : at + stop - start, : analysis.win_length]
                analysis.window_frames(frames[row, start:stop], out=target)
            _, start, stop, at = pieces[-1]
            size = at + stop - start
            self._compute(analysis.spectrum(scratch[:size]), out=packed[done : done + size])
            done += size
        if counts == [frames.shape[1]]:
            return packed.unsqueeze(0)
        features = frames.new_empty(*frames.shape[:2], self._base_dim())
        offset = 0
        for row, count in enumerate(counts):
            features[row, :count] = packed[offset : offset + count]
            features[row, count:] = 0.0
            offset += count
        return features

    def _compute(self, spectrum: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """Complex spectrum (..., n_fft/2+1) → features (..., F), written into ``out`` when
        given (the CPU path reuses one block buffer instead of allocating per block)."""
        raise NotImplementedError

    def _base_dim(self) -> int:
        raise NotImplementedError


def _pack(counts: list[int], block_size: int) -> Iterator[list[tuple[int, int, int, int]]]:
    """Cut rows of ``counts`` frames, laid end to end, into blocks of ``block_size`` frames;
    each block is its pieces ``(row, start, stop, at)``: frames ``start:stop`` of ``row`` go
    to position ``at`` of the block."""
    pieces, filled = [], 0
    for row, count in enumerate(counts):
        start = 0
        while start < count:
            stop = min(count, start + block_size - filled)
            pieces.append((row, start, stop, filled))
            filled += stop - start
            start = stop
            if filled == block_size:
                yield pieces
                pieces, filled = [], 0
    if pieces:
        yield pieces


def _mel_banks(config: FeatureConfig, n_fft: int) -> torch.Tensor:
    """(n_fft/2+1, n_mels) filterbank matrix for the configured mode."""
    if config.mode == "kaldi":
        # Kaldi counts high_freq <= 0 as an offset from Nyquist; pass that convention through.
        kaldi_high = 0.0 if config.high_freq is None else config.high_freq
        banks, _ = kaldi.get_mel_banks(
            config.n_mels, n_fft, float(config.sample_rate), config.low_freq, kaldi_high,
            100.0, -500.0, 1.0,
        )
        banks = nn.functional.pad(banks, (0, 1))  # Kaldi's banks omit the Nyquist bin
        return banks.t().contiguous()
    return AF.melscale_fbanks(
        n_fft // 2 + 1, config.low_freq, config.high_freq_hz(), config.n_mels, config.sample_rate,
        norm="slaney", mel_scale="slaney",
    )


class Fbank(_FeatureBase):
    """Log mel filterbank energies, (B, N) → (B, T, n_mels)."""

    def __init__(self, config: FeatureConfig | None = None, **overrides):
        config = config or FeatureConfig(kind="fbank", **overrides)
        super().__init__(config)
        self.mel = MelFilterbank(_mel_banks(config, self.analysis.n_fft))

    def _base_dim(self) -> int:
        return self.config.n_mels

    def _compute(self, spectrum: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        return self.mel(spectrum, out=out).clamp_(min=LOG_FLOOR).log_()


class MFCC(Fbank):
    """Cepstra: orthonormal DCT-II of the log mel energies, (B, N) → (B, T, n_mfcc)."""

    def __init__(self, config: FeatureConfig | None = None, **overrides):
        config = config or FeatureConfig(kind="mfcc", **overrides)
        super().__init__(config)
        dct = AF.create_dct(config.n_mfcc, config.n_mels, norm="ortho")
        self.register_buffer("dct", dct, persistent=False)

    def _base_dim(self) -> int:
        return self.config.n_mfcc

    def _compute(self, spectrum: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        return torch.matmul(super()._compute(spectrum), self.dct, out=out)


class Spectrogram(_FeatureBase):
    """Log power spectrum, (B, N) → (B, T, n_fft/2+1)."""

    def __init__(self, config: FeatureConfig | None = None, **overrides):
        super().__init__(config or FeatureConfig(kind="spectrogram", **overrides))

    def _base_dim(self) -> int:
        return self.analysis.n_fft // 2 + 1

    def _compute(self, spectrum: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        return _power(spectrum, out=out).clamp_(min=LOG_FLOOR).log_()


def _append_deltas(features: torch.Tensor, order: int, counts: torch.Tensor) -> torch.Tensor:
    """(B, T, F) + (B,) frame counts → (B, T, F × (1 + order)): Δ (and ΔΔ) appended with
    torchaudio's regression deltas, each utterance's as if it were alone. torchaudio extends a
    sequence by repeating its edge frames, but in a padded batch a shorter utterance's end
    would meet the padding's zeros instead: its last frames' deltas would be off by tens, and
    through per-utterance CMVN every frame with them. So each order first repeats every
    utterance's last frame over its padding; the padding is zero again afterwards."""
    steps = torch.arange(features.shape[1], device=features.device)[None, :]
    counts = counts.to(features.device)[:, None]
    padded = bool((counts < features.shape[1]).any())
    last_frame_index = torch.minimum(steps, (counts - 1).clamp(min=0))
    valid = (steps < counts).unsqueeze(-1)
    stacked = [features]
    current = features
    for _ in range(order):
        if padded:
            current = current.gather(1, last_frame_index.unsqueeze(-1).expand_as(current))
        current = AF.compute_deltas(current.transpose(-1, -2)).transpose(-1, -2)
        if padded:
            current = current * valid
        stacked.append(current)
    return torch.cat(stacked, dim=-1)


def build_features(config: FeatureConfig | dict) -> _FeatureBase:
    """The extractor a config (or its dict form, as saved in a checkpoint) describes."""
    if isinstance(config, dict):
        config = FeatureConfig(**config)
    classes = {"fbank": Fbank, "mfcc": MFCC, "spectrogram": Spectrogram}
    if config.kind not in classes:
        raise ValueError(f"unknown feature kind {config.kind!r} (fbank | mfcc | spectrogram)")
    return classes[config.kind](config)


class GlobalCMVN(nn.Module):
    """Normalise features with corpus-level mean and standard deviation: (x - μ) / σ."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, count: int = 0):
        super().__init__()
        # Not in the model's state dict: a checkpoint stores CMVN once, in cmvn.json.
        self.register_buffer("mean", mean.float(), persistent=False)
        self.register_buffer("std", std.float().clamp(min=1e-5), persistent=False)
        self.count = count

    def forward(self, features: torch.Tensor, lengths: torch.Tensor | None = None
                ) -> torch.Tensor:
        """(..., F) → (..., F); ``lengths`` is accepted for interface parity and unused."""
        return (features - self.mean) / self.std

    def to_dict(self) -> dict:
        return {"mode": "global", "mean": self.mean.tolist(), "std": self.std.tolist(),
                "count": self.count}

    @classmethod
    def from_dict(cls, data: dict) -> GlobalCMVN:
        return cls(torch.tensor(data["mean"]), torch.tensor(data["std"]), data.get("count", 0))

    def save(self, path: str | Path) -> None:
        write_atomic(path, json.dumps(self.to_dict()))

    @classmethod
    def load(cls, path: str | Path) -> GlobalCMVN:
        return cls.from_dict(json.loads(Path(path).read_text()))


class UtteranceCMVN(nn.Module):
    """Normalise every utterance by its own mean and deviation (padding ignored): robust to
    channel and speaker differences, no corpus statistics needed."""

    def forward(self, features: torch.Tensor, lengths: torch.Tensor | None = None
                ) -> torch.Tensor:
        """(B, T, F) + (B,) frame counts → (B, T, F); a (T, F) input is one utterance."""
        if features.dim() == 2:
            return utterance_cmvn(features[None], torch.tensor([features.shape[0]]))[0]
        if lengths is None:
            lengths = torch.full((features.shape[0],), features.shape[1])
        return utterance_cmvn(features, lengths.to(features.device))

    def to_dict(self) -> dict:
        return {"mode": "utterance"}

    def save(self, path: str | Path) -> None:
        write_atomic(path, json.dumps(self.to_dict()))


def load_cmvn(path: str | Path) -> GlobalCMVN | UtteranceCMVN:
    """The normaliser described by a cmvn.json (global statistics or per-utterance mode);
    ValueError naming the file for anything else (not JSON, uneven or non-finite
    statistics, a standard deviation that is not above 0)."""
    problem = input_problem(path)
    if problem:
        raise ValueError(f"{path}: {problem}")
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: not a readable CMVN JSON file ({error})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object with mean and std")
    if data.get("mode") == "utterance":
        return UtteranceCMVN()
    mean, std = data.get("mean"), data.get("std")
    if not (isinstance(mean, list) and isinstance(std, list) and mean
            and len(mean) == len(std)):
        raise ValueError(f"{path}: mean and std must be lists of the same, non-zero length")
    try:
        mean_t = torch.tensor(mean, dtype=torch.float64)
        std_t = torch.tensor(std, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(f"{path}: mean and std must hold numbers only") from None
    if not (torch.isfinite(mean_t).all() and torch.isfinite(std_t).all() and (std_t > 0).all()):
        raise ValueError(f"{path}: mean must be finite and std finite and above 0")
    return GlobalCMVN.from_dict(data)


class CMVNAccumulator:
    """Streaming mean/variance in float64: add feature matrices one at a time."""

    def __init__(self) -> None:
        self.count = 0
        self.total: torch.Tensor | None = None
        self.total_sq: torch.Tensor | None = None

    def add(self, features: torch.Tensor) -> None:
        """Add (T, F) features."""
        features = features.double()
        if self.total is None:
            self.total = torch.zeros(features.shape[-1], dtype=torch.float64)
            self.total_sq = torch.zeros_like(self.total)
        self.total += features.sum(0)
        self.total_sq += features.square().sum(0)
        self.count += features.shape[0]

    def result(self) -> GlobalCMVN:
        if not self.count:
            raise ValueError("no frames were accumulated for CMVN")
        mean = self.total / self.count
        var = (self.total_sq / self.count - mean.square()).clamp(min=0.0)
        return GlobalCMVN(mean, var.sqrt(), self.count)


def compute_cmvn(waveforms: Iterable[torch.Tensor], extractor: nn.Module) -> GlobalCMVN:
    """Global CMVN statistics over waveforms, one utterance in memory at a time."""
    accumulator = CMVNAccumulator()
    extractor.eval()
    with torch.no_grad():
        for waveform in waveforms:
            features, _ = extractor(waveform)
            accumulator.add(features)
    return accumulator.result()


def utterance_cmvn(features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Normalise each utterance by its own statistics, ignoring padded frames. (B, T, F)."""
    steps = torch.arange(features.shape[1], device=features.device)
    mask = (steps < lengths.to(features.device).unsqueeze(1)).to(features)
    mask = mask.unsqueeze(-1)
    counts = mask.sum(1, keepdim=True).clamp(min=1)
    mean = (features * mask).sum(1, keepdim=True) / counts
    var = ((features - mean).square() * mask).sum(1, keepdim=True) / counts
    # The floor maps a constant bin (e.g. a SpecAugment band filled with its mean) to ~0:
    # at 1e-5 the mean's rounding error (~1e-5 of |mean|) came out as values of ±1. Real
    # feature bins vary far more (MFCC + Δ + ΔΔ: std ≥ 0.15 per utterance, speechocean762).
    return (features - mean) / var.sqrt().clamp(min=1e-3) * mask
