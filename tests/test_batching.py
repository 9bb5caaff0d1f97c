"""Bucketing sampler and the manifest → dataset → padded batch round trip."""

from __future__ import annotations

from dataclasses import replace

import torch
from torch.utils.data import DataLoader

from speechrnn import audio
from speechrnn.data import ASRDataset, BucketingSampler, collate, read_manifest
from speechrnn.data.dataset import manifest_cmvn, preload_audio
from speechrnn.data.sampler import padding_waste
from speechrnn.features import Fbank, FeatureConfig
from speechrnn.text import CharTokenizer


def test_sampler_budget_determinism_and_coverage():
    lengths = torch.randint(50, 1500, (500,), generator=torch.Generator().manual_seed(0))
    sampler = BucketingSampler(lengths.tolist(), max_frames=6000, seed=1)
    sampler.set_epoch(3)
    batches = list(sampler)
    assert sorted(i for b in batches for i in b) == list(range(500))
    assert all(max(lengths[b]).item() * len(b) <= 6000 for b in batches)
    assert batches == list(sampler)  # same epoch, same batches
    sampler.set_epoch(4)
    assert batches != list(sampler)
    sampler.set_epoch(3, skip=5)
    assert list(sampler) == batches[5:]


def test_sampler_splits_across_ranks():
    lengths = list(range(100, 1100, 7))
    ranks = [BucketingSampler(lengths, 5000, seed=2, num_replicas=3, rank=r) for r in range(3)]
    per_rank = [list(s) for s in ranks]
    assert len({len(b) for b in per_rank}) == 1  # same number of steps on every rank
    covered = {i for batches in per_rank for b in batches for i in b}
    assert covered == set(range(len(lengths)))


def test_padding_waste_on_speechocean762_train_is_small(prepared):
    entries = read_manifest(prepared["speechocean762"] / "train.jsonl")
    frames = [int(e.duration * 100) for e in entries]
    sampler = BucketingSampler(frames, max_frames=20000, seed=0)
    assert padding_waste(frames, list(sampler)) <= 0.10


def test_manifest_to_batches_roundtrip(prepared):
    entries = read_manifest(prepared["an4-mini"] / "train.jsonl")
    tokenizer = CharTokenizer.build(e.text for e in entries)
    extractor = Fbank(FeatureConfig())
    dataset = ASRDataset(entries, tokenizer, extractor=extractor)
    sampler = BucketingSampler([int(e.duration * 100) for e in entries], max_frames=2000)
    loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=collate, num_workers=2)
    seen = set()
    for batch in loader:
        assert batch.inputs.shape[0] == len(batch.ids) and batch.inputs.shape[2] == 80
        assert batch.inputs.shape[1] == int(batch.input_lengths.max())
        for row, utt_id in enumerate(batch.ids):
            entry = next(e for e in entries if e.id == utt_id)
            expected, frames = extractor(audio.load(entry.audio))
            assert int(batch.input_lengths[row]) == int(frames)
            assert torch.allclose(batch.inputs[row, :frames], expected, atol=1e-5)
            targets = batch.targets[row, : batch.target_lengths[row]].tolist()
            assert tokenizer.decode(targets) == tokenizer.normalize(entry.text)
            seen.add(utt_id)
    assert seen == {e.id for e in entries}


def test_unreadable_audio_is_skipped_not_fatal(tmp_path, prepared):
    entries = read_manifest(prepared["an4-mini"] / "test.jsonl")[:3]
    broken = tmp_path / "broken.wav"
    broken.write_text("not audio")
    entries[1].audio = str(broken)
    dataset = ASRDataset(entries, CharTokenizer.build(e.text for e in entries))
    batch = collate([dataset[i] for i in range(3)])
    assert batch.skipped == 1 and len(batch.ids) == 2 and entries[1].id not in batch.ids


def test_audio_cache_shares_repeats_and_leaves_unreadable_audio_to_the_dataset(
        tmp_path, prepared, monkeypatch):
    entries = read_manifest(prepared["an4-mini"] / "test.jsonl")[:3]
    broken = tmp_path / "broken.wav"
    broken.write_text("not audio")
    entries[1].audio = str(broken)
    repeat = replace(entries[0], id=entries[0].id + "#2")
    cache = preload_audio(entries + [repeat], 16000)
    assert len(cache) == 2  # the repeat reads the same samples; the broken file is left out
    expected = audio.load(entries[2].audio, 16000)

    def decode_again(entry, sample_rate):  # only the uncached (broken) entry may get here
        assert entry.audio == str(broken)
        return audio.load(entry.audio, sample_rate)

    monkeypatch.setattr("speechrnn.data.dataset.load_entry", decode_again)
    dataset = ASRDataset(entries + [repeat], CharTokenizer.build(e.text for e in entries),
                         audio_cache=cache)
    batch = collate([dataset[i] for i in range(4)])
    assert batch.skipped == 1 and entries[1].id not in batch.ids
    assert torch.equal(batch.inputs[batch.ids.index(repeat.id)],
                       batch.inputs[batch.ids.index(entries[0].id)])
    assert torch.equal(dataset[2].signal, expected)


def test_global_cmvn_reads_cached_waveforms_instead_of_decoding_again(prepared, monkeypatch):
    entries = read_manifest(prepared["an4-mini"] / "test.jsonl")[:4]
    config = FeatureConfig(sample_rate=16000)
    decoded = manifest_cmvn(entries, config)
    cache = preload_audio(entries, 16000)

    def no_decoding(entry, sample_rate):
        raise AssertionError(f"{entry.audio} decoded although it is cached")

    monkeypatch.setattr("speechrnn.data.dataset.load_entry", no_decoding)
    cached = manifest_cmvn(entries, config, audio_cache=cache)
    assert torch.equal(cached.mean, decoded.mean) and torch.equal(cached.std, decoded.std)
