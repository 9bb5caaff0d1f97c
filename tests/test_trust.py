"""Edges a careless or hostile user reaches: scoring never hides errors, no output overwrites
or half-writes another, non-finite settings and inputs are refused, and every input file is
checked with one line naming it."""

from __future__ import annotations

import errno
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors.torch import load_file

from speechrnn import fileio
from speechrnn.audio import AudioError
from speechrnn.cli import EXIT_INPUT, EXIT_PARTIAL, main
from speechrnn.decoding.beam import BeamSearchDecoder
from speechrnn.decoding.greedy import GreedyDecoder
from speechrnn.decoding.lm import ArpaLM, LMError
from speechrnn.models.checkpoint import CheckpointError, load_checkpoint, write_tensors
from speechrnn.pretrained import resolve_model
from speechrnn.scoring import ScoringError, read_trn, score, write_trn
from speechrnn.text import CharTokenizer
from speechrnn.transcriber import Transcriber

BUNDLED = resolve_model(None)


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "speechrnn.cli", *args], capture_output=True,
                          text=True, timeout=600)


def one_line_error(stderr: str, *needles: str) -> bool:
    lines = stderr.strip().splitlines()
    return (len(lines) == 1 and "Traceback" not in stderr
            and all(needle in lines[0] for needle in needles))


def write_texts(path: Path, texts: dict[str, str]) -> Path:
    write_trn(path, texts)
    return path


@pytest.fixture(scope="module")
def transcriber() -> Transcriber:
    return Transcriber(lm="none", beam=1)


@pytest.fixture()
def speech_manifest(so762_wavs, tmp_path) -> Path:
    from speechrnn.data.manifest import Entry, write_manifest

    path = tmp_path / "m.jsonl"
    write_manifest(path, [Entry(f"u{i}", str(wav), sf.info(str(wav)).duration, "words")
                          for i, wav in enumerate(so762_wavs[:2])])
    return path


# -- 1. scoring never hides errors --------------------------------------------------------------

def test_missing_hypotheses_are_deletions_as_sclite_scores_them(tmp_path, capsys):
    refs = write_texts(tmp_path / "ref.trn", {"a_1": "one two three", "a_2": "four five",
                                              "b_1": "six"})
    hyps = write_texts(tmp_path / "hyp.trn", {"a_1": "one two three"})
    assert main(["score", "--ref", str(refs), "--hyp", str(hyps), "--json"]) == EXIT_PARTIAL
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert summary["wer"] == pytest.approx(3 / 6) and summary["deletions"] == 3
    assert summary["missing"] == ["a_2", "b_1"]
    assert "2 of 3 reference utterance(s) have no hypothesis" in captured.err
    if shutil.which("sctk") is None:
        return
    # sclite counts the same 3 deletions of 6 words (it needs the missing ids present as
    # empty lines; that the count agrees is what matters)
    padded = write_texts(tmp_path / "padded.trn", {"a_1": "one two three", "a_2": "", "b_1": ""})
    out = subprocess.run(["sctk", "sclite", "-r", str(refs), "trn", "-h", str(padded), "trn",
                          "-i", "spu_id", "-o", "sum", "stdout"], capture_output=True, text=True)
    total = [line for line in out.stdout.splitlines() if "Sum/Avg" in line][0]
    fields = total.replace("|", " ").split()
    assert fields[fields.index("Sum/Avg") + 2] == "6"  # words
    assert "50.0" in fields


def test_extra_hypotheses_are_an_error_unless_ignored(tmp_path, capsys):
    refs = write_texts(tmp_path / "ref.trn", {"u1": "yes"})
    hyps = write_texts(tmp_path / "hyp.trn", {"u1": "yes", "stray": "no"})
    assert main(["score", "--ref", str(refs), "--hyp", str(hyps)]) == EXIT_INPUT
    assert one_line_error(capsys.readouterr().err, str(hyps), "stray", "--ignore-extra")
    assert main(["score", "--ref", str(refs), "--hyp", str(hyps), "--ignore-extra",
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["wer"] == 0.0


def test_compare_without_shared_ids_is_an_error(tmp_path, capsys):
    refs = write_texts(tmp_path / "ref.trn", {"u1": "yes", "u2": "no"})
    a = write_texts(tmp_path / "a.trn", {"u1": "yes"})
    b = write_texts(tmp_path / "b.trn", {"u2": "no"})
    assert main(["score", "--ref", str(refs), "--hyp", str(a), "--compare", str(b)]) == 2
    assert one_line_error(capsys.readouterr().err, "share no utterance")


def test_no_nan_in_json_and_empty_sets_are_errors(tmp_path, capsys):
    refs = write_texts(tmp_path / "ref.trn", {"u1": "", "u2": ""})
    hyps = write_texts(tmp_path / "hyp.trn", {"u1": "", "u2": "uh"})
    assert main(["score", "--ref", str(refs), "--hyp", str(hyps), "--json"]) == 0
    text = capsys.readouterr().out
    assert "NaN" not in text and json.loads(text)["wer"] is None
    empty = tmp_path / "empty.trn"
    empty.write_text("")
    assert main(["score", "--ref", str(empty), "--hyp", str(hyps)]) == EXIT_INPUT
    assert one_line_error(capsys.readouterr().err, str(empty), "no reference")
    with pytest.raises(ScoringError):
        score({}, {"u": "x"})
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("")
    out = tmp_path / "never"
    assert main(["evaluate", "--manifest", str(manifest), "--output", str(out)]) == EXIT_INPUT
    assert one_line_error(capsys.readouterr().err, str(manifest), "no utterances")
    assert not out.exists()


def test_trn_ids_are_checked_so_every_file_written_reads_back(tmp_path, capsys, so762_wavs):
    texts = {"spk-1_utt.2": "a b\nc", "x": ""}
    write_trn(tmp_path / "ok.trn", texts)
    assert read_trn(tmp_path / "ok.trn") == {"spk-1_utt.2": "a b c", "x": ""}
    for bad in ("paren(x)", "two words", "tab\tid", ""):
        with pytest.raises(ScoringError, match="trn"):
            write_trn(tmp_path / "bad.trn", {bad: "text"})
    assert not (tmp_path / "bad.trn").exists()
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"id": "paren(x)", "audio": str(so762_wavs[0]),
                                    "duration": 1.0, "text": "a"}) + "\n")
    out = tmp_path / "out"
    assert main(["evaluate", "--manifest", str(manifest), "--output", str(out)]) == EXIT_INPUT
    assert one_line_error(capsys.readouterr().err, str(manifest), "paren(x)")
    assert not out.exists()


# -- 2. no output overwrites or empties another -----------------------------------------------

def test_transcribe_output_mirrors_folders_and_keeps_colliding_suffixes(tmp_path, capsys):
    tone = 0.1 * np.sin(np.arange(16000) * 0.3).astype(np.float32)
    src = tmp_path / "in"
    for name in ("a/take.wav", "b/take.wav", "b/take.flac"):
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        sf.write(src / name, tone, 16000)
    out = tmp_path / "out"
    assert main(["transcribe", str(src), "--lm", "none", "--output", str(out)]) == 0
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert written == ["a/take.txt", "b/take.flac.txt", "b/take.wav.txt"]
    # three names that still meet after keeping the suffix: refused before any work
    (src / "c").mkdir()
    files = [str(src / "c" / n) for n in ("x.flac", "x.mp3", "x.flac.mp3")]
    for name in files:
        sf.write(name, tone, 16000, format="WAV")
    again = tmp_path / "again"
    assert main(["transcribe", *files, "--lm", "none", "--output", str(again)]) == EXIT_INPUT
    assert one_line_error(capsys.readouterr().err, "would both be written to")
    assert not again.exists()


def test_train_refuses_a_folder_that_holds_a_run(tmp_path, capsys):
    (tmp_path / "tokenizer.json").write_text("{}")
    (tmp_path / "last").mkdir()
    args = ["train", "--outdir", str(tmp_path), "--set", "data.train=missing.jsonl"]
    assert main(args) == EXIT_INPUT
    assert one_line_error(capsys.readouterr().err, "--resume", "--overwrite", "holds a training")
    assert (tmp_path / "tokenizer.json").exists()
    assert main([*args, "--resume", "--overwrite"]) == EXIT_INPUT
    assert "contradict" in capsys.readouterr().err
    (tmp_path / "cmvn.json").write_text("{}")
    main([*args, "--overwrite"])  # clears the old run, then fails on the missing manifest
    assert not (tmp_path / "tokenizer.json").exists() and not (tmp_path / "last").exists()
    assert (tmp_path / "cmvn.json").exists()


class FullDisk:
    """Patches the writers' ``open`` so that every write to a file named ``victim`` fails with
    ENOSPC after ``allow`` bytes, as a full disk would."""

    def __init__(self, victim: str, allow: int = 10):
        self.victim, self.allow = victim, allow

    def __call__(self, path, mode="r", *args, **kwargs):
        handle = open(path, mode, *args, **kwargs)
        if "w" not in mode or self.victim not in str(path):
            return handle
        limit, write = self.allow, handle.write

        def failing_write(data):
            nonlocal limit
            if len(data) > limit:
                raise OSError(errno.ENOSPC, "No space left on device")
            limit -= len(data)
            return write(data)

        handle.write = failing_write
        return handle


def test_a_failing_evaluate_rerun_leaves_the_old_results_whole(speech_manifest, tmp_path,
                                                              capsys, monkeypatch):
    out = tmp_path / "out"
    args = ["evaluate", "--manifest", str(speech_manifest), "--output", str(out),
            "--lm", "none", "--beam", "1"]
    assert main(args) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert set(before) == {"hyp.jsonl", "hyp.trn", "ref.trn", "report.txt", "summary.json"}
    capsys.readouterr()
    monkeypatch.setattr(fileio, "open", FullDisk("report.txt"), raising=False)
    assert main([*args, "--beam", "2"]) == EXIT_PARTIAL
    assert one_line_error(capsys.readouterr().err, str(out / "report.txt"),
                          "No space left on device")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # nothing .tmp either
    monkeypatch.setattr(fileio, "open", FullDisk("hyp.jsonl"), raising=False)
    assert main([*args, "--beam", "2"]) == EXIT_PARTIAL
    assert one_line_error(capsys.readouterr().err, str(out / "hyp.jsonl"), "No space")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_a_full_disk_stops_a_transcribe_batch_and_names_what_was_not_done(
        tmp_path, capsys, monkeypatch):
    tone = 0.1 * np.sin(np.arange(8000) * 0.3).astype(np.float32)
    for name in ("a.wav", "b.wav", "c.wav"):
        sf.write(tmp_path / name, tone, 16000)
    out = tmp_path / "out"
    out.mkdir()
    (out / "b.txt").write_text("old transcript\n")
    monkeypatch.setattr(fileio, "open", FullDisk("b.txt", allow=0), raising=False)
    files = [str(tmp_path / n) for n in ("a.wav", "b.wav", "c.wav")]
    assert main(["transcribe", *files, "--lm", "none", "--output", str(out)]) == EXIT_PARTIAL
    err = capsys.readouterr().err
    assert one_line_error(err, str(out / "b.txt"), "No space", "2 input(s) not done",
                          files[1], files[2])
    assert sorted(p.name for p in out.iterdir()) == ["a.txt", "b.txt"]
    assert (out / "b.txt").read_text() == "old transcript\n"


def test_lm_build_into_a_directory_is_refused_and_leaves_nothing(tmp_path, capsys):
    text = tmp_path / "t.txt"
    text.write_text("yes no\n")
    target = tmp_path / "lmdir"
    target.mkdir()
    assert main(["lm", "build", str(text), str(target)]) == EXIT_INPUT
    assert one_line_error(capsys.readouterr().err, str(target), "directory")
    assert list(target.iterdir()) == [] and sorted(os.listdir(tmp_path)) == ["lmdir", "t.txt"]


# -- 3. non-finite and out-of-range values are refused ------------------------------------------

@pytest.mark.parametrize("option", [["--alpha", "nan"], ["--beta", "inf"],
                                    ["--blank-penalty", "inf"], ["--blank-penalty", "nan"],
                                    ["--beam", "100000"], ["--alpha", "abc"]])
def test_non_finite_decoding_options_are_refused(option, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["transcribe", str(tmp_path / "a.wav"), *option])
    assert exit_info.value.code == EXIT_INPUT
    assert f"argument {option[0]}" in capsys.readouterr().err


def test_the_python_api_refuses_non_finite_settings():
    tokenizer = CharTokenizer.build(["ab"])
    for kwargs in ({"alpha": math.nan}, {"beta": math.inf}, {"blank_penalty": math.inf},
                   {"beam": 0}, {"beam": 10**6}, {"beam": 2.5}):
        with pytest.raises(ValueError):
            BeamSearchDecoder(tokenizer, **kwargs)
    with pytest.raises(ValueError):
        GreedyDecoder(tokenizer, blank_penalty=math.nan)
    for kwargs in ({"alpha": math.nan}, {"blank_penalty": -1.0}, {"beam": 0}):
        with pytest.raises(ValueError):
            Transcriber(lm="none", **kwargs)


def test_the_beam_search_checks_its_arrays_at_the_boundary():
    tokenizer = CharTokenizer.build(["ab"])
    vocab = len(tokenizer)
    decoders = [BeamSearchDecoder(tokenizer, beam=4), GreedyDecoder(tokenizer)]
    good = torch.log_softmax(torch.randn(10, vocab), -1)
    for decoder in decoders:
        assert decoder.decode(good, 10)[0].text == decoder.decode(good)[0].text
        for log_probs, length, message in [
                (good, 11, "length"), (good, -1, "length"),
                (good[:, :-1], None, "columns"), (torch.cat([good, good[:, :1]], 1), None,
                                                  "columns"),
                (good[0], None, "array"), (good[:0], None, "no frames"),
                (torch.full((3, vocab), math.nan), None, "NaN")]:
            with pytest.raises(ValueError, match=message):
                decoder.decode(log_probs, length)


def test_non_finite_audio_is_a_per_file_error(transcriber, tmp_path):
    huge = np.full((16000, 2), 3e38, dtype=np.float32)  # finite, but the mix overflows
    sf.write(tmp_path / "overflow.wav", huge, 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match="overflow.wav: contains NaN or infinite"):
        transcriber(tmp_path / "overflow.wav")
    loud = np.full(16000, 1e30, dtype=np.float32)  # posteriors come out NaN
    loud[::2] = -1e30
    sf.write(tmp_path / "loud.wav", loud, 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match="loud.wav: "):
        transcriber(tmp_path / "loud.wav")


def test_digital_silence_gives_empty_text(transcriber):
    assert transcriber(np.zeros(16000 * 60, np.float32), sample_rate=16000).text == ""
    with_lm = Transcriber()
    result = with_lm(np.zeros(16000 * 45, np.float32), sample_rate=16000)
    assert result.text == "" and result.words == [] and result.duration == 45.0


# -- 4. every input file is validated ---------------------------------------------------------

@pytest.mark.parametrize("setting, needle", [
    ("model.hidden=abc", "model.hidden: expected int, got 'abc'"),
    ("model.layers=-2", "model.layers: must be at least 1"),
    ("model.bidirectional=maybe", "model.bidirectional: expected bool"),
    ("epochs=0", "epochs: must be at least 1"),
    ("optim.lr=nan", "optim.lr: expected float"),
    ("data.train_repeat=3", "data.train_repeat: expected list[int]"),
    ("model.hidden=[1,", "--set model.hidden: not a valid value"),
])
def test_config_values_are_type_and_range_checked(setting, needle, tmp_path, capsys):
    assert main(["train", "--outdir", str(tmp_path / "o"), "--set", setting]) == EXIT_INPUT
    assert one_line_error(capsys.readouterr().err, needle)
    assert not (tmp_path / "o").exists()


def test_a_config_whose_top_level_is_not_a_mapping(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("- a\n- b\n")
    assert main(["train", "--config", str(config), "--outdir", str(tmp_path / "o")]) == 2
    assert one_line_error(capsys.readouterr().err, str(config), "mapping")


def _broken_model(tmp_path: Path, name: str, change) -> Path:
    folder = tmp_path / name
    shutil.copytree(BUNDLED, folder)
    change(folder)
    return folder


def _edit_json(path: Path, edit) -> None:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize("name, change, needle", [
    ("rate", lambda f: _edit_json(f / "config.json",
                                  lambda c: c["features"].update(sample_rate=0)),
     "config.json: features.sample_rate: must be above 0"),
    ("kind", lambda f: _edit_json(f / "config.json",
                                  lambda c: c["features"].update(kind="wavelets")),
     "config.json: unknown feature kind"),
    ("cmvn", lambda f: (f / "cmvn.json").write_text(json.dumps(
        {"mode": "global", "mean": [0.0] * 5, "std": [1.0] * 5})),
     "cmvn.json: statistics of 5 features"),
    ("dup", lambda f: _edit_json(f / "tokenizer.json",
                                 lambda t: t["symbols"].__setitem__(3, t["symbols"][2])),
     "tokenizer.json: a symbol appears twice"),
    ("short", lambda f: _edit_json(f / "tokenizer.json", lambda t: t["symbols"].pop()),
     "symbols, but the model's output layer has"),
    ("beam", lambda f: _edit_json(f / "config.json",
                                  lambda c: c.setdefault("decoding", {}).update(beam="wide")),
     "config.json: decoding: beam must be"),
    ("alpha", lambda f: _edit_json(f / "config.json",
                                   lambda c: c.setdefault("decoding", {}).update(alpha=None)),
     "config.json: decoding: alpha must be a finite number"),
    ("nan", lambda f: write_tensors(
        {k: v.fill_(math.nan) if k.endswith("bias") else v
         for k, v in load_file(str(f / "model.safetensors")).items()},
        f / "model.safetensors"), "model.safetensors: non-finite"),
    ("list", lambda f: (f / "config.json").write_text("[1, 2]"), "expected a JSON object"),
])
def test_model_folders_are_checked_part_by_part(name, change, needle, tmp_path, capsys):
    folder = _broken_model(tmp_path, name, change)
    with pytest.raises(CheckpointError, match=None) as error:
        load_checkpoint(folder)
    assert needle in str(error.value)
    wav = tmp_path / "a.wav"
    sf.write(wav, np.zeros(1600, np.float32), 16000)
    assert main(["transcribe", str(wav), "--model", str(folder)]) == EXIT_INPUT
    assert one_line_error(capsys.readouterr().err, needle)


ARPA = """\\data\\
ngram 1=3
ngram 2=1

\\1-grams:
-1.0\t<s>\t-0.3
-0.5\tyes\t-0.2
-0.5\t</s>

\\2-grams:
-0.2\t<s> yes

\\end\\
"""


@pytest.mark.parametrize("change, needle", [
    (lambda t: t.replace("ngram 1=3", "ngram 1=4"), ":2: header promises 4 1-grams, found 3"),
    (lambda t: t.replace("ngram 1=3", "ngram 1=three"), ":2: expected 'ngram K=N'"),
    (lambda t: t.replace("-0.5\tyes", "nan\tyes"), ":7: a log10 probability must be"),
    (lambda t: t.replace("-0.5\tyes", "0.5\tyes"), ":7: a log10 probability must be"),
    (lambda t: t.replace("yes\t-0.2", "yes\tnan"), ":7: a log10 probability must be"),
    (lambda t: t.replace("ngram 2=1\n", ""), "no 'ngram 2=' count"),
])
def test_arpa_files_are_checked_line_by_line(change, needle, tmp_path, capsys):
    good = tmp_path / "good.arpa"
    good.write_text(ARPA)
    assert ArpaLM.load(good).score(["<s>"], "yes") == pytest.approx(-0.2)
    bad = tmp_path / "bad.arpa"
    bad.write_text(change(ARPA))
    with pytest.raises(LMError) as error:
        ArpaLM.load(bad)
    assert str(bad) in str(error.value) and needle in str(error.value)
    assert main(["transcribe", str(tmp_path / "x.wav"), "--lm", str(bad)]) == EXIT_INPUT
    assert one_line_error(capsys.readouterr().err, str(bad), needle)


def test_an_lm_the_model_cannot_spell_draws_a_warning(tmp_path, caplog):
    arpa = tmp_path / "greek.arpa"
    words = ["αβ", "γδ", "εζ", "ηθ"]
    body = "".join(f"-0.6\t{w}\n" for w in words)
    arpa.write_text(f"\\data\\\nngram 1={len(words) + 2}\n\n\\1-grams:\n-1\t<s>\n-1\t</s>\n"
                    f"{body}\n\\end\\\n")
    with caplog.at_level("WARNING"):
        Transcriber(lm=arpa)
    assert any("0 of its 4 words" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level("WARNING"):
        Transcriber()  # the bundled model with its own LM: no warning
    assert not [r for r in caplog.records if "words" in r.getMessage()]


def test_special_paths_are_named_for_what_they_are(tmp_path, capsys):
    fifo = tmp_path / "pipe.json"
    os.mkfifo(fifo)
    loop = tmp_path / "loop.wav"
    os.symlink(loop, loop)
    cases = [
        (["transcribe", str(fifo)], "named pipe"),
        (["transcribe", str(loop)], "symbolic link loop"),
        (["transcribe", "https://example.org/a.wav"], "is a URL"),
        (["score", "--ref", str(fifo), "--hyp", str(fifo)], "named pipe"),
        (["evaluate", "--manifest", str(fifo), "--output", str(tmp_path / "o")], "named pipe"),
        (["train", "--config", str(fifo), "--outdir", str(tmp_path / "o")], "named pipe"),
        (["lm", "build", str(tmp_path / "t.txt"), str(tmp_path / "x.arpa"),
          "--order", "2"], "t.txt"),
    ]
    for args, needle in cases:
        code = main(args)
        err = capsys.readouterr().err
        # one line naming the file (a transcribe batch adds its count of failed files)
        first = err.strip().splitlines()[0]
        assert code in (EXIT_PARTIAL, EXIT_INPUT) and "Traceback" not in err, (args, err)
        assert needle in first and (args[0] == "transcribe" or one_line_error(err, needle))
    model = _broken_model(tmp_path, "fifo-cmvn", lambda f: (f / "cmvn.json").unlink()
                          or os.mkfifo(f / "cmvn.json"))
    with pytest.raises(CheckpointError, match="cmvn.json: is a named pipe"):
        load_checkpoint(model)
    with pytest.raises(LMError, match="named pipe"):
        ArpaLM.load(fifo)


def test_an_unreadable_file_is_named_so(tmp_path, monkeypatch, capsys):
    """Permissions (root reads everything, so the check's answer is what is patched)."""
    locked = tmp_path / "locked.trn"
    locked.write_text("a (u1)\n")
    monkeypatch.setattr(fileio.os, "access", lambda path, mode: str(path) != str(locked))
    assert main(["score", "--ref", str(locked), "--hyp", str(locked)]) == EXIT_INPUT
    assert one_line_error(capsys.readouterr().err, str(locked), "not readable")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_is_one_line(tmp_path):
    result = cli("transcribe", str(tmp_path / "a.wav"), "--device", "cuda")
    assert result.returncode == EXIT_INPUT
    assert one_line_error(result.stderr, "CUDA is not available")


def test_a_closed_stdout_ends_quietly(tmp_path):
    refs = write_texts(tmp_path / "ref.trn", {f"u{i}": "a b c" for i in range(3000)})
    wav = tmp_path / "a.wav"
    sf.write(wav, 0.1 * np.sin(np.arange(16000) * 0.3), 16000)
    for args in (["score", "--ref", str(refs), "--hyp", str(refs), "--alignments"],
                 ["transcribe", str(wav), str(wav.with_name("b.wav")), "--lm", "none"]):
        if args[0] == "transcribe":
            shutil.copy(wav, wav.with_name("b.wav"))
        process = subprocess.Popen([sys.executable, "-m", "speechrnn.cli", *args],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        process.stdout.close()  # the reader is gone before the first line
        _, err = process.communicate(timeout=300)
        assert b"Traceback" not in err and err == b""
        assert process.returncode == 141


# -- 5. long audio in bounded memory -------------------------------------------------------------

def test_long_audio_is_decoded_a_few_segments_at_a_time(transcriber, monkeypatch):
    from speechrnn import transcriber as module

    sizes = []
    original = Transcriber.log_probs

    def recording(self, waveforms):
        sizes.append(sum(w.numel() for w in waveforms))
        return original(self, waveforms)

    monkeypatch.setattr(Transcriber, "log_probs", recording)
    rng = np.random.default_rng(0)
    noise = (0.01 * rng.standard_normal(16000 * 300)).astype(np.float32)
    transcriber(noise, sample_rate=16000)
    limit = module.SEGMENT_BATCH * transcriber.max_segment * 16000
    assert len(sizes) >= 2 and max(sizes) <= limit and sum(sizes) == noise.size


# -- 7. tests that would catch a plausible bug -------------------------------------------------

def test_the_bootstrap_interval_matches_a_reference_resampling_and_holds_the_wer():
    import random

    refs = {f"u{i}": "a b c d" for i in range(40)}
    hyps = {f"u{i}": "a b c d" if i % 3 else "a x c" for i in range(40)}
    report = score(refs, hyps)
    low, high = report.bootstrap_interval(samples=500, seed=7)
    items = [(u.words.errors, u.words.ref) for u in report.utterances]
    rng = random.Random(7)
    rates = []
    for _ in range(500):
        picked = [items[rng.randrange(len(items))] for _ in range(len(items))]
        rates.append(sum(e for e, _ in picked) / sum(n for _, n in picked))
    rates.sort()
    assert (low, high) == (rates[12], rates[487])
    assert low <= report.wer <= high
    single = score({"u": "a b"}, {"u": "a"})
    low, high = single.bootstrap_interval()
    assert low <= single.wer == 0.5 <= high


def _arpa_lm(tmp_path: Path) -> ArpaLM:
    path = tmp_path / "lm.arpa"
    path.write_text("\\data\\\nngram 1=4\nngram 2=2\n\n\\1-grams:\n-1.0\t<s>\t-0.5\n"
                    "-0.7\tab\t-0.3\n-0.9\tba\t-0.1\n-0.4\t</s>\n\n\\2-grams:\n"
                    "-0.2\t<s> ab\n-1.5\tab </s>\n\n\\end\\\n")
    return ArpaLM.load(path)


def _one_word_posteriors(tokenizer) -> torch.Tensor:
    """Frames that spell "ab" with certainty."""
    frames = [tokenizer.encode("a")[0], tokenizer.encode("b")[0], 0]
    log_probs = torch.full((len(frames), len(tokenizer)), -30.0)
    for t, token in enumerate(frames):
        log_probs[t, token] = 0.0
    return torch.log_softmax(log_probs, -1)


def test_the_lm_weight_scales_the_word_scores_and_the_final_word_is_scored_at_the_end(tmp_path):
    """The beam score of a certain "ab" is the acoustic score plus alpha · ln10 · (log10
    P(ab | <s>) + log10 P(</s> | ab)) plus beta for the word, once: the last word's LM score,
    its bonus and the sentence end are all added when the utterance ends."""
    lm = _arpa_lm(tmp_path)
    tokenizer = CharTokenizer.build(["ab ba"])
    log_probs = _one_word_posteriors(tokenizer)
    acoustic = float(log_probs.max(-1).values.sum())
    for alpha, beta in ((0.0, 0.0), (0.5, 0.0), (1.3, 0.0), (0.5, 2.0)):
        best = BeamSearchDecoder(tokenizer, lm, beam=4, alpha=alpha, beta=beta).decode(
            log_probs)[0]
        lm_log10 = -0.2 + -1.5
        assert best.text == "ab"
        assert best.score == pytest.approx(acoustic + alpha * math.log(10) * lm_log10 + beta,
                                           abs=1e-4)
