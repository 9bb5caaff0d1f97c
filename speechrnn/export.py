"""Export a checkpoint's acoustic model (CMVN included) for deployment without speechrnn's
Python stack: ONNX (for ONNX Runtime, optionally int8) or TorchScript.

The exported graph maps ``features (B, T, F) float32`` and ``lengths (B,) int64`` to
``log_probs (B, T', V)`` and ``output_lengths (B,)``, exactly as ``AcousticModel.forward``.
Feature extraction and decoding stay outside the graph: the export folder keeps the
checkpoint's ``config.json`` (feature settings), ``tokenizer.json`` and ``cmvn.json``.
Every export is checked against PyTorch on a batch of a different length from the one it was
traced with, so a graph that silently fixed a shape is never written out as good.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from speechrnn.models.checkpoint import Checkpoint, load_checkpoint
from speechrnn.text import tokenizer_files

FORMATS = ("onnx", "torchscript")
INPUTS, OUTPUTS = ["features", "lengths"], ["log_probs", "output_lengths"]
TOLERANCE = 1e-4  # largest allowed |exported - PyTorch| log-probability (fp32 graphs)


class ExportError(Exception):
    """The model could not be exported or the export does not match PyTorch."""


def _example(model: torch.nn.Module, frames: int, batch: int = 2,
             seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A padded batch of random features; the second utterance is shorter."""
    generator = torch.Generator().manual_seed(seed)
    features = torch.randn(batch, frames, model.config.input_dim, generator=generator)
    lengths = torch.tensor([frames] + [max(1, frames - 17 * i) for i in range(1, batch)])
    return features, lengths


def export_onnx(model: torch.nn.Module, path: Path, opset: int = 17) -> None:
    """Write ``model`` as ONNX with dynamic batch and time axes.

    The TorchScript-based exporter is used: it records recurrent layers as ONNX LSTM/GRU/RNN
    nodes in seconds, where the dynamo exporter took minutes on this model."""
    features, lengths = _example(model, 301)
    axes = {"features": {0: "batch", 1: "frames"}, "lengths": {0: "batch"},
            "log_probs": {0: "batch", 1: "output_frames"}, "output_lengths": {0: "batch"}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer chatter; the result is verified below
        torch.onnx.export(model, (features, lengths), str(path), dynamo=False,
                          input_names=INPUTS, output_names=OUTPUTS, dynamic_axes=axes,
                          opset_version=opset)


def quantize_onnx(source: Path, target: Path) -> None:
    """int8 dynamic quantisation of an ONNX model's weights (ONNX Runtime's own tool: the
    LSTM/GRU and MatMul weights become int8, activations are quantised on the fly)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # it logs a warning for every non-float tensor
    try:
        quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8)
    finally:
        root.setLevel(level)


def export_torchscript(model: torch.nn.Module, path: Path) -> None:
    """Write ``model`` as a traced TorchScript module (``torch.jit.load``)."""
    features, lengths = _example(model, 301)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # trace deprecation and tracer chatter
        traced = torch.jit.trace(model, (features, lengths), check_trace=False)
    traced.save(str(path))


def load_exported(path: Path) -> Callable[[torch.Tensor, torch.Tensor],
                                         tuple[np.ndarray, np.ndarray]]:
    """A function (features, lengths) → (log-probs, lengths) over an exported file (``.onnx``
    or ``.ts``), loaded once so that checks and benchmarks time only the model."""
    if path.suffix == ".onnx":
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        session = onnxruntime.InferenceSession(str(path), options,
                                               providers=["CPUExecutionProvider"])

        def run_onnx(features, lengths):
            log_probs, out_lengths = session.run(
                None, {"features": features.numpy(), "lengths": lengths.numpy()})
            return log_probs, out_lengths

        return run_onnx
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = torch.jit.load(str(path))

    def run_torchscript(features, lengths):
        with torch.no_grad():
            log_probs, out_lengths = module(features, lengths)
        return log_probs.numpy(), out_lengths.numpy()

    return run_torchscript


def max_difference(path: Path, model: torch.nn.Module, frames: int = 457) -> float:
    """Largest |exported - PyTorch| log-probability over the valid frames of a batch whose
    length differs from the traced one; raises if the output lengths differ."""
    features, lengths = _example(model, frames, batch=3, seed=1)
    with torch.no_grad():
        expected, expected_lengths = model(features, lengths)
    log_probs, out_lengths = load_exported(path)(features, lengths)
    if out_lengths.tolist() != expected_lengths.tolist():
        raise ExportError(f"{path}: output lengths {out_lengths.tolist()} differ from "
                          f"PyTorch's {expected_lengths.tolist()}")
    worst = 0.0
    for i, length in enumerate(expected_lengths.tolist()):
        difference = np.abs(log_probs[i, :length] - expected[i, :length].numpy())
        worst = max(worst, float(difference.max()))
    return worst


def export_checkpoint(model_dir: str | Path, outdir: str | Path, format: str = "onnx",
                      quantize: str | None = None) -> tuple[Path, float]:
    """Export the checkpoint in ``model_dir`` into ``outdir``; returns the model file and its
    largest log-probability difference from PyTorch (int8: informative, not checked)."""
    if format not in FORMATS:
        raise ExportError(f"unknown export format {format!r} ({' | '.join(FORMATS)})")
    if quantize not in (None, "int8"):
        raise ExportError(f"unknown quantisation {quantize!r} (int8)")
    if quantize and format != "onnx":
        raise ExportError("int8 export is available for ONNX (ONNX Runtime's dynamic "
                          "quantisation); torch's eager int8 quantisation is deprecated")
    checkpoint: Checkpoint = load_checkpoint(model_dir)
    model = checkpoint.model.float().eval()
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    # Everything is written and checked in a hidden folder beside the results, then moved
    # into place file by file: a failed export leaves an earlier one in ``outdir`` whole.
    staging = Path(tempfile.mkdtemp(prefix=".export-", dir=outdir))
    try:
        for name in ("config.json", "cmvn.json", *tokenizer_files(checkpoint.path)):
            shutil.copy(checkpoint.path / name, staging / name)
        if format == "torchscript":
            target = staging / "model.ts"
            export_torchscript(model, target)
        else:
            target = staging / "model.onnx"
            export_onnx(model, target)
        difference = max_difference(target, model)
        if difference > TOLERANCE:
            raise ExportError(f"{outdir / target.name}: log-probabilities differ from PyTorch "
                              f"by {difference:.2e} (> {TOLERANCE})")
        if quantize:  # from the checked fp32 graph
            quantized = staging / "model.int8.onnx"
            quantize_onnx(target, quantized)
            target, difference = quantized, max_difference(quantized, model)
        for item in staging.iterdir():
            os.replace(item, outdir / item.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return outdir / target.name, difference
