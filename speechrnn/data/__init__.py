"""Manifests, datasets, batching and corpus preparation."""

from speechrnn.data.dataset import ASRDataset, Batch, collate
from speechrnn.data.manifest import Entry, ManifestError, read_manifest, write_manifest
from speechrnn.data.sampler import BucketingSampler

__all__ = ["ASRDataset", "Batch", "BucketingSampler", "Entry", "ManifestError", "collate",
           "read_manifest", "write_manifest"]
