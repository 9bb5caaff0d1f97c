"""Transcription and evaluation on Ray: a local instance bound to 127.0.0.1, two workers,
the same results as one process."""

from __future__ import annotations

import json
import os

import pytest

from speechrnn.evaluation import evaluate_manifest
from speechrnn.transcriber import Transcriber

ray = pytest.importorskip("ray", reason="the ray extra is not installed")


@pytest.fixture(scope="module")
def local_ray():
    """A Ray instance on this machine only: loopback address, no dashboard, no usage
    statistics (nothing leaves 127.0.0.1)."""
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             _node_ip_address="127.0.0.1")
    yield ray
    ray.shutdown()


def test_two_ray_workers_transcribe_like_one_process(local_ray, so762_wavs, tmp_path):
    from speechrnn.distributed import transcribe_with_ray

    broken = tmp_path / "broken.wav"
    broken.write_text("not audio")
    paths = [*so762_wavs, broken]
    single = Transcriber()(paths)
    spread = transcribe_with_ray(paths, workers=2)
    assert [type(r).__name__ for r in spread] == [type(r).__name__ for r in single]
    assert "broken.wav" in str(spread[-1])
    for ours, reference in zip(spread[:-1], single[:-1], strict=True):
        assert ours.to_dict() == reference.to_dict()
    assert any(r.text for r in single[:-1])  # real words, not empty strings compared


def test_evaluate_with_ray_writes_what_evaluate_writes(local_ray, so762_wavs, tmp_path):
    from speechrnn.audio import duration
    from speechrnn.data.manifest import Entry, write_manifest
    from speechrnn.distributed import evaluate_with_ray

    manifest = tmp_path / "samples.jsonl"
    entries = [Entry(path.stem, str(path), duration(path),
                     path.with_suffix(".txt").read_text()
                     if path.with_suffix(".txt").exists() else "a sentence", "spk")
               for path in so762_wavs]
    write_manifest(manifest, entries)
    evaluate_manifest(Transcriber(), entries, tmp_path / "one", manifest)
    evaluate_with_ray(manifest, tmp_path / "ray", workers=2)
    for name in ("hyp.trn", "ref.trn", "hyp.jsonl"):
        assert (tmp_path / "ray" / name).read_text() == (tmp_path / "one" / name).read_text()
    one = json.loads((tmp_path / "one" / "summary.json").read_text())
    spread = json.loads((tmp_path / "ray" / "summary.json").read_text())
    for key in ("wer", "substitutions", "deletions", "insertions", "wer_95ci"):
        assert spread[key] == one[key], key
    assert spread["utterances"] == len(entries)
