"""Deployment: ONNX / TorchScript exports match PyTorch on real speech, and streaming a
unidirectional model chunk by chunk gives exactly the offline result."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from speechrnn import audio
from speechrnn.cli import main
from speechrnn.data import read_manifest
from speechrnn.decoding import greedy_ids
from speechrnn.export import export_checkpoint, load_exported
from speechrnn.models.acoustic import AcousticModel, ModelConfig
from speechrnn.models.checkpoint import load_checkpoint
from speechrnn.transcriber import Transcriber

from .test_training import yesno_config


def _yesno_batch(prepared, checkpoint, count: int = 6):
    """Real features of yesno test utterances, as one padded batch."""
    entries = read_manifest(prepared["yesno"] / "test.jsonl")[:count]
    rate = checkpoint.features.config.sample_rate
    waves = [audio.load(e.audio, rate) for e in entries]
    lengths = torch.tensor([len(w) for w in waves])
    padded = torch.nn.utils.rnn.pad_sequence(waves, batch_first=True)
    with torch.no_grad():
        features, frames = checkpoint.features(padded, lengths)
    return features, frames.long(), [e.text for e in entries]


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_export_matches_pytorch_on_real_speech(prepared, yesno_model, tmp_path, fmt):
    pytest.importorskip("onnxruntime")
    model_dir, _ = yesno_model
    checkpoint = load_checkpoint(model_dir)
    path, _ = export_checkpoint(model_dir, tmp_path, fmt)
    features, frames, _ = _yesno_batch(prepared, checkpoint)
    with torch.no_grad():
        expected, expected_lengths = checkpoint.model(features, frames)
    log_probs, lengths = load_exported(path)(features, frames)
    assert lengths.tolist() == expected_lengths.tolist()
    for i, length in enumerate(lengths.tolist()):
        assert np.abs(log_probs[i, :length] - expected[i, :length].numpy()).max() < 1e-4
    for name in ("config.json", "tokenizer.json", "cmvn.json"):
        assert (tmp_path / name).exists()


def test_int8_export_keeps_the_transcripts(prepared, yesno_model, tmp_path):
    pytest.importorskip("onnxruntime")
    model_dir, _ = yesno_model
    checkpoint = load_checkpoint(model_dir)
    assert main(["export", str(tmp_path), "--model", str(model_dir), "--quantize", "int8"]) == 0
    quantized = tmp_path / "model.int8.onnx"
    assert quantized.stat().st_size < 0.5 * (tmp_path / "model.onnx").stat().st_size
    features, frames, texts = _yesno_batch(prepared, checkpoint, count=10)
    log_probs, lengths = load_exported(quantized)(features, frames)
    hypotheses = [checkpoint.tokenizer.decode(ids) for ids in
                  greedy_ids(torch.from_numpy(log_probs), torch.from_numpy(lengths))]
    assert hypotheses == texts


def test_export_refuses_unsupported_combinations(yesno_model, tmp_path, capsys):
    model_dir, _ = yesno_model
    assert main(["export", str(tmp_path), "--model", str(model_dir), "--format",
                 "torchscript", "--quantize", "int8"]) == 2
    assert "int8 export is available for ONNX" in capsys.readouterr().err


def _unidirectional(lookahead: int, stack: int) -> AcousticModel:
    torch.manual_seed(lookahead + stack)
    config = ModelConfig(input_dim=40, vocab_size=5, subsampling="stack" if stack > 1 else "none",
                         stack=stack, cell="lstm", bidirectional=False, hidden=32, layers=2,
                         lookahead=lookahead)
    return AcousticModel(config).eval()


@pytest.mark.parametrize("lookahead,stack", [(0, 1), (3, 3), (2, 2)])
def test_streamed_chunks_equal_the_whole_utterance(prepared, lookahead, stack):
    from speechrnn.features import Fbank, FeatureConfig, GlobalCMVN

    entry = read_manifest(prepared["an4-mini"] / "test.jsonl")[0]
    wave = audio.load(entry.audio, 16000)
    extractor = Fbank(FeatureConfig(n_mels=40))
    features, _ = extractor(wave[None], torch.tensor([len(wave)]))
    model = _unidirectional(lookahead, stack)
    model.cmvn = GlobalCMVN(features[0].mean(0), features[0].std(0))
    with torch.no_grad():
        offline, _ = model(features, torch.tensor([features.shape[1]]))
        generator = torch.Generator().manual_seed(0)
        pieces, state, start = [], None, 0
        while start < features.shape[1]:
            size = int(torch.randint(0, 23, (1,), generator=generator))
            end = min(start + size, features.shape[1])
            piece, state = model.stream(features[:, start:end], state,
                                        final=end == features.shape[1])
            pieces.append(piece)
            start = end
    streamed = torch.cat(pieces, dim=1)
    assert streamed.shape == offline.shape
    assert (streamed - offline).abs().max() < 1e-5


@pytest.fixture(scope="module")
def unidirectional_yesno(prepared, tmp_path_factory):
    """A unidirectional LSTM with a 2-frame look-ahead, trained briefly on yesno."""
    from speechrnn.training.trainer import Trainer

    outdir = tmp_path_factory.mktemp("uni-yesno")
    config = yesno_config(prepared, "model.bidirectional=false", "model.lookahead=2",
                          "max_steps=150", "epochs=30", "optim.lr=0.01")
    Trainer(config, outdir).fit()
    return outdir / "last"


def test_transcriber_streaming_equals_offline(prepared, unidirectional_yesno, tmp_path):
    entries = read_manifest(prepared["yesno"] / "test.jsonl")[:4]
    transcriber = Transcriber(unidirectional_yesno, lm="none", beam=4)
    for entry in entries:
        wave = audio.load(entry.audio, transcriber.sample_rate)
        expected = transcriber.transcribe_waveform(wave)
        partials = []
        streamed = transcriber.transcribe_streaming(wave, 0.37, partials.append)
        assert expected.text.strip(), "the model should say something"
        assert streamed.text == expected.text
        assert [(w.text, round(w.start, 3), round(w.end, 3)) for w in streamed.words] == \
            [(w.text, round(w.start, 3), round(w.end, 3)) for w in expected.words]
        assert len(partials) > 3 and partials[-1].split()[:1] == expected.text.split()[:1]


def test_cli_stream_output_equals_offline(prepared, unidirectional_yesno, capsys):
    path = read_manifest(prepared["yesno"] / "test.jsonl")[0].audio
    common = ["transcribe", path, "--model", str(unidirectional_yesno), "--lm", "none",
              "--format", "json"]
    assert main(common) == 0
    offline = json.loads(capsys.readouterr().out)
    assert main([*common, "--stream", "--chunk", "0.25"]) == 0
    assert json.loads(capsys.readouterr().out) == offline


def test_stream_refuses_a_bidirectional_model(yesno_model, prepared, capsys):
    model_dir, _ = yesno_model
    path = read_manifest(prepared["yesno"] / "test.jsonl")[0].audio
    assert main(["transcribe", path, "--model", str(model_dir), "--stream"]) == 2
    assert "unidirectional" in capsys.readouterr().err


def test_package_model_bundles_fp16_weights_lm_and_decoding_defaults(prepared, yesno_model,
                                                                     tmp_path):
    """speechrnn package: the packaged folder loads, its weights are float16 and give
    the same transcripts, and Transcriber picks up its LM, alpha/beta and blank penalty by
    default (the tuned beta and blank penalty only with the LM they were tuned with)."""
    import subprocess
    import sys
    from pathlib import Path

    from safetensors import safe_open

    model_dir, _ = yesno_model
    arpa = tmp_path / "lm.arpa.gz"
    assert main(["lm", "build", str(prepared["yesno"] / "train.jsonl"), str(arpa),
                 "--order", "2"]) == 0
    out = tmp_path / "packaged"
    result = subprocess.run(
        [sys.executable, "-m", "speechrnn.cli", "package", str(model_dir), "--output",
         str(out), "--lm", str(arpa),
         "--alpha", "0.7", "--beta", "1.3", "--beam", "4", "--blank-penalty", "0.2",
         "--tuned-on", "yesno dev",
         "--description", "test", "--metric", "test_wer=0.01"],
        capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    with safe_open(str(out / "model.safetensors"), "pt") as weights:
        assert {weights.get_tensor(k).dtype for k in weights.keys()} == {torch.float16}
    config = json.loads((out / "config.json").read_text())
    assert config["decoding"]["alpha"] == 0.7 and config["metrics"]["test_wer"] == 0.01
    packaged = Transcriber(model=out)
    original = Transcriber(model=model_dir, lm=arpa, alpha=0.7, beta=1.3, beam=4,
                           blank_penalty=0.2)
    assert packaged.settings()["alpha"] == 0.7 and packaged.settings()["beta"] == 1.3
    assert packaged.settings()["blank_penalty"] == 0.2
    without_lm = Transcriber(model=out, lm="none").settings()
    assert without_lm["beta"] == 0.0 and without_lm["blank_penalty"] == 0.0
    assert Transcriber(model=out, lm="none", blank_penalty=0.5).settings()["blank_penalty"] == 0.5
    assert packaged.settings()["beam"] == 4  # the packaged beam is the default too
    assert Path(packaged.settings()["lm"]).name == "lm.arpa.gz"
    for entry in read_manifest(prepared["yesno"] / "test.jsonl")[:5]:
        assert packaged(entry.audio).text == original(entry.audio).text
