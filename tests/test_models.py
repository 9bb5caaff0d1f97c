"""Acoustic model: every architecture is padding-invariant and derives its own lengths."""

from __future__ import annotations

import itertools

import pytest
import torch

from speechrnn.models import ModelConfig, build_model, preset

ARCHITECTURES = [
    dict(cell=cell, bidirectional=bidi)
    for cell, bidi in itertools.product(["rnn", "gru", "lstm"], [False, True])
] + [
    dict(subsampling="conv2d", cell="gru"),
    dict(subsampling="none", cell="lstm", bidirectional=False, lookahead=4),
    dict(subsampling="stack", stack=2, layer_norm=False),
]


@pytest.mark.parametrize("overrides", ARCHITECTURES, ids=str)
def test_padding_does_not_change_outputs(overrides):
    torch.manual_seed(0)
    model = build_model(ModelConfig(input_dim=40, vocab_size=12, hidden=32, layers=2,
                                    **overrides)).eval()
    lengths = torch.tensor([97, 64, 23, 5])
    utterances = [torch.randn(int(n), 40) for n in lengths]
    padded = torch.nn.utils.rnn.pad_sequence(utterances, batch_first=True, padding_value=3.0)
    with torch.no_grad():
        batch_out, batch_lengths = model(padded, lengths)
        for i, features in enumerate(utterances):
            alone, alone_length = model(features[None], lengths[i : i + 1])
            assert int(alone_length[0]) == int(batch_lengths[i])
            assert alone.shape[1] == int(alone_length[0])
            difference = (batch_out[i, : batch_lengths[i]] - alone[0]).abs().max()
            assert float(difference) <= 1e-5
    assert torch.allclose(batch_out.exp().sum(-1), torch.ones(batch_out.shape[:2]), atol=1e-4)


def test_output_lengths_come_from_the_modules():
    conv = build_model(ModelConfig(subsampling="conv2d", conv_strides=[[3, 2], [1, 2]]))
    assert conv.subsampling_factor == 3
    features = torch.randn(1, 100, 80)
    out, lengths = conv(features, torch.tensor([100]))
    assert out.shape[1] == int(lengths[0]) == int(conv.output_lengths(torch.tensor([100]))[0])
    stack = build_model(ModelConfig(subsampling="stack", stack=3))
    assert stack.output_lengths(torch.tensor([100])).tolist() == [34]


def test_intermediate_outputs_are_the_truncated_stack_through_the_output_layer():
    torch.manual_seed(0)
    deep = build_model(ModelConfig(input_dim=40, vocab_size=12, hidden=32, layers=3)).eval()
    shallow = build_model(ModelConfig(input_dim=40, vocab_size=12, hidden=32, layers=1)).eval()
    state = {k: v for k, v in deep.state_dict().items() if not k.startswith(("rnns.", "norms."))
             or k.startswith(("rnns.0.", "norms.0."))}
    shallow.load_state_dict(state)
    features, lengths = torch.randn(2, 60, 40), torch.tensor([60, 41])
    with torch.no_grad():
        final, out_lengths, (first, third) = deep(features, lengths, intermediate_layers=(1, 3))
        expected_first, _ = shallow(features, lengths)
        plain, _ = deep(features, lengths)
    torch.testing.assert_close(third, final)
    torch.testing.assert_close(final, plain)
    for i, n in enumerate(out_lengths.tolist()):  # padded frames are arbitrary
        torch.testing.assert_close(first[i, :n], expected_first[i, :n])
    assert not torch.allclose(first, final)


def test_presets_name_their_parameter_count():
    eesen = build_model(preset("eesen", input_dim=80, vocab_size=29))
    ds2 = build_model(preset("ds2", input_dim=80, vocab_size=29))
    assert eesen.num_parameters() == 8_845_469  # the number in the preset's comment
    assert ds2.num_parameters() == 9_511_229
    assert isinstance(eesen.rnns[0].backward_rnn, torch.nn.LSTM) and len(eesen.rnns) == 4
    assert isinstance(ds2.rnns[0].forward_rnn, torch.nn.GRU) and len(ds2.rnns) == 5
    with pytest.raises(ValueError, match="cell must be one of"):
        build_model(ModelConfig(cell="transformer"))


def test_frozen_format_version_1_checkpoint_still_loads_and_gives_the_same_outputs():
    """tests/data/frozen_v1 was written by speechrnn 0.1.0; never regenerate it."""
    import json
    from pathlib import Path

    from speechrnn.models.checkpoint import load_checkpoint

    folder = Path(__file__).parent / "data" / "frozen_v1"
    checkpoint = load_checkpoint(folder)
    assert checkpoint.config["format_version"] == 1
    generator = torch.Generator().manual_seed(1)
    waveform = torch.sin(torch.arange(4000) * 0.05) * 0.3 + 0.01 * torch.randn(
        4000, generator=generator)
    with torch.no_grad():
        features, frames = checkpoint.features(waveform)
        log_probs, _ = checkpoint.model(features[None], frames[None])
    expected = torch.tensor(json.loads((folder / "expected.json").read_text())["log_probs"])
    assert torch.allclose(log_probs[0], expected, atol=1e-5)
    assert checkpoint.tokenizer.decode([2, 1, 3]) == "a b"


def test_utterance_cmvn_keeps_padding_invariance_and_round_trips(tmp_path):
    from speechrnn.features import FeatureConfig, UtteranceCMVN
    from speechrnn.models.checkpoint import load_checkpoint, save_model
    from speechrnn.text import CharTokenizer

    torch.manual_seed(0)
    model = build_model(ModelConfig(input_dim=20, vocab_size=5, hidden=16, layers=1)).eval()
    model.cmvn = UtteranceCMVN()
    lengths = torch.tensor([50, 21])
    utterances = [5 + 3 * torch.randn(int(n), 20) for n in lengths]
    padded = torch.nn.utils.rnn.pad_sequence(utterances, batch_first=True)
    with torch.no_grad():
        out, out_lengths = model(padded, lengths)
        alone, _ = model(utterances[1][None], lengths[1:])
    assert torch.allclose(out[1, : out_lengths[1]], alone[0], atol=1e-5)
    save_model(tmp_path, model, FeatureConfig(n_mels=20), CharTokenizer.build(["abc"]),
               model.cmvn)
    restored = load_checkpoint(tmp_path).model
    assert isinstance(restored.cmvn, UtteranceCMVN)
    with torch.no_grad():
        assert torch.allclose(restored(padded, lengths)[0], out, atol=1e-6)
