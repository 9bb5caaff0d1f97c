"""Augmentations: seeded, and each does what it says (masks, speed ratio, SNR, band)."""

from __future__ import annotations

import pytest
import torch

from speechrnn import audio
from speechrnn.augment import AddNoise, BandLimit, SpecAugment, SpeedPerturb, speed


def test_specaugment_is_seeded_and_masks_bounded():
    features = torch.randn(200, 80) + 10
    first = SpecAugment(freq_width=10, time_width=20, seed=3)(features)
    again = SpecAugment(freq_width=10, time_width=20, seed=3)(features)
    assert torch.equal(first, again)
    zero_columns = int((first == 0).all(0).sum())
    zero_rows = int((first == 0).all(1).sum())
    assert 0 < zero_columns + zero_rows
    assert zero_columns <= 2 * 10 and zero_rows <= 2 * 20
    assert not torch.equal(first, SpecAugment(freq_width=10, time_width=20, seed=4)(features))


@pytest.mark.parametrize("factor", [0.9, 1.1])
def test_speed_changes_duration_by_the_factor(so762_wavs, factor):
    waveform = audio.load(so762_wavs[0])
    changed = speed(waveform, factor, 16000)
    assert changed.numel() == pytest.approx(waveform.numel() / factor, rel=0.002)


def test_speed_perturb_seeded(so762_wavs):
    waveform = audio.load(so762_wavs[0])
    lengths = [SpeedPerturb(seed=s)(waveform).numel() for s in range(6)]
    assert lengths == [SpeedPerturb(seed=s)(waveform).numel() for s in range(6)]
    assert len(set(lengths)) > 1


def test_add_noise_reaches_the_requested_snr(so762_wavs):
    waveform = audio.load(so762_wavs[0])
    noisy = AddNoise(snr_db=(10.0, 10.0), seed=0)(waveform)
    noise = noisy - waveform
    snr = 10 * torch.log10(waveform.square().sum() / noise.square().sum())
    assert float(snr) == pytest.approx(10.0, abs=0.01)


def test_band_limit_removes_the_upper_band_and_keeps_the_lower(so762_wavs):
    waveform = audio.load(so762_wavs[0])
    limited = BandLimit(rate=8000, prob=1.0)(waveform)
    assert limited.shape == waveform.shape
    power, limited_power = (torch.fft.rfft(x).abs().square() for x in (waveform, limited))
    bin_hz = 16000 / waveform.numel()
    above, below = int(4500 / bin_hz), int(3500 / bin_hz)
    # Speech has energy above 4.5 kHz; after the cut (torchaudio resampling filters, as the
    # loader uses for 8 kHz files) less than 1% of it is left...
    assert float(limited_power[above:].sum() / power[above:].sum()) < 1e-2
    # ...while the telephone band is untouched (within 1%).
    assert float(limited_power[:below].sum() / power[:below].sum()) == pytest.approx(1, abs=0.01)
    assert torch.equal(BandLimit(prob=0.0)(waveform), waveform)
    picks = [torch.equal(BandLimit(prob=0.5, seed=s)(waveform), waveform) for s in range(8)]
    assert picks == [torch.equal(BandLimit(prob=0.5, seed=s)(waveform), waveform)
                     for s in range(8)] and 0 < sum(picks) < 8
