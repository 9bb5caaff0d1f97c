"""Audio loading: any common file format to a float32 mono waveform at the model's rate.

soundfile (libsndfile) decodes WAV, FLAC, Ogg Vorbis/Opus and MP3; torchaudio resamples.
Every failure is raised as :class:`AudioError` naming the file, so batch jobs can report and
skip one bad file instead of dying on a library traceback.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

from speechrnn.fileio import input_problem

# File name suffixes treated as audio when folders are searched
AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".opus", ".mp3"}


class AudioError(Exception):
    """A file could not be used as audio; the message names the file and the reason."""

    def __init__(self, path: str | Path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


def info(path: str | Path):
    """Header of an audio file without decoding it: soundfile's info object, with
    ``samplerate``, ``channels`` and ``frames``."""
    path = Path(path)
    _check_file(path)
    try:
        return sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError) as error:
        raise AudioError(path, f"not a readable audio file ({error})") from None


def duration(path: str | Path) -> float:
    """Length in seconds, from the header."""
    header = info(path)
    if header.frames <= 0:
        raise AudioError(path, "contains no samples")
    return header.frames / header.samplerate


def load(
    path: str | Path,
    sample_rate: int | None = 16000,
    offset: float = 0.0,
    duration: float | None = None,
) -> torch.Tensor:
    """Read ``path`` as a float32 mono waveform of shape (samples,).

    Channels are averaged; the signal is resampled to ``sample_rate`` (None keeps the file's
    rate). ``offset``/``duration`` (seconds) select a segment without decoding the rest.
    """
    waveform, file_rate = read(path, offset, duration)
    if sample_rate is not None and file_rate != sample_rate:
        waveform = resample(waveform, file_rate, sample_rate)
    return waveform


def read(
    path: str | Path, offset: float = 0.0, duration: float | None = None
) -> tuple[torch.Tensor, int]:
    """Read ``path`` at its own rate: (float32 mono waveform, sample rate)."""
    path = Path(path)
    if offset < 0 or (duration is not None and duration <= 0):
        raise AudioError(path, f"invalid segment offset={offset} duration={duration}")
    _check_file(path)
    try:
        with sf.SoundFile(str(path)) as handle:
            rate = handle.samplerate
            start = int(round(offset * rate))
            if handle.frames > 0 and start >= handle.frames:
                raise AudioError(path, f"offset {offset:.3f}s is past the end of the audio")
            wanted = -1 if duration is None else int(round(duration * rate))
            if start:
                handle.seek(start)
            data = handle.read(frames=wanted, dtype="float32", always_2d=True)
            expected = handle.frames - start if wanted < 0 else min(wanted, handle.frames - start)
    except AudioError:
        raise
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as error:
        raise AudioError(path, f"not a readable audio file ({error})") from None
    if data.shape[0] == 0:
        raise AudioError(path, "contains no samples")
    if handle.frames > 0 and data.shape[0] < expected or _wav_data_missing(path):
        raise AudioError(
            path, f"truncated: the header promises more samples than the {data.shape[0]} "
            "in the file"
        )
    return _mono(data, path), rate


def _mono(data: np.ndarray, name: str | Path) -> torch.Tensor:
    """(samples, channels) float32 → mono waveform, refused (naming ``name``) if any sample is
    NaN or infinite after the mix: huge float samples can overflow there."""
    with np.errstate(over="ignore"):  # an overflow is reported just below, by name
        mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    waveform = torch.from_numpy(np.ascontiguousarray(mono))
    if not all_finite(waveform):
        raise AudioError(name, "contains NaN or infinite samples")
    return waveform


def all_finite(waveform: torch.Tensor, piece: int = 1 << 20) -> bool:
    """Whether every sample is finite, checked a million samples at a time: one call over an
    hour of audio would make temporaries larger than the waveform itself."""
    return all(bool(torch.isfinite(part).all()) for part in waveform.reshape(-1).split(piece))


def decode_bytes(data: bytes, sample_rate: int | None = 16000, name: str = "<stdin>"
                 ) -> torch.Tensor:
    """An audio file's bytes (read from a pipe, say) as a float32 mono waveform at
    ``sample_rate``; AudioError naming ``name`` for anything soundfile cannot decode."""
    if not data:
        raise AudioError(name, "no data")
    try:
        samples, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as error:
        reason = getattr(error, "error_string", None) or str(error)
        raise AudioError(name, f"not a readable audio stream ({reason})") from None
    if samples.shape[0] == 0:
        raise AudioError(name, "contains no samples")
    waveform = _mono(samples, name)
    if sample_rate is not None and rate != sample_rate:
        waveform = resample(waveform, rate, sample_rate)
    return waveform


def resample(waveform: torch.Tensor, orig_rate: int, new_rate: int) -> torch.Tensor:
    """Band-limited resampling (torchaudio's windowed sinc), reduced by the rates' gcd."""
    if orig_rate == new_rate:
        return waveform
    divisor = math.gcd(orig_rate, new_rate)
    return AF.resample(waveform, orig_rate // divisor, new_rate // divisor)


def _wav_data_missing(path: Path) -> bool:
    """True if a RIFF/WAVE file's data chunk promises more bytes than the file holds.

    libsndfile silently shortens such files to what is there, so a cut-off download would
    otherwise pass as a shorter recording; this reads only the chunk headers.
    """
    with open(path, "rb") as handle:
        header = handle.read(12)
        if len(header) < 12 or header[:4] != b"RIFF" or header[8:12] != b"WAVE":
            return False
        size = path.stat().st_size
        position = 12
        while position + 8 <= size:
            handle.seek(position)
            chunk = handle.read(8)
            length = int.from_bytes(chunk[4:8], "little")
            if chunk[:4] == b"data":
                return length != 0xFFFFFFFF and position + 8 + length > size
            position += 8 + length + (length & 1)
    return False


def _check_file(path: Path) -> None:
    problem = input_problem(path)
    if problem:
        raise AudioError(path, problem)
    if path.stat().st_size == 0:
        raise AudioError(path, "empty file (0 bytes)")
