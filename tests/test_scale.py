"""Work spread over machines: --shard K/N partitions the inputs alike everywhere, and the
shards' outputs concatenated score as one unsharded run."""

from __future__ import annotations

import json

import pytest

from speechrnn.cli import EXIT_INPUT, main
from speechrnn.data.manifest import Entry, in_shard, write_manifest
from speechrnn.scoring import read_trn


def test_shards_partition_by_a_stable_hash():
    keys = [f"utt{i:04d}" for i in range(1000)]
    parts = [[k for k in keys if in_shard(k, (index, 4))] for index in range(4)]
    assert sorted(k for part in parts for k in part) == keys  # each key in exactly one
    assert all(200 < len(part) < 300 for part in parts)
    assert parts[1][:3] == [k for k in keys if in_shard(k, (1, 4))][:3]  # no state, no seed
    assert in_shard("utt0000", (0, 1))


def test_sharded_evaluation_concatenates_to_the_unsharded_run(so762_wavs, tmp_path, capsys):
    import soundfile as sf

    manifest = tmp_path / "m.jsonl"
    write_manifest(manifest, [Entry(f"spk{i % 2}_u{i}", str(p), sf.info(str(p)).duration,
                                    "we call it bear") for i, p in enumerate(so762_wavs)])
    common = ["--manifest", str(manifest), "--lm", "none", "--beam", "1"]
    assert main(["evaluate", *common, "--output", str(tmp_path / "all")]) == 0
    merged = []
    for index in range(3):
        code = main(["evaluate", *common, "--shard", f"{index}/3",
                     "--output", str(tmp_path / f"s{index}")])
        if code == EXIT_INPUT:  # a shard can be empty for so few utterances
            assert "no utterances" in capsys.readouterr().err
            continue
        merged += (tmp_path / f"s{index}" / "hyp.trn").read_text().splitlines(keepends=True)
    (tmp_path / "merged.trn").write_text("".join(merged))
    assert read_trn(tmp_path / "merged.trn") == read_trn(tmp_path / "all" / "hyp.trn")
    capsys.readouterr()
    for hyp in (tmp_path / "merged.trn", tmp_path / "all" / "hyp.trn"):
        assert main(["score", "--ref", str(manifest), "--hyp", str(hyp), "--json"]) == 0
    whole, sharded = (json.loads(part) for part in
                      capsys.readouterr().out.replace("}\n{", "}\n\n{").split("\n\n"))
    assert sharded == whole


@pytest.mark.parametrize("value", ["4/4", "-1/2", "1/0", "a/b", "3"])
def test_a_shard_outside_its_count_is_refused(value, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["transcribe", "x.wav", "--shard", value])
    assert exit_info.value.code == EXIT_INPUT and "--shard" in capsys.readouterr().err
