"""Scoring against hand-made cases, jiwer and NIST sclite on the same files."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import jiwer
import numpy as np
import pytest
import torch

from speechrnn.decoding import greedy_ids
from speechrnn.scoring import ScoringError, compare, read_texts, read_trn, score, write_trn
from speechrnn.text import CharTokenizer


def test_hand_made_counts():
    refs = {"a-1": "the cat sat on the mat", "a-2": "hello world", "b-1": "a b c d"}
    hyps = {"a-1": "the cat sat on mat", "a-2": "hello there world", "b-1": "a x c"}
    report = score(refs, hyps)
    totals = report.totals()
    assert (totals.ref, totals.sub, totals.dele, totals.ins) == (12, 1, 2, 1)
    assert report.wer == pytest.approx(4 / 12)
    assert report.ser == 1.0
    assert report.per_speaker()["a"].ref == 8 and report.per_speaker()["b"].sub == 1
    assert report.confusions() == [("b", "x", 1)]
    ops = [op for _, _, op in report.utterances[2].alignment]
    assert ops == ["C", "S", "C", "D"]
    text = report.format(alignments=True)
    assert "REF: hello ***** world" in text and "HYP: hello there world" in text


def test_missing_extra_and_empty_references():
    refs = {"u1": "yes no", "u2": "no", "u3": ""}
    hyps = {"u1": "yes", "u3": "uh oh", "u4": "stray"}
    report = score(refs, hyps)
    assert report.missing == ["u2"] and report.extra == ["u4"]
    assert report.empty_references == ["u3"] and report.empty_reference_insertions == 2
    # u2, with no hypothesis, is scored as all deletions (as sclite does): 2 of 3 words
    assert report.totals().ref == 3 and report.totals().dele == 2 and report.wer == 2 / 3
    summary = report.summary()
    assert summary["missing"] == ["u2"] and summary["empty_references"] == ["u3"]


def test_normalisation_is_shared():
    assert score({"u": "Hello, World!"}, {"u": "hello world"}).wer == 0.0


@pytest.fixture(scope="module")
def bench_pairs(data_dir):
    """Real references and greedy hypotheses of speechocean762 test (shared bench log-probs)."""
    bench = data_dir.parent / "bench"
    data = np.load(bench / "so762_test_logprobs.npz")
    refs = json.loads((bench / "so762_test_refs.json").read_text())
    tokenizer = CharTokenizer(["<blank>", " ", "'", *"abcdefghijklmnopqrstuvwxyz"])
    hyps = {k: tokenizer.decode(greedy_ids(torch.from_numpy(data[k])[None],
                                           torch.tensor([len(data[k])]))[0]) for k in data}
    return {k: refs[k].lower() for k in hyps}, hyps


def test_matches_jiwer(bench_pairs):
    refs, hyps = bench_pairs
    ids = sorted(refs)
    expected = jiwer.process_words([refs[i] for i in ids], [hyps[i] for i in ids])
    totals = score(refs, hyps).totals()
    assert (totals.sub, totals.dele, totals.ins) == (expected.substitutions, expected.deletions,
                                                     expected.insertions)


def test_totals_equal_nist_sclite(bench_pairs, tmp_path):
    sclite = shutil.which("sctk") or shutil.which("sclite")
    if sclite is None:
        pytest.skip("NIST sclite (Debian package sctk) is not installed")
    refs, hyps = bench_pairs
    write_trn(tmp_path / "ref.trn", refs)
    write_trn(tmp_path / "hyp.trn", hyps)
    command = ([sclite, "sclite"] if sclite.endswith("sctk") else [sclite]) + [
        "-r", str(tmp_path / "ref.trn"), "trn", "-h", str(tmp_path / "hyp.trn"), "trn",
        "-i", "spu_id", "-o", "rsum", "stdout"]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    row = next(line for line in output.splitlines() if "Sum" in line)
    numbers = [int(x) for x in re.findall(r"\d+", row)]
    sentences, words, correct, sub, dele, ins, errors = numbers[:7]
    ours = score(read_trn(tmp_path / "ref.trn"), read_trn(tmp_path / "hyp.trn"),
                 alignment="sclite")
    totals = ours.totals()
    assert (sentences, words, correct, sub, dele, ins, errors) == (
        len(refs), totals.ref, totals.ref - totals.sub - totals.dele, totals.sub, totals.dele,
        totals.ins, totals.errors)
    assert int(numbers[7]) == sum(1 for u in ours.utterances if u.words.errors)
    # jiwer's unit-cost alignment finds the same number of errors, split differently
    assert score(refs, hyps).totals().errors == errors


def test_paired_comparison():
    refs = {f"u{i}": "one two three four" for i in range(40)}
    good = {k: "one two three four" if i % 4 else "one two three" for i, k in enumerate(refs)}
    bad = {k: "one too three" for k in refs}
    result = compare(refs, bad, good)
    assert result.wer_b < result.wer_a and result.b_better == 40
    assert result.bootstrap_p < 0.01 and result.sign_p < 1e-6
    same = compare(refs, good, good)
    assert same.sign_p == 1.0 and same.bootstrap_p == 1.0


def test_trn_and_jsonl_io_errors(tmp_path):
    write_trn(tmp_path / "a.trn", {"x-1": "hello world"})
    assert read_texts(tmp_path / "a.trn") == {"x-1": "hello world"}
    (tmp_path / "a.jsonl").write_text('{"id": "x-1", "text": "hello"}\n')
    assert read_texts(tmp_path / "a.jsonl") == {"x-1": "hello"}
    (tmp_path / "bad.trn").write_bytes(b"fine (u1)\ncaf\xe9 (u2)\n")
    with pytest.raises(ScoringError, match="bad.trn:2: not UTF-8"):
        read_trn(tmp_path / "bad.trn")
    (tmp_path / "noid.trn").write_text("no id here\n")
    with pytest.raises(ScoringError, match="noid.trn:1: not a trn line"):
        read_trn(tmp_path / "noid.trn")
    (tmp_path / "dup.trn").write_text("a (u1)\nb (u1)\n")
    with pytest.raises(ScoringError, match="duplicate id"):
        read_trn(tmp_path / "dup.trn")
