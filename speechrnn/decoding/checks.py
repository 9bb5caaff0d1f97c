"""Checks at the decoders' Python boundary: the compiled search trusts its arrays and
settings, so everything it reads is validated here first (a ValueError, never an
out-of-bounds read, a numba typing error or an empty transcript)."""

from __future__ import annotations

import math

import numpy as np

# A wider beam buys nothing measurable (256 is the widest any recipe tunes) and the search's
# node table grows with frames × beam: 1024 keeps a 20 s segment's table under a gigabyte.
MAX_BEAM = 1024


def check_blank_penalty(penalty: float) -> None:
    """A blank penalty is a finite, non-negative number of nats (a negative one would favour
    blank, which only deletes more)."""
    if isinstance(penalty, bool) or not isinstance(penalty, (int, float)) or not (
            0 <= penalty < math.inf):
        raise ValueError(f"the blank penalty must be ≥ 0 nats and finite, not {penalty!r}")


def check_finite(name: str, value: float) -> None:
    """LM weight, word bonus and the like: a real, finite number (NaN or inf would turn every
    hypothesis score into NaN and the output into empty text)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, not {value!r}")


def check_beam(beam: int, name: str = "beam") -> None:
    if isinstance(beam, bool) or not isinstance(beam, (int, np.integer)) or not (
            1 <= beam <= MAX_BEAM):
        raise ValueError(f"{name} must be a whole number from 1 to {MAX_BEAM}, not {beam!r}")


def checked_log_probs(log_probs, length: int | None,
                      vocabulary: int) -> tuple[np.ndarray, int]:
    """(T, V) log-probabilities of one utterance as contiguous float32 and its frame count,
    after checking the shape against the tokenizer's ``vocabulary`` size, the length
    against T, and that no value is NaN or +inf."""
    if hasattr(log_probs, "detach"):  # a torch tensor (torch is not imported for the check)
        log_probs = log_probs.detach().float().cpu().numpy()
    array = np.ascontiguousarray(log_probs, dtype=np.float32)
    if array.ndim != 2:
        raise ValueError(f"log-probabilities must be a (frames, {vocabulary}) array, not of "
                         f"shape {array.shape}")
    if array.shape[0] == 0:
        raise ValueError("log-probabilities hold no frames")
    if array.shape[1] != vocabulary:
        raise ValueError(f"log-probabilities have {array.shape[1]} columns but the tokenizer "
                         f"has {vocabulary} symbols")
    if length is None:
        length = array.shape[0]
    if hasattr(length, "item"):  # a 0-d tensor or numpy scalar
        length = length.item()
    if isinstance(length, bool) or not isinstance(length, int) or not (
            0 <= length <= array.shape[0]):
        raise ValueError(f"length must be a whole number from 0 to {array.shape[0]} (the "
                         f"frames given), not {length!r}")
    used = array[:length]
    if np.isnan(used).any() or np.isposinf(used).any():
        raise ValueError("log-probabilities contain NaN or +inf")
    return array, int(length)
