"""Training-time augmentation, each driven by its own seeded generator so runs reproduce.

* :class:`SpecAugment` — frequency and time masks on (T, F) features (Park et al. 2019).
* :class:`SpeedPerturb` — resample-based speed change (tempo and pitch, like sox ``speed``).
* :class:`AddNoise` — additive noise at a signal-to-noise ratio drawn from a range.
* :class:`BandLimit` — now and then, resample down and back up, so that a wide-band model
  also meets narrow-band (e.g. 8 kHz telephone) audio, which has nothing above its Nyquist.
* :class:`VTLP` — vocal tract length perturbation: stretch the frequency axis of log-mel,
  log-spectrum or MFCC features, so a model trained on few speakers meets other formant positions.
* :class:`FeatureChain` — several feature transforms in order, picklable for DataLoader workers.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torchaudio.functional as AF
from torch import nn

from speechrnn.features import FeatureConfig, build_features

FILLS = ("zero", "mean")  # SpecAugment's mask values


class SpecAugment(nn.Module):
    """Mask ``freq_masks`` bands of ≤ ``freq_width`` bins and ``time_masks`` spans of ≤
    ``time_width`` frames (capped at ``max_time_ratio`` of the utterance). (T, F) → (T, F).

    ``fill="zero"`` writes 0, right for features already normalised to zero mean. The
    features here are masked before the model's CMVN, and raw MFCCs are far from zero
    (c0 ≈ −85 ± 27 on speechocean762), so a zeroed frame reads as louder than any real one.
    ``fill="mean"`` writes the utterance's own mean of each bin (before masking) instead,
    which per-utterance or global CMVN maps close to zero.

    With ``cepstral_basis`` (the (n_mels, n_ceps) DCT that made the cepstra, see
    :func:`cepstral_basis`), the features are blocks of cepstra [C | ΔC | ΔΔC …] and the
    frequency masks cover mel bands, as in the paper, not cepstral dimensions: each masked
    band of the cepstrally smoothed log-mel envelope is set to its utterance mean (so the
    mean fill is implied) and the change is carried back into every block. Deltas are linear
    in time, so a band held constant has zero deltas and the Δ blocks follow exactly.
    """

    def __init__(
        self,
        freq_masks: int = 2,
        freq_width: int = 27,
        time_masks: int = 2,
        time_width: int = 40,
        max_time_ratio: float = 0.2,
        seed: int = 0,
        fill: str = "zero",
        cepstral_basis: torch.Tensor | None = None,
    ):
        super().__init__()
        if fill not in FILLS:
            raise ValueError(f"SpecAugment fill must be one of {', '.join(FILLS)}, not {fill!r}")
        if cepstral_basis is not None and fill != "mean":
            raise ValueError("SpecAugment masks mel bands behind cepstra with the band's mean; "
                             "set the fill to 'mean'")
        self.fill = fill
        self.cepstral_basis = cepstral_basis
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
        frames, bins = features.shape
        fill = features.mean(dim=0) if self.fill == "mean" else features.new_zeros(bins)
        if self.cepstral_basis is not None:
            features = self._mask_mel_bands(features, generator)
        else:
            features = features.clone()
            for _ in range(self.freq_masks):
                start, width = self._span(min(self.freq_width, bins), bins, generator)
                features[:, start : start + width] = fill[start : start + width]
        time_limit = min(self.time_width, int(self.max_time_ratio * frames))
        for _ in range(self.time_masks):
            start, width = self._span(time_limit, frames, generator)
            features[start : start + width, :] = fill
        return features

    def _mask_mel_bands(self, features: torch.Tensor, generator: torch.Generator
                        ) -> torch.Tensor:
        """(T, blocks·n_ceps) cepstra → a copy whose mel envelope has masked bands held at
        their utterance mean. With D the basis and m the band mask, the static block becomes
        C − (C − C̄)·Dᵀ·diag(m)·D and each Δ block Δ − Δ·Dᵀ·diag(m)·D."""
        basis = self.cepstral_basis.to(features)
        bands, ceps = basis.shape
        band_mask = features.new_zeros(bands)
        for _ in range(self.freq_masks):
            start, width = self._span(min(self.freq_width, bands), bands, generator)
            band_mask[start : start + width] = 1.0
        projector = basis.T @ (band_mask[:, None] * basis)  # (n_ceps, n_ceps)
        deviations = features.clone()
        deviations[:, :ceps] -= features[:, :ceps].mean(dim=0)
        return features - _per_block(deviations, projector, "cepstra")


def _per_block(features: torch.Tensor, matrix: torch.Tensor, what: str) -> torch.Tensor:
    """(T, blocks·n) features [x | Δx | ΔΔx …] → each block times the (n, n) ``matrix``: a
    linear map of each frame commutes with the deltas (linear in time), so one map serves
    every block."""
    size = matrix.shape[0]
    if features.shape[1] % size:
        raise ValueError(f"{features.shape[1]} feature dimensions are not blocks of {size} "
                         f"{what}")
    return (features.reshape(len(features), -1, size) @ matrix).reshape(features.shape)


def cepstral_basis(config: FeatureConfig) -> torch.Tensor | None:
    """The (n_mels, n_mfcc) DCT behind MFCC features, for SpecAugment to mask mel bands;
    None for fbank features, whose bins already are the bands."""
    if config.kind == "fbank":
        return None
    if config.kind != "mfcc":
        raise ValueError(f"mel-band frequency masks need fbank or mfcc features, not "
                         f"{config.kind!r}")
    return build_features(config).dct.clone()


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


class VTLP(nn.Module):
    """Vocal tract length perturbation (Jaitly & Hinton 2013) on (T, F) log-mel, log-power or
    MFCC features → (T, F). A factor α drawn uniformly from ``alphas`` stretches frequencies
    below ``boundary_hz·min(α, 1)/α`` by α; a second linear piece maps the rest onto the band,
    so 0 Hz and Nyquist stay put. Each output bin takes the value found at its un-warped centre
    frequency, interpolated linearly between the bins' centres.

    The paper warps the spectrum before the filterbank; here the extractor has already pooled
    it (features are computed in the workers or batched on GPU), so the warp acts on the bins,
    as Kaldi's VTLN does on its mel filters. torchaudio and librosa have no VTLP.
    The warp is one linear map W per utterance, applied to each block of the features
    ([x | Δx | ΔΔx …]; deltas are linear in time, so they follow exactly). For cepstra,
    ``cepstral_basis`` D carries it through the mel envelope they describe: C·Dᵀ·W·D.
    """

    def __init__(self, centres_hz: Sequence[float], nyquist: float,
                 alphas: tuple[float, float] = (0.9, 1.1), boundary_hz: float | None = None,
                 seed: int = 0, cepstral_basis: torch.Tensor | None = None):
        super().__init__()
        if len(alphas) != 2:
            raise ValueError(f"VTLP needs a range of two warp factors [low, high], not {alphas}")
        low, high = alphas
        if not 0 < low <= high:
            raise ValueError(f"VTLP factors must be positive and ordered, not {alphas}")
        self.centres = np.asarray(centres_hz, dtype=np.float64)
        self.nyquist = float(nyquist)
        self.alphas = (float(low), float(high))
        # The paper's 4,800 Hz boundary at 16 kHz, as a share of the band for other rates.
        self.boundary = 0.6 * self.nyquist if boundary_hz is None else float(boundary_hz)
        self.generator = torch.Generator().manual_seed(seed)
        self.cepstral_basis = cepstral_basis

    @classmethod
    def for_features(cls, config: FeatureConfig, alphas: tuple[float, float],
                     seed: int = 0) -> VTLP:
        """The VTLP for a FeatureConfig's bins (fbank and mfcc: mel centres; spectrogram: FFT
        bins)."""
        import librosa  # heavy (numba); only needed when VTLP is configured

        nyquist = config.sample_rate / 2
        if config.kind in ("fbank", "mfcc"):
            centres = librosa.mel_frequencies(
                config.n_mels + 2, fmin=config.low_freq, fmax=config.high_freq_hz(),
                htk=config.mode == "kaldi")[1:-1]
        elif config.kind == "spectrogram":
            centres = np.linspace(0.0, nyquist, build_features(config).dim // (1 + config.deltas))
        else:
            raise ValueError(f"VTLP warps fbank, mfcc or spectrogram features, not "
                             f"{config.kind!r}")
        basis = cepstral_basis(config) if config.kind == "mfcc" else None
        return cls(centres, nyquist, alphas, seed=seed, cepstral_basis=basis)

    def source_frequencies(self, alpha: float) -> np.ndarray:
        """Where each bin's value comes from under factor ``alpha`` (the inverse warp, Hz)."""
        knee_out = self.boundary * min(alpha, 1.0)  # warp(knee_in) = knee_out
        knee_in = knee_out / alpha
        top = self.nyquist
        upper = top - (top - self.centres) * (top - knee_in) / (top - knee_out)
        return np.where(self.centres <= knee_out, self.centres / alpha, upper)

    def warp_matrix(self, alpha: float) -> torch.Tensor:
        """(bins, bins) W: warped = features·W; column j mixes bin j's two source bins."""
        bins = len(self.centres)
        position = np.interp(self.source_frequencies(alpha), self.centres,
                             np.arange(bins, dtype=np.float64))
        below = np.floor(position).astype(np.int64)
        above = np.minimum(below + 1, bins - 1)
        weight = position - below
        warp = np.zeros((bins, bins))
        columns = np.arange(bins)
        np.add.at(warp, (below, columns), 1 - weight)
        np.add.at(warp, (above, columns), weight)
        return torch.from_numpy(warp)

    def forward(self, features: torch.Tensor,
                generator: torch.Generator | None = None) -> torch.Tensor:
        generator = generator or self.generator
        low, high = self.alphas
        alpha = low + (high - low) * float(torch.rand(1, generator=generator))
        warp = self.warp_matrix(alpha).to(features)
        if self.cepstral_basis is not None:
            basis = self.cepstral_basis.to(features)
            warp = basis.T @ warp @ basis
        return _per_block(features, warp, "warped bins")


class FeatureChain(nn.Module):
    """Apply feature transforms in order, each with the caller's generator (or its own)."""

    def __init__(self, transforms: Sequence[nn.Module]):
        super().__init__()
        self.transforms = nn.ModuleList(transforms)

    def forward(self, features: torch.Tensor,
                generator: torch.Generator | None = None) -> torch.Tensor:
        for transform in self.transforms:
            features = transform(features, generator)
        return features
