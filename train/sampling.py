"""Data order and augmentation that do not depend on workers, world size or restarts.

``EpochBatchSampler`` draws one permutation per epoch from (seed, epoch) and hands rank r the
strided slice ``perm[r::world]``, so the union of all ranks' k-th batches is exactly the k-th
batch of a single process with the global batch size. It can start mid-epoch (resume).
It yields ``(epoch, index)`` keys, and ``KeyedAugmentation`` seeds the transform's random
numbers from (seed, epoch, index): a sample's augmentation is a pure function of those three,
whichever worker or process loads it, and however often training was interrupted.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler


def permutation(num_samples: int, seed: int, epoch: int, shuffle: bool = True) -> torch.Tensor:
    if not shuffle:
        return torch.arange(num_samples)
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    return torch.randperm(num_samples, generator=generator)


class EpochBatchSampler(Sampler):
    """Per-rank sample keys for one epoch, dropping the last incomplete global batch."""

    def __init__(self, num_samples: int, batch_size: int, num_replicas: int = 1, rank: int = 0,
                 seed: int = 0, shuffle: bool = True):
        self.num_samples, self.batch_size = num_samples, batch_size
        self.num_replicas, self.rank, self.seed, self.shuffle = num_replicas, rank, seed, shuffle
        self.iters_per_epoch = num_samples // (batch_size * num_replicas)
        self.epoch, self.start_iter, self.stop_iter = 0, 0, self.iters_per_epoch

    def set_epoch(self, epoch: int, start_iter: int = 0, stop_iter: int | None = None) -> None:
        """Yield batches ``start_iter`` (resume) up to ``stop_iter`` (a partial last epoch) of ``epoch``."""
        self.epoch, self.start_iter = epoch, start_iter
        self.stop_iter = self.iters_per_epoch if stop_iter is None else stop_iter

    def __iter__(self):
        perm = permutation(self.num_samples, self.seed, self.epoch, self.shuffle)
        used = perm[: self.iters_per_epoch * self.batch_size * self.num_replicas]
        mine = used[self.rank:: self.num_replicas][self.start_iter * self.batch_size: self.stop_iter * self.batch_size]
        return iter([(self.epoch, int(index)) for index in mine])

    def __len__(self) -> int:
        return (self.stop_iter - self.start_iter) * self.batch_size


class KeyedAugmentation(Dataset):
    """Wrap a RoadDataset; item ``(epoch, index)`` is augmented with RNG seeded from the key."""

    def __init__(self, dataset, transform, seed: int):
        self.dataset, self.transform, self.seed = dataset, transform, seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key):
        epoch, index = key
        image, mask = self.dataset[index]  # the wrapped dataset has no transform of its own
        seed = int(np.random.SeedSequence([self.seed, epoch, index]).generate_state(1)[0])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self.transform(image, mask)
