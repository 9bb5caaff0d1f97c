"""Manifests, datasets, batching and corpus preparation."""

from speechrnn.lazy import lazy_exports

__all__ = ["ASRDataset", "Batch", "BucketingSampler", "Entry", "ManifestError", "collate",
           "read_manifest", "write_manifest"]
__getattr__ = lazy_exports(__name__, {
    **dict.fromkeys(["ASRDataset", "Batch", "collate"], "speechrnn.data.dataset"),
    **dict.fromkeys(["Entry", "ManifestError", "read_manifest", "write_manifest"],
                    "speechrnn.data.manifest"),
    "BucketingSampler": "speechrnn.data.sampler"})
