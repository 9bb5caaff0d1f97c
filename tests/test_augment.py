"""Augmentations: seeded, and each does what it says (masks, speed ratio, SNR, band,
formant shift)."""

from __future__ import annotations

import pytest
import torch
import torchaudio.functional as AF

from speechrnn import audio
from speechrnn.augment import (
    VTLP,
    AddNoise,
    BandLimit,
    SpecAugment,
    SpeedPerturb,
    cepstral_basis,
    speed,
)
from speechrnn.features import FeatureConfig, build_features, utterance_cmvn


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


def test_specaugment_mean_fill_masks_with_the_utterance_mean():
    """Raw MFCC-like features far from zero: masked cells take each bin's utterance mean, so
    per-utterance CMVN maps them close to 0 (a zero fill would be 16 deviations away)."""
    features = torch.randn(300, 39) * 5 - 80
    masked = SpecAugment(freq_masks=2, freq_width=6, time_masks=2, time_width=30, seed=1,
                         fill="mean")(features)
    changed = masked != features
    assert changed.any(0).sum() > 0 and changed.any(1).sum() > 0
    mean = features.mean(0)
    torch.testing.assert_close(masked[changed], mean.expand_as(features)[changed])
    assert not (masked == 0).any()
    normalised = utterance_cmvn(masked.unsqueeze(0), torch.tensor([300]))[0]
    assert normalised[changed].abs().max() < 0.2
    with pytest.raises(ValueError, match="fill"):
        SpecAugment(fill="noise")


def test_mel_band_masks_on_mfcc_equal_masking_the_envelope_before_the_dct(so762_wavs):
    """Reference: the log-mel envelope the 13 cepstra describe, one band of it set to its
    mean, then the DCT and torchaudio's deltas again. Exactly one band (of all starts and
    widths tried, not read from the module) must give the masked features."""
    config = FeatureConfig(kind="mfcc", n_mfcc=13, deltas=2, n_mels=80, sample_rate=16000)
    basis = cepstral_basis(config)
    features, _ = build_features(config)(audio.load(so762_wavs[0]))
    masked = SpecAugment(freq_masks=1, freq_width=20, time_masks=0, seed=5, fill="mean",
                         cepstral_basis=basis)(features)
    envelope = features[:, :13] @ basis.T

    def masking(start: int, width: int) -> torch.Tensor:
        held = envelope.clone()
        held[:, start : start + width] = envelope[:, start : start + width].mean(dim=0)
        cepstra = held @ basis
        deltas = AF.compute_deltas(cepstra.T)
        return torch.cat([cepstra, deltas.T, AF.compute_deltas(deltas).T], dim=1)

    matches = [(start, width) for width in range(1, 21) for start in range(81 - width)
               if torch.allclose(masked, masking(start, width), atol=1e-3, rtol=1e-4)]
    assert len(matches) == 1, matches
    with pytest.raises(ValueError, match="mean"):
        SpecAugment(cepstral_basis=basis)
    with pytest.raises(ValueError, match="spectrogram"):
        cepstral_basis(FeatureConfig(kind="spectrogram"))
    assert cepstral_basis(FeatureConfig(kind="fbank")) is None  # its bins are the bands


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


def _tone_features(config: FeatureConfig, hz: float) -> torch.Tensor:
    time = torch.arange(config.sample_rate) / config.sample_rate
    features, _ = build_features(config)(torch.sin(2 * torch.pi * hz * time))
    return features


@pytest.mark.parametrize("kind", ["fbank", "spectrogram"])
@pytest.mark.parametrize("alpha", [0.9, 1.1])
def test_vtlp_moves_a_tone_where_a_recorded_shifted_tone_lies(kind, alpha):
    # Reference: the extractor on a tone actually played at alpha × the frequency (below the
    # warp's knee the stretch is exactly alpha).
    config = FeatureConfig(kind=kind, sample_rate=16000, n_mels=80)
    vtlp = VTLP.for_features(config, (alpha, alpha))
    warped = vtlp(_tone_features(config, 1000.0))
    shifted = _tone_features(config, 1000.0 * alpha)
    assert int(warped.mean(0).argmax()) == int(shifted.mean(0).argmax())
    assert not torch.equal(warped, _tone_features(config, 1000.0))


@pytest.mark.parametrize("alpha", [0.9, 1.1])
def test_vtlp_on_mfcc_moves_the_envelope_where_a_shifted_tone_lies(alpha):
    # The same reference as above, read through the mel envelope the cepstra describe (40
    # cepstra: 13 smooth the tone's peak over several bands).
    config = FeatureConfig(kind="mfcc", sample_rate=16000, n_mels=80, n_mfcc=40)
    basis = cepstral_basis(config)
    warped = VTLP.for_features(config, (alpha, alpha))(_tone_features(config, 1000.0))
    shifted = _tone_features(config, 1000.0 * alpha)
    peak = [int((cepstra.mean(0) @ basis.T).argmax()) for cepstra in (warped, shifted)]
    assert peak[0] == peak[1]
    assert peak[0] != int((_tone_features(config, 1000.0).mean(0) @ basis.T).argmax())


@pytest.mark.parametrize("kind", ["fbank", "mfcc"])
def test_vtlp_warps_deltas_as_the_deltas_of_the_warped_features(so762_wavs, kind):
    # Reference: warp the static features alone, then torchaudio's deltas of the result.
    static = FeatureConfig(kind=kind, sample_rate=16000, n_mels=80, n_mfcc=13)
    with_deltas = FeatureConfig(kind=kind, sample_rate=16000, n_mels=80, n_mfcc=13, deltas=2)
    waveform = audio.load(so762_wavs[0])
    warped = VTLP.for_features(with_deltas, (0.85, 0.85))(build_features(with_deltas)(waveform)[0])
    base = VTLP.for_features(static, (0.85, 0.85))(build_features(static)(waveform)[0])
    deltas = AF.compute_deltas(base.T)
    reference = torch.cat([base, deltas.T, AF.compute_deltas(deltas).T], dim=1)
    torch.testing.assert_close(warped, reference, atol=1e-3, rtol=1e-4)


def test_vtlp_keeps_the_band_edges_and_identity_at_one():
    config = FeatureConfig(kind="fbank", sample_rate=8000, n_mels=40)
    features = torch.randn(50, 40)
    assert torch.allclose(VTLP.for_features(config, (1.0, 1.0))(features), features)
    vtlp = VTLP.for_features(config, (0.8, 1.2))
    for alpha in (0.8, 1.2):
        source = vtlp.source_frequencies(alpha)
        assert bool((source[1:] > source[:-1]).all())  # monotonic: no bins swap places
        assert source[0] == pytest.approx(vtlp.centres[0] / alpha)
        # Continuous at the knee, and Nyquist maps to itself.
        knee_out = 0.6 * 4000 * min(alpha, 1.0)
        probe = VTLP([knee_out - 1e-6, knee_out + 1e-6, 4000.0], 4000.0)
        near_knee = probe.source_frequencies(alpha)
        assert near_knee[0] == pytest.approx(knee_out / alpha)
        assert near_knee[1] - near_knee[0] == pytest.approx(0.0, abs=1e-4)
        assert near_knee[2] == pytest.approx(4000.0)
    seeded = [VTLP.for_features(config, (0.9, 1.1), seed=5)(features) for _ in range(2)]
    assert torch.equal(seeded[0], seeded[1])
    kaldi = VTLP.for_features(FeatureConfig(mode="kaldi", high_freq=-400.0), (0.9, 1.1))
    assert 7000 < kaldi.centres[-1] < 7600  # Kaldi's high_freq -400: Nyquist minus 400 Hz
    with pytest.raises(ValueError, match="two warp factors"):
        VTLP.for_features(config, (0.9,))
