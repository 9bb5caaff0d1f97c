"""Training-time augmentation, each driven by its own seeded generator so runs reproduce.

* :class:`SpecAugment` — frequency and time masks on (T, F) features (Park et al. 2019).
* :class:`SpeedPerturb` — resample-based speed change (tempo and pitch, like sox ``speed``).
* :class:`AddNoise` — additive noise at a signal-to-noise ratio drawn from a range.
* :class:`BandLimit` — now and then, resample down and back up, so that a wide-band model
  also meets narrow-band (e.g. 8 kHz telephone) audio, which has nothing above its Nyquist.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torchaudio.functional as AF
from torch import nn


class SpecAugment(nn.Module):
    """Zero ``freq_masks`` bands of ≤ ``freq_width`` bins and ``time_masks`` spans of ≤
    ``time_width`` frames (capped at ``max_time_ratio`` of the utterance). (T, F) → (T, F)."""

    def __init__(
        self,
        freq_masks: int = 2,
        freq_width: int = 27,
        time_masks: int = 2,
        time_width: int = 40,
        max_time_ratio: float = 0.2,
        seed: int = 0,
    ):
        super().__init__()
        self.freq_masks, self.freq_width = freq_masks, freq_width
        self.time_masks, self.time_width = time_masks, time_width
        self.max_time_ratio = max_time_ratio
        self.generator = torch.Generator().manual_seed(seed)

    @staticmethod
    def _span(limit: int, size: int, generator: torch.Generator) -> tuple[int, int]:
        width = int(torch.randint(0, max(limit, 0) + 1, (1,), generator=generator))
        start = int(torch.randint(0, max(size - width, 0) + 1, (1,), generator=generator))
        return start, width

    def forward(self, features: torch.Tensor,
                generator: torch.Generator | None = None) -> torch.Tensor:
        """``generator`` overrides the module's own (the dataset seeds one per utterance)."""
        generator = generator or self.generator
        features = features.clone()
        frames, bins = features.shape
        for _ in range(self.freq_masks):
            start, width = self._span(min(self.freq_width, bins), bins, generator)
            features[:, start : start + width] = 0.0
        time_limit = min(self.time_width, int(self.max_time_ratio * frames))
        for _ in range(self.time_masks):
            start, width = self._span(time_limit, frames, generator)
            features[start : start + width, :] = 0.0
        return features


class SpeedPerturb(nn.Module):
    """Play the waveform at a factor drawn from ``factors`` (e.g. 0.9, 1.0, 1.1). (N,) → (N')."""

    def __init__(self, factors: Sequence[float] = (0.9, 1.0, 1.1), sample_rate: int = 16000,
                 seed: int = 0):
        super().__init__()
        self.factors = list(factors)
        self.sample_rate = sample_rate
        self.generator = torch.Generator().manual_seed(seed)

    def forward(self, waveform: torch.Tensor,
                generator: torch.Generator | None = None) -> torch.Tensor:
        generator = generator or self.generator
        choice = int(torch.randint(len(self.factors), (1,), generator=generator))
        return speed(waveform, self.factors[choice], self.sample_rate)


def speed(waveform: torch.Tensor, factor: float, sample_rate: int) -> torch.Tensor:
    """Resample as if recorded at ``rate × factor``: ``factor`` 1.1 is 10% faster and shorter."""
    if factor == 1.0:
        return waveform
    source = int(round(sample_rate * factor / 100)) * 100
    return AF.resample(waveform, source // 100, sample_rate // 100)


class AddNoise(nn.Module):
    """Mix in noise (Gaussian, or a random excerpt of given noise signals) at an SNR in dB
    drawn uniformly from ``snr_db``. (N,) → (N,)."""

    def __init__(self, snr_db: tuple[float, float] = (10.0, 30.0),
                 noises: Sequence[torch.Tensor] = (), seed: int = 0):
        super().__init__()
        self.snr_db = snr_db
        self.noises = list(noises)
        self.generator = torch.Generator().manual_seed(seed)

    def forward(self, waveform: torch.Tensor,
                generator: torch.Generator | None = None) -> torch.Tensor:
        generator = generator or self.generator
        low, high = self.snr_db
        snr = low + (high - low) * float(torch.rand(1, generator=generator))
        if self.noises:
            pick = self.noises[int(torch.randint(len(self.noises), (1,), generator=generator))]
            repeats = -(-waveform.numel() // pick.numel()) + 1
            tiled = pick.repeat(repeats)
            start = int(torch.randint(tiled.numel() - waveform.numel() + 1, (1,),
                                      generator=generator))
            noise = tiled[start : start + waveform.numel()]
        else:
            noise = torch.randn(waveform.shape, generator=generator)
        return add_noise(waveform, noise, snr)


def add_noise(waveform: torch.Tensor, noise: torch.Tensor, snr_db: float) -> torch.Tensor:
    """``waveform`` plus ``noise`` scaled to ``snr_db`` (torchaudio's add_noise)."""
    return AF.add_noise(waveform.unsqueeze(0), noise.unsqueeze(0),
                        torch.tensor([snr_db]))[0]


class BandLimit(nn.Module):
    """With probability ``prob``, remove everything above ``rate / 2`` Hz by resampling to
    ``rate`` and back to ``sample_rate``. (N,) → (N,)."""

    def __init__(self, rate: int = 8000, prob: float = 0.5, sample_rate: int = 16000,
                 seed: int = 0):
        super().__init__()
        if not 0 < rate < sample_rate:
            raise ValueError(f"band-limit rate {rate} must be below the sample rate {sample_rate}")
        self.rate, self.prob, self.sample_rate = rate, prob, sample_rate
        self.generator = torch.Generator().manual_seed(seed)

    def forward(self, waveform: torch.Tensor,
                generator: torch.Generator | None = None) -> torch.Tensor:
        generator = generator or self.generator
        if float(torch.rand(1, generator=generator)) >= self.prob:
            return waveform
        narrow = AF.resample(waveform, self.sample_rate, self.rate)
        return AF.resample(narrow, self.rate, self.sample_rate)[..., : waveform.shape[-1]]
