"""Features against independent references on real speech: torchaudio's Kaldi fbank, librosa."""

from __future__ import annotations

import librosa
import numpy as np
import pytest
import scipy.fft
import torch
import torchaudio.compliance.kaldi as kaldi
import torchaudio.functional as AF

from speechrnn import audio
from speechrnn.features import (
    MFCC,
    CMVNAccumulator,
    Fbank,
    FeatureConfig,
    GlobalCMVN,
    MelFilterbank,
    Spectrogram,
    build_features,
    compute_cmvn,
    utterance_cmvn,
)


@pytest.fixture(scope="module")
def utterances(so762_wavs, data_dir):
    """Real speech at 16 kHz (speechocean762) and 8 kHz (FSDD)."""
    fsdd = sorted((data_dir / "fsdd" / "recordings").glob("*.wav"))[:3]
    return [(audio.load(p), 16000) for p in so762_wavs] + [(audio.load(p, 8000), 8000)
                                                          for p in fsdd]


@pytest.mark.parametrize("n_mels", [23, 80])
def test_kaldi_mode_matches_torchaudio_compliance_kaldi(utterances, n_mels):
    for waveform, rate in utterances:
        ours = Fbank(FeatureConfig(mode="kaldi", n_mels=n_mels, sample_rate=rate))
        for scale in (1.0, 32768.0):  # float range and Kaldi's int16 range
            x = waveform * scale
            reference = kaldi.fbank(x.unsqueeze(0), num_mel_bins=n_mels, dither=0.0,
                                    sample_frequency=rate)
            features, frames = ours(x)
            assert features.shape == reference.shape and int(frames) == reference.shape[0]
            assert float((features - reference).abs().max()) <= 1e-3


def test_default_mode_matches_librosa_melspectrogram(utterances):
    for waveform, rate in utterances:
        config = FeatureConfig(sample_rate=rate, n_mels=40 if rate == 8000 else 80)
        ours = Fbank(config)
        features, _ = ours(waveform)
        n_fft, win, hop = ours.analysis.n_fft, ours.analysis.win_length, ours.analysis.hop_length
        # librosa frames n_fft samples with the window centred; pad so frame t starts at t*hop.
        left = (n_fft - win) // 2
        y = np.pad(waveform.numpy(), (left, n_fft - win - left))
        mel = librosa.feature.melspectrogram(
            y=y, sr=rate, n_fft=n_fft, hop_length=hop, win_length=win, center=False,
            n_mels=config.n_mels, fmin=config.low_freq, power=2.0, htk=False, norm="slaney")
        reference = np.log(np.maximum(mel, np.finfo(np.float32).eps)).T
        assert features.shape == reference.shape
        assert np.abs(features.numpy() - reference).max() < 2e-3


def test_mfcc_is_orthonormal_dct_of_log_mel(utterances):
    waveform, _ = utterances[0]
    logmel, _ = Fbank(FeatureConfig(n_mels=40))(waveform)
    mfcc, _ = MFCC(FeatureConfig(kind="mfcc", n_mels=40, n_mfcc=13))(waveform)
    reference = scipy.fft.dct(logmel.double().numpy(), type=2, norm="ortho", axis=-1)[:, :13]
    assert np.abs(mfcc.numpy() - reference).max() < 1e-3


def test_spectrogram_matches_torch_stft(utterances):
    waveform, _ = utterances[0]
    ours, _ = Spectrogram(FeatureConfig(kind="spectrogram"))(waveform)
    padded = torch.nn.functional.pad(waveform, (56, 56))  # window centred in n_fft, as above
    stft = torch.stft(padded, 512, 160, 400, torch.hann_window(400), center=False,
                      return_complex=True)
    reference = stft.abs().square().clamp(min=torch.finfo(torch.float32).eps).T
    # Compare powers: the log of near-empty bins magnifies float32 rounding.
    assert torch.allclose(ours.exp(), reference, rtol=1e-3, atol=1e-8)


@pytest.mark.parametrize("config", [
    FeatureConfig(mode="default"), FeatureConfig(mode="kaldi"),
    # Deltas read two frames either side: a shorter utterance's last frames must not read
    # the padding (the so762 recipe's front end).
    FeatureConfig(kind="mfcc", n_mfcc=13, n_mels=80, deltas=2)])
def test_batch_equals_single_and_padding_is_zero(utterances, config):
    waves = [w for w, rate in utterances if rate == 16000][:4]
    assert len({len(w) for w in waves}) == len(waves)  # every utterance but one is padded
    extractor = build_features(config)
    lengths = torch.tensor([len(w) for w in waves])
    batch, frames = extractor(torch.nn.utils.rnn.pad_sequence(waves, batch_first=True), lengths)
    for i, waveform in enumerate(waves):
        single, count = extractor(waveform)
        assert int(frames[i]) == int(count)
        assert torch.allclose(batch[i, :count], single, atol=1e-4)
        assert float(batch[i, count:].abs().sum()) == 0.0


def test_deltas_match_torchaudio(utterances):
    waveform, _ = utterances[0]
    plain, _ = Fbank(FeatureConfig(n_mels=40))(waveform)
    with_deltas, _ = Fbank(FeatureConfig(n_mels=40, deltas=2))(waveform)
    delta = AF.compute_deltas(plain.T).T
    assert with_deltas.shape[-1] == 120
    assert torch.allclose(with_deltas[:, 40:80], delta, atol=1e-5)
    assert torch.allclose(with_deltas[:, 80:], AF.compute_deltas(delta.T).T, atol=1e-5)


@pytest.mark.parametrize("overrides", [
    dict(n_mels=80), dict(n_mels=23, mode="kaldi"), dict(n_mels=128, low_freq=0.0),
    dict(n_mels=40, low_freq=300.0, high_freq=3800.0),
    dict(n_mels=40, mode="kaldi", high_freq=-400.0),
])
def test_cpu_mel_loop_equals_the_dense_filterbank_product(overrides):
    """The compiled CPU loop uses only each bin's two neighbouring filters; it must give the
    dense |X|² @ W, also for banks with empty edge bins or (128 bands) near-empty filters."""
    extractor = Fbank(FeatureConfig(**overrides))
    weight = extractor.mel.weight
    generator = torch.Generator().manual_seed(0)
    spectrum = torch.randn(3, 50, weight.shape[0], dtype=torch.complex64, generator=generator)
    dense = (spectrum.abs() ** 2) @ weight
    assert torch.allclose(extractor.mel(spectrum), dense, rtol=1e-5, atol=1e-5)


def test_mel_filterbank_rejects_a_bank_that_is_not_a_chain():
    weight = torch.zeros(10, 4)
    weight[3, 0] = weight[3, 2] = 1.0  # bin 3 feeds two filters that are not neighbours
    with pytest.raises(ValueError, match="non-adjacent"):
        MelFilterbank(weight)


def test_build_features_from_dict_and_dims():
    extractor = build_features({"kind": "mfcc", "n_mfcc": 20, "deltas": 1})
    assert isinstance(extractor, MFCC) and extractor.dim == 40
    assert extractor.frame_shift == pytest.approx(0.01)
    with pytest.raises(ValueError, match="unknown feature kind"):
        build_features({"kind": "wavelets"})


def test_global_cmvn_streams_to_the_full_load_statistics(utterances, tmp_path):
    waves = [w for w, rate in utterances if rate == 16000]
    extractor = Fbank(FeatureConfig())
    cmvn = compute_cmvn(iter(waves), extractor)
    everything = torch.cat([extractor(w)[0] for w in waves]).double()
    assert torch.allclose(cmvn.mean.double(), everything.mean(0), atol=1e-4)
    assert torch.allclose(cmvn.std.double(), everything.std(0, unbiased=False), atol=1e-4)
    cmvn.save(tmp_path / "cmvn.json")
    restored = GlobalCMVN.load(tmp_path / "cmvn.json")
    normalised = restored(everything.float())
    assert float(normalised.mean(0).abs().max()) < 1e-3
    assert torch.allclose(normalised.std(0, unbiased=False), torch.ones(80), atol=1e-3)
    with pytest.raises(ValueError):
        CMVNAccumulator().result()


def test_utterance_cmvn_ignores_padding():
    features = torch.randn(2, 50, 4) * 3 + 5
    lengths = torch.tensor([50, 30])
    normalised = utterance_cmvn(features, lengths)
    second = normalised[1, :30]
    assert float(second.mean(0).abs().max()) < 1e-5
    assert torch.allclose(second.std(0, unbiased=False), torch.ones(4), atol=1e-4)
    assert float(normalised[1, 30:].abs().sum()) == 0.0
