"""Duration-bucketed dynamic batching: similar lengths together, a frame budget per batch.

Each epoch, utterances are sorted by a slightly jittered length (so batches differ between
epochs without mixing short and long), packed greedily while ``batch_size × longest`` stays
within ``max_frames``, and the batch order is shuffled. Everything derives from
``seed + epoch``, so an epoch is reproducible and a resumed run can skip the batches already
consumed. With several ranks, each takes every ``num_replicas``-th batch of the same list.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler


class BucketingSampler(Sampler[list[int]]):
    """Yields lists of dataset indices; ``lengths`` are in frames (any consistent unit)."""

    def __init__(
        self,
        lengths: Sequence[int],
        max_frames: int,
        shuffle: bool = True,
        seed: int = 0,
        jitter: float = 0.05,
        num_replicas: int = 1,
        rank: int = 0,
        max_batch_size: int | None = None,
    ):
        if max_frames <= 0:
            raise ValueError("max_frames must be positive")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} outside 0..{num_replicas - 1}")
        self.lengths = torch.as_tensor(lengths, dtype=torch.float64)
        self.max_frames = max_frames
        self.shuffle = shuffle
        self.seed = seed
        self.jitter = jitter
        self.num_replicas = num_replicas
        self.rank = rank
        self.max_batch_size = max_batch_size
        self.epoch = 0
        self.skip = 0  # batches of this rank already consumed in the current epoch

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        """Select the epoch (reshuffles) and how many of its batches to skip (resume)."""
        self.epoch, self.skip = epoch, skip

    def _all_batches(self) -> list[list[int]]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        keys = self.lengths
        if self.shuffle and self.jitter > 0:
            noise = torch.rand(len(keys), generator=generator, dtype=torch.float64)
            keys = keys * (1 + self.jitter * (2 * noise - 1))
        order = torch.argsort(keys, stable=True).tolist()
        batches: list[list[int]] = []
        current: list[int] = []
        longest = 0.0
        for index in order:
            length = float(self.lengths[index])
            widest = max(longest, length)
            full = self.max_batch_size is not None and len(current) >= self.max_batch_size
            if current and (widest * (len(current) + 1) > self.max_frames or full):
                batches.append(current)
                current, widest = [], length
            current.append(index)
            longest = widest
        if current:
            batches.append(current)
        if self.shuffle:
            permutation = torch.randperm(len(batches), generator=generator).tolist()
            batches = [batches[i] for i in permutation]
        if self.num_replicas > 1:
            # Every rank must run the same number of steps: repeat batches from the start.
            remainder = len(batches) % self.num_replicas
            if remainder:
                batches += batches[: self.num_replicas - remainder]
            batches = batches[self.rank :: self.num_replicas]
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        yield from self._all_batches()[self.skip :]

    def __len__(self) -> int:
        return len(self._all_batches()) - self.skip


def padding_waste(lengths: Sequence[int], batches: Sequence[Sequence[int]]) -> float:
    """Fraction of padded frames: 1 - real frames / (Σ batch size × longest in batch)."""
    real = padded = 0
    for batch in batches:
        sizes = [lengths[i] for i in batch]
        real += sum(sizes)
        padded += max(sizes) * len(sizes)
    return 1.0 - real / padded if padded else 0.0
