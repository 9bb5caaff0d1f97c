#!/usr/bin/env python
"""Exported models against PyTorch on real speech: greedy WER and acoustic-model time per
utterance for the checkpoint in PyTorch, its ONNX export, its int8 ONNX export and TorchScript.

    python tools/bench/export.py --manifest recipes/speechocean762/data/test.jsonl \
        [--model en-so762-blstm] [--limit 300] [--threads 1]

Features are computed once with speechrnn; only the acoustic model (CMVN included) is timed,
one utterance at a time, all variants in the same run.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from speechrnn.data.manifest import load_entry, read_manifest
from speechrnn.decoding.greedy import greedy_ids
from speechrnn.export import export_checkpoint, load_exported
from speechrnn.models.checkpoint import load_checkpoint
from speechrnn.pretrained import resolve_model
from speechrnn.scoring import error_rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--model", default=None, help="checkpoint or bundled name")
    parser.add_argument("--limit", type=int, default=300)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model_dir = resolve_model(args.model)
    checkpoint = load_checkpoint(model_dir)
    model = checkpoint.model.float().eval()
    entries = read_manifest(args.manifest)[: args.limit]
    inputs = []
    with torch.no_grad():
        for entry in entries:
            wave = load_entry(entry, checkpoint.features.config.sample_rate)
            features, frames = checkpoint.features(wave[None], torch.tensor([len(wave)]))
            inputs.append((features, frames.long()))
    seconds_of_audio = sum(e.duration for e in entries)
    references = [e.text for e in entries]

    def pytorch(features, lengths):
        with torch.no_grad():
            log_probs, out_lengths = model(features, lengths)
        return log_probs.numpy(), out_lengths.numpy()

    with tempfile.TemporaryDirectory() as tmp:
        variants = {"pytorch fp32": pytorch}
        for name, fmt, quantize in (("onnx fp32", "onnx", None), ("onnx int8", "onnx", "int8"),
                                    ("torchscript", "torchscript", None)):
            path, _ = export_checkpoint(model_dir, Path(tmp) / name.replace(" ", "_"), fmt,
                                        quantize)
            variants[name] = load_exported(path)
        print(f"{len(entries)} utterances ({seconds_of_audio / 60:.1f} min) of {args.manifest};"
              f" model {model_dir.name}; {args.threads} thread(s)")
        print(f"{'variant':14s} {'ms/utt':>8s} {'RTF':>8s} {'WER %':>7s} {'CER %':>7s}")
        baseline = None
        for name, run in variants.items():
            run(*inputs[0])  # warm up
            hypotheses, elapsed = [], 0.0
            for features, lengths in inputs:
                start = time.perf_counter()
                log_probs, out_lengths = run(features, lengths)
                elapsed += time.perf_counter() - start
                ids = greedy_ids(torch.from_numpy(log_probs), torch.from_numpy(out_lengths))[0]
                hypotheses.append(checkpoint.tokenizer.decode(ids))
            wer, cer = error_rates(references, hypotheses, checkpoint.tokenizer.case)
            baseline = baseline or elapsed
            print(f"{name:14s} {1000 * elapsed / len(inputs):8.2f} "
                  f"{elapsed / seconds_of_audio:8.4f} {100 * wer:7.2f} {100 * cer:7.2f}"
                  f"   ({baseline / elapsed:.2f}x PyTorch's speed)")


if __name__ == "__main__":
    main()
