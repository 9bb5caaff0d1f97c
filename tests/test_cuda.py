"""GPU paths (skipped without CUDA): features and models on the device, AMP training."""

from __future__ import annotations

import pytest
import torch

from speechrnn import audio
from speechrnn.features import Fbank, FeatureConfig
from speechrnn.models import ModelConfig, build_model

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_features_on_gpu_equal_cpu(data_dir):
    path = sorted((data_dir / "yesno" / "waves_yesno").glob("*.wav"))[0]
    waves = [audio.load(path), audio.load(path)[:20000]]
    lengths = torch.tensor([len(w) for w in waves])
    batch = torch.nn.utils.rnn.pad_sequence(waves, batch_first=True)
    for mode in ("default", "kaldi"):
        extractor = Fbank(FeatureConfig(mode=mode))
        cpu, cpu_frames = extractor(batch, lengths)
        gpu, gpu_frames = extractor.cuda()(batch.cuda(), lengths)
        assert torch.equal(cpu_frames, gpu_frames)
        assert torch.allclose(cpu, gpu.cpu(), atol=1e-3)


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_padding_invariance_on_gpu(cell):
    torch.manual_seed(0)
    model = build_model(ModelConfig(input_dim=40, vocab_size=12, hidden=32, layers=2,
                                    cell=cell)).cuda().eval()
    lengths = torch.tensor([80, 33])
    utterances = [torch.randn(int(n), 40, device="cuda") for n in lengths]
    padded = torch.nn.utils.rnn.pad_sequence(utterances, batch_first=True)
    with torch.no_grad():
        out, out_lengths = model(padded, lengths)
        for i, features in enumerate(utterances):
            alone, _ = model(features[None], lengths[i : i + 1])
            assert float((out[i, : out_lengths[i]] - alone[0]).abs().max()) < 1e-4


@pytest.mark.parametrize(("amp", "inter_ctc_layers"),
                         [("bf16", "[]"), ("fp16", "[]"), ("bf16", "[1]")])
def test_yesno_trains_on_gpu_with_amp(data_dir, tmp_path, amp, inter_ctc_layers):
    from speechrnn.data.prepare import prepare_corpus
    from speechrnn.training import load_config
    from speechrnn.training.trainer import Trainer

    prepare_corpus("yesno", data_dir / "yesno", tmp_path / "data")
    config = load_config(None, [
        f"data.train={tmp_path / 'data' / 'train.jsonl'}",
        f"data.dev={tmp_path / 'data' / 'dev.jsonl'}", "data.max_frames=4000",
        "data.num_workers=2", "features.n_mels=40", "features.sample_rate=8000",
        "model.hidden=64", "model.layers=2", "model.dropout=0.2", "optim.lr=0.005",
        "optim.warmup_steps=5", "progress=false", "epochs=30", "device=cuda", f"amp={amp}",
        f"inter_ctc_layers={inter_ctc_layers}"])
    summary = Trainer(config, tmp_path / "exp").fit()
    assert min(h["wer"] for h in summary["history"]) <= 0.05  # ≤ 2 of the 40 dev words
