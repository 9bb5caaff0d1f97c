"""audio.load on real files in every supported container, and each broken-input case."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from speechrnn import audio
from speechrnn.audio import AudioError
from tests.conftest import write_bad_audio


def test_wav_8k_is_resampled_to_16k(data_dir):
    path = sorted((data_dir / "yesno" / "waves_yesno").glob("*.wav"))[0]
    native, rate = audio.read(path)
    assert rate == 8000
    resampled = audio.load(path, 16000)
    assert resampled.dtype == torch.float32 and resampled.dim() == 1
    assert abs(resampled.numel() - 2 * native.numel()) <= 2
    # Resampling keeps the signal's energy (band-limited speech below 4 kHz).
    assert float(resampled.square().mean()) == pytest.approx(float(native.square().mean()),
                                                             rel=0.05)


def test_opus_matches_header(so762_wavs):
    path = so762_wavs[0]
    waveform = audio.load(path)
    assert waveform.numel() == pytest.approx(audio.duration(path) * 16000, abs=1)
    assert 0.01 < float(waveform.abs().max()) <= 1.0


@pytest.mark.parametrize("fmt,subtype,tol", [("FLAC", "PCM_16", 1e-4), ("OGG", "VORBIS", None),
                                             ("MP3", None, None), ("WAV", "FLOAT", 1e-7)])
def test_containers_roundtrip(so762_wavs, tmp_path, fmt, subtype, tol):
    reference = audio.load(so762_wavs[1]).numpy()
    path = tmp_path / f"x.{fmt.lower()}"
    sf.write(path, reference, 16000, format=fmt, subtype=subtype)
    loaded = audio.load(path).numpy()
    if tol is not None:  # lossless: sample exact (up to 16-bit quantisation)
        assert loaded.shape == reference.shape
        assert np.abs(loaded - reference).max() < tol + 2**-15
    else:  # lossy codecs may add codec delay; the length and energy stay close
        assert abs(len(loaded) - len(reference)) < 0.1 * 16000
        assert np.std(loaded) == pytest.approx(np.std(reference), rel=0.2)


def test_downmix_and_segment(so762_wavs, tmp_path):
    mono = audio.load(so762_wavs[2]).numpy()
    stereo = np.stack([mono, 0.5 * mono], axis=1)
    path = tmp_path / "stereo.wav"
    sf.write(path, stereo, 16000, subtype="FLOAT")
    assert np.allclose(audio.load(path).numpy(), 0.75 * mono, atol=1e-6)
    segment = audio.load(path, offset=0.5, duration=0.25).numpy()
    assert np.allclose(segment, 0.75 * mono[8000:12000], atol=1e-6)


def test_every_broken_input_raises_audio_error_naming_the_file(tmp_path, so762_wavs):
    reasons = {"missing": "no such file", "empty": "empty file", "no samples": "no samples",
               "truncated": "", "truncated wav": "truncated", "not audio": "not a readable",
               "NaN": "NaN"}
    good = audio.load(so762_wavs[0]).numpy()
    for case, path in write_bad_audio(tmp_path, good).items():
        with pytest.raises(AudioError) as caught:
            audio.load(path)
        assert str(path) in str(caught.value), case
        assert reasons[case] in str(caught.value), (case, str(caught.value))
