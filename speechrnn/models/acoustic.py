"""The recurrent CTC acoustic model: front-end → recurrent stack → lookahead → linear.

Padding never changes an utterance's output: inputs are masked, every front-end layer
re-masks its output, and backward recurrent directions run over each sequence reversed within
its own length. Output lengths come from the front-end modules' own strides and kernels (see
``output_lengths``). Unidirectional models can also run chunk by chunk (``stream_chunk``)
with the same result as on the whole utterance.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from speechrnn.features import GlobalCMVN

CELLS = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}


@dataclass
class ModelConfig:
    """Architecture; ``input_dim`` and ``vocab_size`` are filled in from features/tokenizer."""

    input_dim: int = 80
    vocab_size: int = 29
    subsampling: str = "stack"  # none | stack (EESEN-style) | conv2d (DeepSpeech2-style)
    stack: int = 3  # frames stacked (and the subsampling factor) for "stack"
    conv_channels: list[int] = field(default_factory=lambda: [32, 32])
    conv_kernels: list[list[int]] = field(default_factory=lambda: [[11, 41], [11, 21]])
    conv_strides: list[list[int]] = field(default_factory=lambda: [[2, 2], [1, 2]])
    cell: str = "lstm"  # rnn | gru | lstm
    bidirectional: bool = True
    hidden: int = 256
    layers: int = 3
    dropout: float = 0.1
    layer_norm: bool = True
    lookahead: int = 0  # future frames seen by a unidirectional model (DS2 lookahead conv)


def _mask(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Zero the frames of (B, T, ...) past each length."""
    steps = torch.arange(x.shape[1], device=x.device)
    keep = steps[None, :] < lengths.to(x.device)[:, None]
    return x * keep.view(*keep.shape, *([1] * (x.dim() - 2))).to(x.dtype)


class FrameStacking(nn.Module):
    """Concatenate ``factor`` consecutive frames and keep one in ``factor``: (B, T, F) →
    (B, ⌈T/factor⌉, F·factor). The last group is zero-padded, as a lone utterance would be."""

    def __init__(self, input_dim: int, factor: int):
        super().__init__()
        self.factor = factor
        self.output_dim = input_dim * factor

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        return torch.div(lengths + self.factor - 1, self.factor, rounding_mode="floor")

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        batch, frames, dim = x.shape
        # Pad by factor-1 and cut, with no branch on the length: an exported (traced) graph
        # then works for every input length.
        groups = (frames + self.factor - 1) // self.factor
        x = nn.functional.pad(x, (0, 0, 0, self.factor - 1))[:, : groups * self.factor]
        stacked = x.reshape(batch, groups, dim * self.factor)
        return stacked, self.output_lengths(lengths)

    def stream(self, x: torch.Tensor, pending: torch.Tensor | None, final: bool
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """(1, T, F) new frames → (stacked groups they complete, frames held for the next
        group); ``final`` zero-pads the last group as :meth:`forward` does."""
        if pending is not None:
            x = torch.cat([pending, x], dim=1)
        if final:
            x = nn.functional.pad(x, (0, 0, 0, (-x.shape[1]) % self.factor))
        usable = x.shape[1] - x.shape[1] % self.factor
        stacked = x[:, :usable].reshape(1, usable // self.factor, x.shape[2] * self.factor)
        return stacked, x[:, usable:]


class Conv2dSubsampling(nn.Module):
    """DeepSpeech2-style 2-D convolutions over (time, frequency) with strides, hardtanh
    activations, and masking after every layer so padding cannot leak into real frames."""

    def __init__(self, input_dim: int, channels: list[int], kernels: list[list[int]],
                 strides: list[list[int]]):
        super().__init__()
        self.convs = nn.ModuleList()
        previous, freq = 1, input_dim
        for out, kernel, stride in zip(channels, kernels, strides, strict=True):
            conv = nn.Conv2d(previous, out, tuple(kernel), tuple(stride),
                             padding=(kernel[0] // 2, kernel[1] // 2))
            self.convs.append(conv)
            freq = self._out_size(freq, conv, axis=1)
            previous = out
        self.output_dim = previous * freq

    @staticmethod
    def _out_size(size, conv: nn.Conv2d, axis: int):
        """Conv output size along ``axis`` from the module's own kernel/stride/padding."""
        kernel, stride = conv.kernel_size[axis], conv.stride[axis]
        padding, dilation = conv.padding[axis], conv.dilation[axis]
        return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        for conv in self.convs:
            lengths = self._out_size(lengths, conv, axis=0)
        return lengths

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = x.unsqueeze(1)  # (B, 1, T, F)
        for conv in self.convs:
            x = nn.functional.hardtanh(conv(x), 0.0, 20.0)
            lengths = self._out_size(lengths, conv, axis=0)
            x = _mask(x.transpose(1, 2), lengths).transpose(1, 2)
        batch, channels, frames, freq = x.shape
        return x.permute(0, 2, 1, 3).reshape(batch, frames, channels * freq), lengths


class Lookahead(nn.Module):
    """Row convolution (DeepSpeech2): out[t] = Σ_{j=0..τ} w_j ⊙ h[t+j], per feature."""

    def __init__(self, dim: int, context: int):
        super().__init__()
        self.context = context
        self.conv = nn.Conv1d(dim, dim, context + 1, groups=dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        padded = nn.functional.pad(x.transpose(1, 2), (0, self.context))
        return self.conv(padded).transpose(1, 2)

    def stream(self, x: torch.Tensor, future: torch.Tensor | None, final: bool
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """(1, T, H) new frames → (outputs whose look-ahead frames have all arrived, frames
        still waiting); ``final`` pads the end with zeros as :meth:`forward` does."""
        if future is not None:
            x = torch.cat([future, x], dim=1)
        if final:
            x = nn.functional.pad(x, (0, 0, 0, self.context))
        ready = max(0, x.shape[1] - self.context)
        output = self.conv(x.transpose(1, 2)).transpose(1, 2) if ready else x[:, :0]
        return output, x[:, ready:]


def reverse_within_lengths(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse each sequence of (B, T, F) within its own length; padding stays in place.
    Applying it twice gives back ``x``."""
    steps = torch.arange(x.shape[1], device=x.device)[None, :]
    ends = lengths.to(x.device)[:, None]
    index = torch.where(steps < ends, ends - 1 - steps, steps)
    return x.gather(1, index.unsqueeze(-1).expand_as(x))


class RecurrentLayer(nn.Module):
    """One (bi)directional RNN/GRU/LSTM layer over padded batches, exact for every length.

    The backward direction runs forward over each sequence reversed within its length, so
    neither direction ever reads padding before real frames. This avoids packed sequences,
    which on CPU fall off PyTorch's fused (oneDNN) RNN path and run ~4× slower.
    """

    def __init__(self, cell: str, input_size: int, hidden: int, bidirectional: bool):
        super().__init__()
        self.forward_rnn = CELLS[cell](input_size, hidden, batch_first=True)
        self.backward_rnn = (CELLS[cell](input_size, hidden, batch_first=True)
                             if bidirectional else None)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(B, T, F) + (B,) lengths → (B, T, hidden × directions); padded frames arbitrary."""
        output, _ = self.forward_rnn(x)
        if self.backward_rnn is None:
            return output
        backward, _ = self.backward_rnn(reverse_within_lengths(x, lengths))
        return torch.cat([output, reverse_within_lengths(backward, lengths)], dim=-1)

    def stream(self, x: torch.Tensor, hidden) -> tuple[torch.Tensor, object]:
        """(1, T, F) next frames of a unidirectional layer and its state → (outputs, state)."""
        return self.forward_rnn(x, hidden)


@dataclass
class StreamState:
    """What a unidirectional model carries from one chunk to the next."""

    pending: torch.Tensor | None = None  # normalised frames not yet a full stacking group
    hidden: list = field(default_factory=list)  # per recurrent layer: its RNN state
    future: torch.Tensor | None = None  # last outputs still waiting for look-ahead frames


class AcousticModel(nn.Module):
    """(B, T, F) features + lengths → ((B, T', V) CTC log-probabilities, (B,) lengths T')."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        if config.cell not in CELLS:
            raise ValueError(f"cell must be one of {', '.join(CELLS)}, not {config.cell!r}")
        self.config = config
        # Feature normalisation (GlobalCMVN or UtteranceCMVN, set by training or checkpoint
        # loading); its statistics live in cmvn.json, not in the weights.
        self.cmvn: nn.Module | None = None
        if config.subsampling == "stack":
            self.frontend = FrameStacking(config.input_dim, config.stack)
        elif config.subsampling == "conv2d":
            self.frontend = Conv2dSubsampling(config.input_dim, config.conv_channels,
                                              config.conv_kernels, config.conv_strides)
        elif config.subsampling == "none":
            self.frontend = None
        else:
            raise ValueError(f"unknown subsampling {config.subsampling!r}")
        size = self.frontend.output_dim if self.frontend is not None else config.input_dim
        directions = 2 if config.bidirectional else 1
        self.rnns = nn.ModuleList()
        self.norms = nn.ModuleList()
        for _ in range(config.layers):
            self.rnns.append(RecurrentLayer(config.cell, size, config.hidden,
                                            config.bidirectional))
            size = config.hidden * directions
            self.norms.append(nn.LayerNorm(size) if config.layer_norm else nn.Identity())
        self.dropout = nn.Dropout(config.dropout)
        self.lookahead = (Lookahead(size, config.lookahead)
                          if config.lookahead and not config.bidirectional else None)
        self.output = nn.Linear(size, config.vocab_size)

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Frames out for ``lengths`` frames in, derived from the front-end modules."""
        return lengths if self.frontend is None else self.frontend.output_lengths(lengths)

    @property
    def subsampling_factor(self) -> int:
        """Input frames per output frame (for converting output frames to seconds)."""
        return int(round(1000 / int(self.output_lengths(torch.tensor([1000]))[0])))

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def log_probs(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, H) top-layer output → (B, T, V) log-probabilities, in fp32 even under
        autocast: CPU autocast keeps log_softmax in bf16, whose 8-bit mantissa would round
        a log-probability of −10 to steps of 0.06."""
        return self.output(x).float().log_softmax(dim=-1)

    def forward(self, features: torch.Tensor, lengths: torch.Tensor,
                intermediate_layers: tuple[int, ...] = ()) -> tuple:
        """(log-probabilities, lengths); with ``intermediate_layers`` (1-based recurrent layer
        numbers) also a list of those layers' outputs through the shared output layer, for
        intermediate CTC losses (Lee & Watanabe 2021): (log-probs, lengths, [log-probs])."""
        lengths = lengths.cpu()
        if self.cmvn is not None:
            features = self.cmvn(features, lengths)
        x = _mask(features, lengths)
        if self.frontend is not None:
            x, lengths = self.frontend(x, lengths)
        lengths = lengths.clamp(min=1)
        intermediate = []
        for number, (rnn, norm) in enumerate(zip(self.rnns, self.norms, strict=True), start=1):
            x = self.dropout(norm(rnn(x, lengths)))
            if number in intermediate_layers:
                intermediate.append(self.log_probs(x))
        if self.lookahead is not None:
            x = self.lookahead(_mask(x, lengths))
        log_probs = self.log_probs(x)
        if intermediate_layers:
            return log_probs, lengths, intermediate
        return log_probs, lengths

    def check_streamable(self) -> None:
        """Raise ValueError (saying why) unless this model can run chunk by chunk."""
        config = self.config
        if config.bidirectional:
            raise ValueError("streaming needs a unidirectional model (bidirectional: false); "
                             "this one reads each utterance backwards too")
        if config.subsampling not in ("stack", "none"):
            raise ValueError(f"streaming supports frame stacking or no subsampling, not "
                             f"{config.subsampling!r}")
        if self.cmvn is not None and not isinstance(self.cmvn, GlobalCMVN):
            raise ValueError("streaming needs global CMVN; per-utterance CMVN sees the whole "
                             "utterance")

    def stream(self, features: torch.Tensor, state: StreamState | None = None,
               final: bool = False) -> tuple[torch.Tensor, StreamState]:
        """(1, T, F) new feature frames → (1, T', V) log-probabilities of the output frames
        they complete, and the state to pass with the next chunk (None for the first).
        ``final`` flushes what is held back (a partial stacking group, the look-ahead's
        last frames) exactly as :meth:`forward` pads the end of an utterance, so the chunks'
        outputs joined equal ``forward(features)``."""
        if state is None:
            self.check_streamable()
            state = StreamState(hidden=[None] * len(self.rnns))
        x = self.cmvn(features) if self.cmvn is not None else features
        if isinstance(self.frontend, FrameStacking):
            x, state.pending = self.frontend.stream(x, state.pending, final)
        if x.shape[1]:
            for index, (layer, norm) in enumerate(zip(self.rnns, self.norms, strict=True)):
                output, state.hidden[index] = layer.stream(x, state.hidden[index])
                x = norm(output)
        else:  # nothing new reached the recurrent layers
            x = x.new_zeros(1, 0, self.output.in_features)
        if self.lookahead is not None:
            x, state.future = self.lookahead.stream(x, state.future, final)
        return self.log_probs(x), state


PRESETS: dict[str, dict] = {
    # EESEN (Miao et al. 2015): 4 × 320 BiLSTM over stacked frames; 8.85 M parameters at 80
    # mel × 3 stacked input and 29 characters.
    "eesen": dict(subsampling="stack", stack=3, cell="lstm", bidirectional=True, hidden=320,
                  layers=4, dropout=0.2, layer_norm=False),
    # DeepSpeech2-like (Amodei et al. 2016), scaled down: 2 strided 2-D convs + 5 × 320 BiGRU;
    # 9.51 M parameters at 80 mel and 29 characters.
    "ds2": dict(subsampling="conv2d", conv_channels=[32, 32], conv_kernels=[[11, 41], [11, 21]],
                conv_strides=[[2, 2], [1, 2]], cell="gru", bidirectional=True, hidden=320,
                layers=5, dropout=0.1, layer_norm=True),
}


def build_model(config: ModelConfig | dict) -> AcousticModel:
    if isinstance(config, dict):
        config = ModelConfig(**config)
    return AcousticModel(config)


def preset(name: str, **overrides) -> ModelConfig:
    """A named architecture (``eesen``, ``ds2``) with optional field overrides."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}")
    return ModelConfig(**{**PRESETS[name], **overrides})


def config_dict(config: ModelConfig) -> dict:
    return asdict(config)
