"""The speechrnn command on real audio: outputs parse, times are sane, bad input is reported."""

from __future__ import annotations

import dataclasses
import json
import pickle
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors.torch import load_file

from speechrnn import audio
from speechrnn.cli import EXIT_INPUT, main
from speechrnn.data.manifest import read_manifest
from speechrnn.models.checkpoint import write_tensors
from speechrnn.pretrained import resolve_model
from speechrnn.transcriber import Transcriber, split_at_pauses


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "speechrnn.cli", *args], capture_output=True,
                          text=True, timeout=600)


@pytest.fixture(scope="module")
def an4_files(data_dir):
    return sorted((data_dir / "an4_mini" / "test").glob("*.wav"))[:3]


def _check_words(words, duration):
    starts = [w["start"] for w in words]
    assert starts == sorted(starts)
    for word in words:
        assert 0.0 <= word["start"] < word["end"] <= duration + 1e-6
        assert 0.0 < word["confidence"] <= 1.0


def test_transcribe_json_text_and_srt(an4_files, so762_wavs, tmp_path, capsys):
    files = [*map(str, an4_files), str(so762_wavs[0])]
    assert main(["transcribe", *files, "--format", "json"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == len(files)
    for line, path in zip(lines, files, strict=True):
        item = json.loads(line)
        assert item["file"] == path
        assert item["duration"] == pytest.approx(audio.duration(path), abs=0.01)
        _check_words(item["words"], item["duration"])
        assert item["text"] == " ".join(w["word"] for w in item["words"])
    assert main(["transcribe", str(so762_wavs[0]), "--format", "srt", "--output",
                 str(tmp_path)]) == 0
    srt = (tmp_path / f"{so762_wavs[0].stem}.srt").read_text()
    times = re.findall(r"(\d\d):(\d\d):(\d\d),(\d\d\d) --> (\d\d):(\d\d):(\d\d),(\d\d\d)", srt)
    assert times and srt.startswith("1\n")
    assert main(["transcribe", str(so762_wavs[0]), "--lm", "none", "--beam", "1"]) == 0
    assert capsys.readouterr().out.strip()


def test_three_minute_recording_has_sane_times(so762_wavs, data_dir, tmp_path):
    lines = (data_dir / "speechocean762" / "test" / "wav.scp").read_text().splitlines()
    pieces, total = [], 0.0
    for line in lines:
        waveform = audio.load(data_dir / "speechocean762" / line.split()[1]).numpy()
        pieces += [waveform, np.zeros(8000, np.float32)]
        total += len(waveform) / 16000 + 0.5
        if total >= 180:
            break
    long_file = tmp_path / "long.flac"
    sf.write(long_file, np.concatenate(pieces), 16000)
    result = Transcriber(lm="default")(long_file)
    assert result.duration >= 180
    words = [w.__dict__ | {"word": w.text} for w in result.words]
    _check_words(words, result.duration)
    assert len(result.words) > 100  # ~60 utterances of 3-8 words
    assert result.words[-1].end > 150  # words reach the end of the file, not just a window
    waveform = audio.load(long_file)
    segments = split_at_pauses(waveform, 16000, 20.0)
    assert segments[0][0] == 0 and segments[-1][1] == int(result.duration * 16000)
    assert all(0 < e - s <= 20 * 16000 for s, e in segments)
    # in order, apart, and what lies between two segments is silence (no sound above -50 dB)
    assert all(e <= s2 for (_, e), (s2, _) in zip(segments, segments[1:], strict=False))
    assert all(float(waveform[e:s2].square().max()) < 1e-5
               for (_, e), (s2, _) in zip(segments, segments[1:], strict=False) if s2 > e)


def test_array_input_any_rate_and_channels(so762_wavs):
    transcriber = Transcriber(lm=None, beam=1)
    waveform, rate = audio.read(so762_wavs[0])
    expected = transcriber(so762_wavs[0]).text
    stereo = np.stack([waveform.numpy(), waveform.numpy()])
    assert transcriber(stereo, sample_rate=rate).text == expected
    upsampled = audio.resample(waveform, rate, 48000).numpy()
    result = transcriber(upsampled, sample_rate=48000)
    assert result.duration == pytest.approx(waveform.numel() / rate, abs=0.01)
    assert len(result.text.split()) == pytest.approx(len(expected.split()), abs=1)


def test_batch_continues_after_a_bad_file(an4_files, tmp_path):
    broken = tmp_path / "broken.wav"
    broken.write_text("not audio")
    result = run("transcribe", str(an4_files[0]), str(broken), str(tmp_path / "missing.wav"),
                 "--lm", "none", "--beam", "1")
    assert result.returncode == 1
    assert f"{broken}: not a readable audio file" in result.stderr
    assert "missing.wav: no such file" in result.stderr
    assert "2 of 3 file(s) failed" in result.stderr
    assert str(an4_files[0]) in result.stdout
    assert "Traceback" not in result.stderr


def test_pickled_model_is_refused_and_never_run(tmp_path, an4_files):
    marker = tmp_path / "marker"
    evil = tmp_path / "model.pt"
    evil.write_bytes(b"\x80\x04cbuiltins\nopen\n" + pickle.dumps((str(marker), "w"))[2:-1]
                     + b"R.")
    result = run("transcribe", str(an4_files[0]), "--model", str(evil))
    assert result.returncode == 2
    assert "pickle files" in result.stderr and "Traceback" not in result.stderr
    assert not marker.exists()


def test_evaluate_writes_hyps_report_and_summary(prepared, tmp_path):
    out = tmp_path / "eval"
    # No --lm: like transcribe, the bundled model decodes with its own LM and tuned weights.
    result = run("evaluate", "--manifest", str(prepared["an4-mini"] / "test.jsonl"),
                 "--out", str(out))
    assert result.returncode == 0, result.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["utterances"] == 10 and 0.0 <= summary["wer"] <= 2.0
    assert summary["rtf"] > 0 and summary["decoder"]["decoder"] == "BeamSearchDecoder"
    decoding = json.loads((resolve_model(None) / "config.json").read_text())["decoding"]
    assert summary["decoder"]["lm"].endswith("lm.arpa.gz")
    assert (summary["decoder"]["alpha"], summary["decoder"]["beta"],
            summary["decoder"]["blank_penalty"]) == (
        decoding["alpha"], decoding["beta"], decoding["blank_penalty"])
    hyps = [json.loads(x) for x in (out / "hyp.jsonl").read_text().splitlines()]
    assert len(hyps) == 10 and (out / "hyp.trn").exists() and (out / "report.txt").exists()
    scored = run("score", "--ref", str(out / "ref.trn"), "--hyp", str(out / "hyp.trn"),
                 "--json")
    assert json.loads(scored.stdout)["wer"] == pytest.approx(summary["wer"])


def test_an_ensemble_averages_its_members_posteriors(prepared, yesno_model, tmp_path):
    model_dir, _ = yesno_model
    other = tmp_path / "other"
    shutil.copytree(model_dir, other)
    generator = torch.Generator().manual_seed(0)
    weights = load_file(str(other / "model.safetensors"))
    write_tensors({name: value + 0.05 * torch.randn(value.shape, generator=generator)
                   for name, value in weights.items()}, other / "model.safetensors")
    manifest = prepared["yesno"] / "test.jsonl"
    waves = [audio.load(e.audio, 8000) for e in read_manifest(manifest)[:4]]
    (first, lengths), (second, _) = [Transcriber(m, lm=None, beam=1).log_probs(waves)
                                     for m in (model_dir, other)]
    ensemble = Transcriber([model_dir, other], lm=None, beam=1)
    averaged, averaged_lengths = ensemble.log_probs(waves)
    assert torch.equal(averaged_lengths, lengths)
    assert not torch.allclose(first, second, atol=1e-2)  # the members differ
    assert torch.allclose(averaged, ((first.exp() + second.exp()) / 2).log(), atol=1e-5)
    with pytest.raises(ValueError, match="ensemble"):
        ensemble.stream()
    result = run("evaluate", "--model", str(model_dir), "--model", str(other), "--lm", "none",
                 "--beam", "1", "--manifest", str(manifest), "--out", str(tmp_path / "eval"))
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert summary["decoder"]["model"] == [str(model_dir), str(other)]
    # Members must share the output symbols: a reordered alphabet is refused, by name.
    shuffled = tmp_path / "shuffled"
    shutil.copytree(model_dir, shuffled)
    tokenizer = json.loads((shuffled / "tokenizer.json").read_text())
    tokenizer["symbols"] = tokenizer["symbols"][:2] + tokenizer["symbols"][:1:-1]
    (shuffled / "tokenizer.json").write_text(json.dumps(tokenizer))
    result = run("evaluate", "--model", str(model_dir), "--model", str(shuffled),
                 "--manifest", str(manifest), "--out", str(tmp_path / "refused"))
    assert result.returncode != 0 and len(result.stderr.strip().splitlines()) == 1
    assert "shuffled" in result.stderr and "tokenizer" in result.stderr


def test_evaluate_with_a_lexicon_outputs_only_its_words(prepared, tmp_path):
    manifest = prepared["an4-mini"] / "test.jsonl"
    words = sorted({w for line in manifest.read_text().splitlines()
                    for w in json.loads(line)["text"].split()})
    # A pronunciation lexicon: the word is the first field; comments and blanks are skipped.
    lexicon = tmp_path / "lexicon.txt"
    lexicon.write_text("# an4 test words\n\n" + "".join(f"{w} x y z\n" for w in words))
    outputs = {}
    for name, extra in (("free", []), ("closed", ["--lexicon", str(lexicon)])):
        result = run("evaluate", "--manifest", str(manifest), "--out", str(tmp_path / name),
                     "--lm", "none", "--beam", "8", *extra)
        assert result.returncode == 0, result.stderr
        outputs[name] = [w for line in (tmp_path / name / "hyp.jsonl").read_text().splitlines()
                         for w in json.loads(line)["text"].split()]
    assert set(outputs["free"]) - set(words)  # the bundled model alone spells other words
    # Its tuned word bonus belongs to its LM: a beam search without one gets none.
    free = json.loads((tmp_path / "free" / "summary.json").read_text())["decoder"]
    assert free["lm"] == "none" and free["beta"] == free["blank_penalty"] == 0.0
    assert outputs["closed"] and set(outputs["closed"]) <= set(words)
    summary = json.loads((tmp_path / "closed" / "summary.json").read_text())
    assert summary["decoder"]["lexicon_words"] == len(words)
    missing = run("evaluate", "--manifest", str(manifest), "--out", str(tmp_path / "x"),
                  "--lexicon", str(tmp_path / "none.txt"))
    assert missing.returncode == 2 and "none.txt" in missing.stderr


def test_score_compare_reports_paired_significance(tmp_path):
    from speechrnn.scoring import compare, write_trn

    refs = {f"u{i:02d}": "one two three four" for i in range(30)}
    worse = {u: "one too three" if i % 2 else "one two three four" for i, u in enumerate(refs)}
    better = {u: "one two three" if i % 5 == 0 else t for i, (u, t) in enumerate(refs.items())}
    for name, texts in (("ref", refs), ("a", worse), ("b", better)):
        write_trn(tmp_path / f"{name}.trn", texts)
    result = run("score", "--ref", str(tmp_path / "ref.trn"), "--hyp", str(tmp_path / "a.trn"),
                 "--compare", str(tmp_path / "b.trn"), "--json")
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    expected = compare(refs, worse, better)
    assert (printed["wer_a"], printed["wer_b"]) == pytest.approx((30 / 120, 6 / 120))
    assert printed == pytest.approx(dataclasses.asdict(expected))
    # B drops "four" in utterances 0, 5, ...: worse than A on the even ones of them.
    assert (printed["a_better"], printed["b_better"]) == (3, 15)
    assert printed["sign_p"] == pytest.approx(2 * (1 + 18 + 153 + 816) / 2 ** 18)
    assert printed["bootstrap_p"] < 0.01


def test_unwritable_output_is_refused_before_work(tmp_path, prepared):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = run("evaluate", "--manifest", str(prepared["an4-mini"] / "test.jsonl"),
                 "--out", str(blocker / "sub"))
    assert result.returncode == 2 and "cannot write to output directory" in result.stderr
    result = run("prepare", "yesno", str(tmp_path / "nowhere"), str(tmp_path / "out"))
    assert result.returncode == 2 and "no yesno .wav files" in result.stderr


def test_bad_manifest_and_config_give_one_line_errors(tmp_path):
    manifest = tmp_path / "bad.jsonl"
    manifest.write_text('{"id": "a", "audio": "a.wav", "duration": -3, "text": "x"}\n')
    result = run("train", "--outdir", str(tmp_path / "exp"), "--set",
                 f"data.train={manifest}")
    assert result.returncode == 2
    assert f"{manifest}:1: implausible duration" in result.stderr
    result = run("train", "--outdir", str(tmp_path / "exp"), "--set", "model.colour=blue")
    assert result.returncode == 2 and "unknown config key 'model.colour'" in result.stderr
    result = run("train", "--outdir", str(tmp_path / "exp"), "--set", "early_stop=null")
    assert result.returncode == 2 and "early_stop: expected int, got null" in result.stderr
    assert "Traceback" not in result.stderr
    # A misspelt choice is refused before any audio is read; "bfloat16" used to run as fp16
    # without loss scaling, "gpu" on the CPU.
    for option, expected in (("amp=bfloat16", "amp must be one of none | bf16 | fp16, not "
                              "'bfloat16'"),
                             ("device=gpu", "device must be one of auto | cpu | cuda"),
                             ("optim.name=adam", "optim.name must be one of adamw | sgd"),
                             ("augment.specaugment_fill=noise", "augment.specaugment_fill must")):
        result = run("train", "--outdir", str(tmp_path / "exp"), "--set", f"data.train={manifest}",
                     "--set", option)
        assert result.returncode == 2 and expected in result.stderr, result.stderr
        assert "Traceback" not in result.stderr


def test_cmvn_command_writes_global_statistics_or_the_utterance_mode(prepared, tmp_path):
    from speechrnn.data.manifest import read_manifest
    from speechrnn.features import FeatureConfig, build_features

    manifest = prepared["an4-mini"] / "train.jsonl"
    out = tmp_path / "cmvn.json"
    assert main(["cmvn", str(manifest), str(out), "--set", "features.n_mels=40"]) == 0
    stats = json.loads(out.read_text())
    extractor = build_features(FeatureConfig(n_mels=40))
    frames = np.concatenate([extractor(audio.load(e.audio))[0].double().numpy()
                             for e in read_manifest(manifest)])
    assert stats["count"] == len(frames)
    np.testing.assert_allclose(stats["mean"], frames.mean(0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(stats["std"], frames.std(0), rtol=1e-4, atol=1e-5)
    # A config with per-utterance normalisation has no statistics: the file records the mode.
    assert main(["cmvn", str(manifest), str(out), "--set", "cmvn=utterance"]) == 0
    assert json.loads(out.read_text()) == {"mode": "utterance"}


def test_threads_option_sets_pytorch_threads(capsys):
    import torch

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert main(["--threads", "1", "models"]) == 0
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    result = run("--threads", "0", "models")
    assert result.returncode == 2 and "--threads: must be at least 1" in result.stderr


def test_out_of_range_numbers_are_refused_by_name(capsys):
    """--beam 0 decoded every file to an empty line, --beam -5 and --order 0 ended in a
    traceback, --chunk 0 fed the audio one sample at a time, --prune -1 pruned nothing: usage
    errors now, before any work."""
    for args, message in ((["transcribe", "a.wav", "--beam", "0"], "--beam: must be at least 1"),
                          (["evaluate", "--manifest", "m.jsonl", "--out", "o", "--beam", "-5"],
                           "--beam: must be at least 1 and at most 1024, got -5"),
                          (["transcribe", "a.wav", "--stream", "--chunk", "0"],
                           "--chunk: must be above 0"),
                          (["lm", "build", "t.txt", "lm.arpa", "--order", "0"],
                           "--order: must be at least 1"),
                          (["cmvn", "m.jsonl", "c.json", "--max-utterances", "0"],
                           "--max-utterances: must be at least 1"),
                          (["lm", "build", "t.txt", "lm.arpa", "--prune", "0", "-1"],
                           "--prune: must be at least 0, got -1")):
        with pytest.raises(SystemExit) as exit_info:
            main(args)
        assert exit_info.value.code == 2 and message in capsys.readouterr().err
    # one count per order at most (extra ones were silently ignored), said before reading text
    assert main(["lm", "build", "missing.txt", "lm.arpa", "--order", "2",
                 "--prune", "0", "1", "1"]) == EXIT_INPUT
    assert "--prune: 3 prune counts for a 2-gram LM" in capsys.readouterr().err


def test_lm_build_and_models(tmp_path, data_dir):
    arpa = tmp_path / "lm.arpa.gz"
    result = run("lm", "build", str(data_dir / "speechocean762" / "train" / "text"), str(arpa),
                 "--kaldi-text", "--order", "2")
    assert result.returncode == 0 and arpa.exists() and "2-grams" in result.stdout
    extra = tmp_path / "extra.txt"
    extra.write_text("Zyxwv one two\n")
    pooled = tmp_path / "pooled.arpa"
    result = run("lm", "build", str(data_dir / "speechocean762" / "train" / "text"), str(extra),
                 str(pooled), "--order", "2")
    words = {line.split("\t")[1] for line in pooled.read_text().splitlines()
             if line.count("\t") >= 1 and " " not in line.split("\t")[1]}
    assert result.returncode == 0 and {"zyxwv", "bear"} <= words  # from both inputs
    listing = run("models")
    assert "en-so762-blstm (default)" in listing.stdout
