"""Crash safety and bad input: SIGKILLed training resumes exactly; broken inputs are reported."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors.torch import load_file

from speechrnn.models.checkpoint import load_checkpoint
from speechrnn.training.checkpoints import load_trainer_state
from tests.conftest import write_bad_audio

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _train_command(prepared, outdir, *extra):
    return [sys.executable, "-m", "speechrnn.cli", "train", "--outdir", str(outdir),
            "--set", f"data.train={prepared['yesno'] / 'train.jsonl'}",
            "--set", f"data.dev={prepared['yesno'] / 'dev.jsonl'}",
            "--set", "data.max_frames=3000", "--set", "data.num_workers=0",
            "--set", "features.n_mels=40", "--set", "features.sample_rate=8000",
            "--set", "model.hidden=48", "--set", "model.layers=2", "--set", "model.dropout=0.2",
            "--set", "augment.specaugment=true", "--set", "epochs=6",
            "--set", "checkpoint_every=2", "--set", "log_every=1", "--set", "progress=false",
            *extra]


def _logged_steps(outdir) -> int:
    path = outdir / "train.csv"
    if not path.exists():
        return 0
    rows = path.read_text().splitlines()[1:]
    return max((int(r.split(",")[0]) for r in rows if r), default=0)


def _wait_for_steps(outdir, process, at_least: int, timeout: float = 120.0) -> None:
    """Until training in ``outdir`` has logged ``at_least`` steps (or has exited)."""
    deadline = time.monotonic() + timeout
    while (_logged_steps(outdir) < at_least and process.poll() is None
           and time.monotonic() < deadline):
        time.sleep(0.01)


def test_sigkill_at_random_moments_then_resume_equals_uninterrupted(prepared, tmp_path):
    reference = tmp_path / "reference"
    subprocess.run(_train_command(prepared, reference), env=ENV, check=True,
                   capture_output=True, timeout=600)
    total_steps = _logged_steps(reference)
    crashed = tmp_path / "crashed"
    rng = random.Random(7)
    # Kill points are drawn in training steps, not seconds: a wall-clock delay that leaves room
    # for several kills on a slow machine lets a fast one finish training before the second.
    kill_points = sorted(rng.sample(range(2, total_steps - 1), 3))
    kills = 0
    for kill_at in kill_points:
        resume = ["--resume"] if (crashed / "last").exists() else []
        process = subprocess.Popen(_train_command(prepared, crashed, *resume), env=ENV,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_for_steps(crashed, process, at_least=max(kill_at, _logged_steps(crashed) + 1))
        if process.poll() is not None:
            break
        done_before_kill = _logged_steps(crashed)
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        kills += 1
        if not (crashed / "last").exists() and not (crashed / "last.old").exists():
            continue  # killed before the first checkpoint: nothing to lose yet
        checkpoint = load_checkpoint(crashed / "last")  # the latest checkpoint always loads
        state = load_trainer_state(crashed / "last")
        assert checkpoint.model.num_parameters() > 0
        assert done_before_kill - state["step"] <= 2 + 1  # ≤ one interval (+ the step in flight)
    assert kills >= 2
    subprocess.run(_train_command(prepared, crashed, "--resume"), env=ENV, check=True,
                   capture_output=True, timeout=600)
    final = load_file(str(reference / "last" / "model.safetensors"))
    resumed = load_file(str(crashed / "last" / "model.safetensors"))
    for key in final:
        assert torch.equal(final[key], resumed[key]), key


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "speechrnn.cli", *args], capture_output=True,
                          text=True, timeout=300, env=ENV)


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory, so762_wavs):
    """The bad-input corpus, generated on the fly."""
    from speechrnn import audio

    root = tmp_path_factory.mktemp("bad")
    good = audio.load(so762_wavs[0]).numpy()
    cases = write_bad_audio(root, good)
    files = {"empty file": cases["empty"], "zero samples": cases["no samples"],
             "truncated FLAC": cases["truncated"], "text named .wav": cases["not audio"],
             "NaN samples": cases["NaN"], "missing file": cases["missing"]}
    sf.write(root / "silence.flac", np.zeros(16000 * 3600, np.int16), 16000)
    files["1 hour of silence"] = root / "silence.flac"
    tone = 0.5 * np.sin(2 * np.pi * 440 * np.arange(16000 * 3) / 16000)
    sf.write(root / "tone.wav", tone.astype(np.float32), 16000)
    files["pure tone"] = root / "tone.wav"
    sf.write(root / "hires.wav", np.repeat(good, 12)[: 192000 * 3], 192000)
    files["192 kHz"] = root / "hires.wav"
    sf.write(root / "six.wav", np.stack([good] * 6, axis=1), 16000)
    files["6 channels"] = root / "six.wav"
    sf.write(root / "ulaw.wav", good, 8000, subtype="ULAW")
    files["8-bit mu-law"] = root / "ulaw.wav"
    return files


GOOD = {"1 hour of silence", "pure tone", "192 kHz", "6 channels", "8-bit mu-law"}


def test_transcribe_reports_each_bad_file_and_decodes_the_odd_ones(bad_inputs):
    paths = [str(p) for p in bad_inputs.values()]
    result = run_cli("transcribe", *paths, "--format", "json", "--lm", "none", "--beam", "1")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    decoded = {json.loads(line)["file"]: json.loads(line) for line in
               result.stdout.strip().splitlines()}
    for case, path in bad_inputs.items():
        if case in GOOD:
            assert str(path) in decoded, case
        else:
            assert str(path) in result.stderr, case
    silence = decoded[str(bad_inputs["1 hour of silence"])]
    assert silence["duration"] == pytest.approx(3600.0) and silence["text"] == ""


def test_prepare_and_evaluate_skip_bad_items(bad_inputs, tmp_path):
    manifest = tmp_path / "m.jsonl"
    lines = [json.dumps({"id": case.replace(" ", "_"), "audio": str(path), "duration": 1.0,
                         "text": "hello"}) for case, path in bad_inputs.items()
             if case not in ("1 hour of silence",)]
    manifest.write_text("\n".join(lines) + "\n")
    result = run_cli("evaluate", "--manifest", str(manifest), "--out", str(tmp_path / "out"),
                     "--beam", "1")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["failed"] == len(lines) - (len(GOOD) - 1)
    assert "empty_file" in summary["missing"]
    folder = tmp_path / "folder"
    folder.mkdir()
    for case, path in bad_inputs.items():
        if path.exists() and case != "1 hour of silence":
            (folder / path.name).write_bytes(path.read_bytes())
            (folder / path.with_suffix(".txt").name).write_text("hello\n")
    (folder / "latin1.txt").write_bytes(b"caf\xe9\n")
    (folder / "latin1.wav").write_bytes(bad_inputs["pure tone"].read_bytes())
    prepared = run_cli("prepare", "folder", str(folder), str(tmp_path / "prep"))
    assert prepared.returncode == 1 and "Traceback" not in prepared.stderr
    assert "latin1.txt: transcript is not UTF-8" in prepared.stderr
    assert "empty.wav: empty file" in prepared.stderr


def test_score_reports_encoding_and_duplicates(tmp_path):
    (tmp_path / "ref.trn").write_text("a b (u1)\na b (u1)\n")
    (tmp_path / "hyp.trn").write_bytes(b"a \xff (u1)\n")
    result = run_cli("score", "--ref", str(tmp_path / "ref.trn"), "--hyp",
                     str(tmp_path / "hyp.trn"))
    assert result.returncode == 2 and "ref.trn:2: duplicate id 'u1'" in result.stderr


def test_nan_losses_and_impossible_targets_are_skipped_not_fatal(prepared, tmp_path):
    from speechrnn.data import Entry, read_manifest, write_manifest
    from speechrnn.training import load_config
    from speechrnn.training.trainer import Trainer

    entries = read_manifest(prepared["yesno"] / "train.jsonl")
    broken = [Entry(e.id + "-long", e.audio, e.duration, "yes " * 400, e.speaker)
              for e in entries[:3]]
    broken.append(Entry("empty-text", entries[3].audio, entries[3].duration, "", "x"))
    write_manifest(tmp_path / "train.jsonl", entries + broken)
    config = load_config(None, [f"data.train={tmp_path / 'train.jsonl'}", "data.num_workers=0",
                                "features.n_mels=40", "features.sample_rate=8000",
                                "model.hidden=32", "model.layers=1", "epochs=2",
                                "progress=false"])
    summary = Trainer(config, tmp_path / "exp").fit()
    assert summary["skipped"] >= 2 * len(broken)
    weights = load_file(str(tmp_path / "exp" / "last" / "model.safetensors"))
    assert all(torch.isfinite(v).all() for v in weights.values())
