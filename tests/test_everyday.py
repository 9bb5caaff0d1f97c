"""Everyday use of the command line and the Python API: version and help, options anywhere,
-v/-q, outputs that compose, and the inputs the Transcriber takes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speechrnn.audio import AudioError
from speechrnn.cli import EXIT_INPUT, main
from speechrnn.transcriber import Transcriber


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "speechrnn.cli", *args], capture_output=True,
                          text=True, timeout=600)


@pytest.fixture(scope="module")
def transcriber() -> Transcriber:
    return Transcriber(lm="none", beam=1)


def test_version_and_help_need_no_torch():
    assert cli("--version").stdout.strip().startswith("speechrnn 0.")
    code = ("import sys; from speechrnn.cli import build_parser; build_parser(); "
            "heavy = [m for m in ('torch', 'numba', 'librosa', 'torchaudio') if m in sys.modules]; "
            "assert not heavy, heavy")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
    for command in ("transcribe", "evaluate", "train", "prepare", "score", "tune-lm", "plot"):
        result = cli(command, "--help")
        assert result.returncode == 0 and "--threads" in result.stdout, command


def test_global_options_work_after_the_subcommand(tmp_path, capsys):
    ref = tmp_path / "ref.trn"
    ref.write_text("yes no (u1)\n")
    assert main(["score", "--ref", str(ref), "--hyp", str(ref), "--threads", "1", "-q",
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["wer"] == 0.0
    assert main(["--threads", "1", "score", "--ref", str(ref), "--hyp", str(ref)]) == 0
    with pytest.raises(SystemExit):
        main(["score", "--ref", str(ref), "--hyp", str(ref), "-v", "-q"])


def test_verbose_shows_speechrnn_decisions_and_quiet_only_results(so762_wavs):
    verbose = cli("transcribe", str(so762_wavs[0]), "-v")
    assert verbose.returncode == 0
    assert "speechrnn.transcriber: model" in verbose.stderr and "beam" in verbose.stderr
    assert "segment(s)" in verbose.stderr
    assert "numba" not in verbose.stderr.lower() and len(verbose.stderr.splitlines()) < 10
    quiet = cli("transcribe", str(so762_wavs[0]), "-q")
    assert quiet.stderr == "" and quiet.stdout == verbose.stdout


def test_json_word_times_are_milliseconds(so762_wavs, capsys):
    assert main(["transcribe", str(so762_wavs[1]), "--format", "json"]) == 0
    words = json.loads(capsys.readouterr().out)["words"]
    assert words
    for word in words:
        for key in ("start", "end"):
            assert round(word[key], 3) == word[key] and len(repr(word[key])) <= 8


def test_several_files_to_standard_output_stay_readable(so762_wavs, tmp_path, capsys):
    files = [str(p) for p in so762_wavs[:2]]
    assert main(["transcribe", *files, "--format", "srt"]) == EXIT_INPUT
    assert "--output" in capsys.readouterr().err
    assert main(["transcribe", *files, "--format", "tsv"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "file\tstart\tend\tword\tconfidence"
    assert lines.count(lines[0]) == 1
    assert {line.split("\t")[0] for line in lines[1:]} == set(files)


def test_score_reads_transcribe_json_and_manifests_without_ids(so762_wavs, tmp_path, capsys):
    assert main(["transcribe", *map(str, so762_wavs[:3]), "--format", "json"]) == 0
    hyp = tmp_path / "hyp.jsonl"
    hyp.write_text(capsys.readouterr().out)
    texts = [json.loads(line)["text"] for line in hyp.read_text().splitlines()]
    ref = tmp_path / "ref.jsonl"
    ref.write_text("".join(json.dumps({"audio": str(p), "text": t}) + "\n"
                           for p, t in zip(so762_wavs[:3], texts, strict=True)))
    assert main(["score", "--ref", str(ref), "--hyp", str(hyp), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["utterances"] == 3 and summary["wer"] == 0.0


def test_the_python_api_takes_lists_pairs_and_either_channel_layout(transcriber, so762_wavs,
                                                                    tmp_path):
    waveform, rate = sf.read(so762_wavs[0], dtype="float32")
    expected = transcriber(so762_wavs[0]).text
    assert transcriber((waveform, rate)).text == expected
    assert transcriber(waveform, sample_rate=rate).text == expected
    stereo = np.stack([waveform, waveform], axis=1)  # soundfile's (samples, channels)
    assert transcriber(stereo, sample_rate=rate).text == expected
    assert transcriber(stereo.T.copy(), sample_rate=rate).text == expected
    missing = tmp_path / "missing.wav"
    results = transcriber([so762_wavs[0], str(missing), (waveform, rate)])
    assert [getattr(r, "text", None) for r in results] == [expected, None, expected]
    assert isinstance(results[1], AudioError) and "missing.wav: no such file" in str(results[1])
    with pytest.raises(AudioError, match="needs its sample rate"):
        transcriber(waveform)


def test_training_prints_one_line_per_epoch(prepared, tmp_path):
    result = cli("train", "--outdir", str(tmp_path / "run"),
                 "--set", f"data.train={prepared['yesno'] / 'train.jsonl'}",
                 "--set", f"data.dev={prepared['yesno'] / 'dev.jsonl'}",
                 "--set", "features.sample_rate=8000", "--set", "features.n_mels=23",
                 "--set", "model.hidden=16", "--set", "model.layers=1", "--set", "epochs=2",
                 "--set", "data.num_workers=0")
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith("epoch ")]
    assert [line.split(" | ")[0] for line in lines] == ["epoch 1/2", "epoch 2/2"]
    for line in lines:
        assert "train loss" in line and "dev WER" in line and "lr " in line and " s |" in line
    assert "\r" not in result.stdout


def test_summary_reads_evaluations_and_tables_recipe_runs(tmp_path, capsys):
    from speechrnn.pretrained import resolve_model

    run = tmp_path / "exp" / "cmp_gru"
    (run / "best").mkdir(parents=True)
    (run / "best" / "config.json").write_text(json.dumps(
        {"num_parameters": 1234567, "metrics": {"epoch": 7, "wer": 0.25}}))
    for kind, wer in (("test_greedy", 0.3), ("test_lm", 0.2)):
        (run / kind).mkdir()
        (run / kind / "summary.json").write_text(json.dumps(
            {"wer": wer, "cer": wer / 2, "wer_95ci": [wer - 0.05, wer + 0.05], "rtf": 0.01,
             "decoder": {"model": str(resolve_model(None))}}))
    (run / "valid.csv").write_text("wer,cer,loss,epoch,step\n0.3,0.125,1.0,8,80\n")
    (run / "run.log").write_text("... training took 90 s\n")
    assert main(["summary", "--runs", str(run), str(tmp_path / "exp" / "unfinished")]) == 0
    table = capsys.readouterr().out.splitlines()
    assert len(table) == 3 and table[2].startswith("| gru | 1,234,567 | 7 | 1.5 min | 25.0% |")
    assert "| 12.5% (epoch 8) | 30.0% (25–35) | 15.0% | 20.0% | recipe's |" in table[2]
    assert main(["summary", str(run / "test_greedy"), str(run / "test_lm")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("test_greedy: WER 30.00% CER 15.00% (95% CI 25.0-35.0)")
    assert lines[1].startswith("test_lm: WER 20.00%")


def test_train_without_a_config_uses_the_small_data_defaults_and_says_so(prepared, tmp_path):
    """yesno is 8 kHz audio; the defaults' features are 16 kHz: a warning names both."""
    result = cli("train", "--outdir", str(tmp_path / "run"), "--set", "epochs=1",
                 "--set", f"data.train={prepared['yesno'] / 'train.jsonl'}",
                 "--set", "data.num_workers=0")
    assert result.returncode == 0, result.stderr
    assert "model: 2 x 128 bidirectional lstm" in result.stdout
    steps = int(result.stdout.split(" steps per epoch")[0].rsplit(", ", 1)[1])
    assert steps >= 4  # not two giant batches
    assert "8000 Hz" in result.stderr and "16000 Hz" in result.stderr


def test_audio_from_standard_input(so762_wavs, tmp_path):
    expected = cli("transcribe", str(so762_wavs[0])).stdout
    piped = subprocess.run([sys.executable, "-m", "speechrnn.cli", "transcribe", "-"],
                           input=so762_wavs[0].read_bytes(), capture_output=True, timeout=600)
    assert piped.returncode == 0 and piped.stdout.decode() == expected
    broken = subprocess.run([sys.executable, "-m", "speechrnn.cli", "transcribe", "-"],
                            input=b"not audio", capture_output=True, timeout=600)
    assert broken.returncode == 1 and b"<stdin>: not a readable audio stream" in broken.stderr


def test_a_long_file_shows_progress_on_a_terminal_only(so762_wavs, tmp_path):
    import fcntl
    import os
    import pty
    import struct
    import termios

    pieces = [sf.read(p, dtype="float32")[0] for p in so762_wavs]
    long = np.concatenate(pieces * (1 + int(16000 * 50 / sum(map(len, pieces)))))
    path = tmp_path / "long.wav"
    sf.write(path, long, 16000)
    command = [sys.executable, "-m", "speechrnn.cli", "transcribe", str(path), "--lm", "none"]
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=terminal)
    os.close(terminal)
    seen = b""
    while True:
        try:
            chunk = os.read(controller, 4096)
        except OSError:  # the terminal's other end closed
            break
        if not chunk:
            break
        seen += chunk
    process.wait(timeout=600)
    os.close(controller)
    assert process.returncode == 0
    assert b"s of audio" in seen and b"\r" in seen and f"/{len(long) / 16000:.0f} s".encode() \
        in seen
    logged = cli("transcribe", str(path), "--lm", "none")
    assert logged.returncode == 0 and "\r" not in logged.stderr and "of audio" not in logged.stderr


def test_each_corpus_documents_its_layout_split_and_own_options(tmp_path):
    folder = cli("prepare", "folder", "--help")
    assert folder.returncode == 0
    assert ".txt" in folder.stdout and "train/dev/test" in folder.stdout
    assert "--dev-fraction" in folder.stdout and "--test-speaker" not in folder.stdout
    fsdd = cli("prepare", "fsdd", "--help").stdout
    assert "--test-speaker" in fsdd and "speaker-disjoint" in fsdd
    refused = cli("prepare", "yesno", str(tmp_path / "src"), str(tmp_path / "out"), "--seed", "3")
    assert refused.returncode == EXIT_INPUT and "--seed" in refused.stderr
    assert not (tmp_path / "out").exists()


def test_the_same_speech_gives_the_same_words_wherever_it_sits_in_a_file(data_dir):
    """Cuts and normalisation depend only on the audio near them: a stretch of speech (here
    40 s of recordings, longer than a segment) gives the same words at two offsets."""
    corpus = data_dir / "speechocean762"
    lines = (corpus / "test" / "wav.scp").read_text().splitlines()
    recordings = [sf.read(corpus / line.split()[1], dtype="float32")[0] for line in lines[:40]]
    gap = np.zeros(16000, np.float32)

    def joined(parts):
        return np.concatenate([x for part in parts for x in (part, gap)])

    repeated = joined(recordings[:12])
    before_a, before_b = joined(recordings[12:16]), joined(recordings[16:29])
    transcriber = Transcriber()
    words = []
    for before in (before_a, before_b):
        signal = np.concatenate([before, repeated, joined(recordings[29:33])])
        start = len(before) / 16000
        end = start + len(repeated) / 16000
        result = transcriber(signal, sample_rate=16000)
        words.append([(w.text, round(w.start - start, 2)) for w in result.words
                      if start - 0.01 <= w.start and w.end <= end + 0.01])
    assert len(repeated) / 16000 > transcriber.max_segment and len(words[0]) > 20
    assert [text for text, _ in words[0]] == [text for text, _ in words[1]]
    assert max(abs(a - b) for (_, a), (_, b) in zip(*words, strict=True)) <= 0.011


def test_a_missing_dev_manifest_is_reported_before_any_training(prepared, tmp_path):
    result = cli("train", "--outdir", str(tmp_path / "run"),
                 "--set", f"data.train={prepared['yesno'] / 'train.jsonl'}",
                 "--set", f"data.dev={tmp_path / 'dev.jsonl'}")
    assert result.returncode == EXIT_INPUT and "dev.jsonl: no such file" in result.stderr
    assert "epoch" not in result.stdout and not (tmp_path / "run").exists()


def test_weights_from_a_tuning_are_used_unless_an_option_overrides_them(so762_wavs, tmp_path,
                                                                         capsys):
    from speechrnn.data.manifest import Entry, write_manifest

    manifest = tmp_path / "m.jsonl"
    write_manifest(manifest, [Entry("u0", str(so762_wavs[0]), 3.0, "we call it bear")])
    weights = tmp_path / "weights.json"
    weights.write_text(json.dumps({"alpha": 0.7, "beta": 2.5, "blank_penalty": 1.0}))
    common = ["evaluate", "--manifest", str(manifest), "--weights", str(weights), "--beam", "4"]
    assert main([*common, "--output", str(tmp_path / "a")]) == 0
    assert main([*common, "--beta", "0.5", "--output", str(tmp_path / "b")]) == 0
    used = [json.loads((tmp_path / run / "summary.json").read_text())["decoder"]
            for run in ("a", "b")]
    assert [(d["alpha"], d["beta"], d["blank_penalty"]) for d in used] == [
        (0.7, 2.5, 1.0), (0.7, 0.5, 1.0)]
    weights.write_text(json.dumps({"alpha": 0.7, "beta": "x", "blank_penalty": 1.0}))
    assert main([*common, "--output", str(tmp_path / "c")]) == EXIT_INPUT
    assert "weights.json: beta must be a finite number" in capsys.readouterr().err


def test_the_best_epoch_reported_is_the_one_best_holds(prepared, tmp_path):
    result = cli("train", "--outdir", str(tmp_path / "run"),
                 "--set", f"data.train={prepared['yesno'] / 'train.jsonl'}",
                 "--set", f"data.dev={prepared['yesno'] / 'dev.jsonl'}",
                 "--set", "features.sample_rate=8000", "--set", "features.n_mels=23",
                 "--set", "model.hidden=32", "--set", "epochs=4", "--set", "data.num_workers=0")
    assert result.returncode == 0, result.stderr
    epoch = json.loads((tmp_path / "run" / "best" / "config.json").read_text())["metrics"]["epoch"]
    assert f"(epoch {epoch}); model in" in result.stdout
    marked = [line.split(" | ")[0] for line in result.stdout.splitlines() if "new best" in line]
    assert marked[-1] == f"epoch {epoch}/4"


def test_a_copied_recipe_folder_runs_and_resumes_an_unfinished_training(data_dir, tmp_path):
    import shutil

    recipe = tmp_path / "mycorpus"
    shutil.copytree(Path(__file__).resolve().parents[1] / "recipes" / "yesno", recipe,
                    ignore=shutil.ignore_patterns("exp", "data", "results"))
    result = subprocess.run([str(recipe / "run.sh"), "--stop-stage", "2", "--data",
                             str(data_dir / "yesno")], capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    for made in ("data/test.jsonl", "data/train_words.jsonl", "data/lm.arpa.gz",
                 "data/lexicon.txt", "exp/blstm/cmvn.json"):
        assert (recipe / made).exists(), made

    def stage3(*overrides: str) -> str:
        done = subprocess.run([str(recipe / "run.sh"), "--stage", "3", "--stop-stage", "3",
                               "--set", "model.hidden=16", *overrides], capture_output=True,
                              text=True, timeout=600)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        return done.stdout

    run = recipe / "exp" / "blstm"
    assert "stage 3: train" in stage3("--set", "epochs=1")
    assert (run / ".trained").exists()
    assert "stage 3" not in stage3("--set", "epochs=2")  # finished: not trained again
    # an interrupted run has best/ but no .trained: stage 3 resumes it, not skips it
    (run / ".trained").unlink()
    assert "stage 3: train" in stage3("--set", "epochs=2")
    epochs = [line.split(",")[3] for line in (run / "valid.csv").read_text().splitlines()[1:]]
    assert epochs == ["1", "2"]
