"""argparse types shared by the ``speechrnn`` command and the maintainer tools: each turns a
bad value into argparse's one-line usage error (exit 2) instead of a traceback later."""

from __future__ import annotations

import argparse
import math

from speechrnn.decoding.checks import MAX_BEAM


def _number(text: str, kind: type = float):
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected {'a whole number' if kind is int else 'a number'}, got {text!r}") from None


def positive_int(text: str) -> int:
    value = _number(text, int)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def count(text: str) -> int:
    value = _number(text, int)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, got {value}")
    return value


def beam_width(text: str) -> int:
    value = _number(text, int)
    if not 1 <= value <= MAX_BEAM:
        raise argparse.ArgumentTypeError(f"must be at least 1 and at most {MAX_BEAM}, got {value}")
    return value


def finite_float(text: str) -> float:
    value = _number(text)
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return value


def non_negative_float(text: str) -> float:
    value = _number(text)
    if not 0 <= value < math.inf:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be at least 0 and finite, got {text}")
    return value


def positive_float(text: str) -> float:
    value = _number(text)
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"must be above 0 and finite, got {text}")
    return value


def shard(text: str) -> tuple[int, int]:
    """``K/N``: the K-th of N shards, K counted from 0 (Slurm's ``$SLURM_ARRAY_TASK_ID``
    with ``--array=0-(N-1)``)."""
    index, _, count_text = text.partition("/")
    try:
        k, n = int(index), int(count_text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected K/N (e.g. 0/4), got {text!r}") from None
    if not (n >= 1 and 0 <= k < n):
        raise argparse.ArgumentTypeError(f"K/N needs N ≥ 1 and 0 ≤ K < N, got {text!r}")
    return k, n
