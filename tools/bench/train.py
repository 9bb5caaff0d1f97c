#!/usr/bin/env python
"""Training throughput: our Trainer's step vs a bare PyTorch loop on the same model and
batches (overhead target ≤ 10%), and end-to-end hours of audio per hour (data loading,
features on the device, AMP) for a preset.

    python tools/bench/train.py --manifest data/so762/train.jsonl [--device cuda --amp bf16]
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time

import torch

from speechrnn.training.config import load_config
from speechrnn.training.trainer import Trainer, ctc_batch_loss


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", required=True)
    parser.add_argument("--preset", default="eesen")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--amp", default="none")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--max-frames", type=int, default=20000)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=1, help="for the end-to-end h/h figure")
    parser.add_argument("--set", action="append", default=[])
    args = parser.parse_args()
    overrides = [f"data.train={args.manifest}", f"preset={args.preset}",
                 f"device={args.device}", f"amp={args.amp}", "progress=false",
                 f"data.max_frames={args.max_frames}", f"data.num_workers={args.workers}",
                 "model.dropout=0.0", *args.set]
    with tempfile.TemporaryDirectory() as outdir:
        trainer = Trainer(load_config(None, overrides), outdir)
        device = trainer.device
        batches = []
        for batch in trainer.batches():
            batches.append(batch.to(device))
            if len(batches) == args.steps + 2:
                break
        bare_model = copy.deepcopy(trainer.model)
        bare_optimizer = torch.optim.AdamW(bare_model.parameters(), lr=1e-4)

        def ours(batch):
            trainer.train_step(batch)
            trainer.optimizer_step()

        def bare(batch):
            features, lengths = trainer.inputs(batch, train=True)
            with trainer.autocast():
                log_probs, out_lengths = bare_model(features, lengths)
            loss, used, _ = ctc_batch_loss(log_probs, out_lengths, batch)
            (loss / max(used, 1)).backward()
            torch.nn.utils.clip_grad_norm_(bare_model.parameters(), 5.0)
            bare_optimizer.step()
            bare_optimizer.zero_grad(set_to_none=True)

        timings = {}
        for name, step in (("bare", bare), ("trainer", ours), ("bare ", bare),
                           ("trainer ", ours)):
            step(batches[0])
            sync(device)
            started = time.perf_counter()
            for batch in batches[2:]:
                step(batch)
            sync(device)
            timings[name.strip()] = min(timings.get(name.strip(), 1e9),
                                       time.perf_counter() - started)
        steps = len(batches) - 2
        print(f"device {device} ({torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu'}"
              f"), preset {args.preset}, amp {args.amp}, {trainer.model.num_parameters():,} "
              f"parameters, {steps} steps of ≤ {args.max_frames} frames")
        for name, seconds in timings.items():
            print(f"  {name:8s} {steps / seconds:7.2f} steps/s")
        print(f"  trainer overhead vs bare loop: "
              f"{100 * (timings['trainer'] / timings['bare'] - 1):+.1f}% (target ≤ 10%)")
        # end to end: data loading from disk + features on the device + AMP
        trainer.config.epochs = args.epochs
        seconds_audio = sum(e.duration for e in trainer.train_set.entries) * args.epochs
        started = time.perf_counter()
        trainer.fit()
        sync(device)
        elapsed = time.perf_counter() - started
        print(f"  end to end: {seconds_audio / 3600:.2f} h of audio in {elapsed:.1f} s = "
              f"{seconds_audio / elapsed:.0f} h/h (target ≥ 5000 h/h on an H100)")


if __name__ == "__main__":
    main()
