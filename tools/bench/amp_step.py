#!/usr/bin/env python
"""Training step time with ``amp: bf16`` against fp32, same model, weights and batches, on
the device a config trains on (CPUs with bf16 instructions included), and how far the bf16
CTC loss of the first batch is from the fp32 one.

    python tools/bench/amp_step.py --config recipes/speechocean762/conf/blstm.yaml --threads 1
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

from speechrnn.training.config import load_config
from speechrnn.training.trainer import Trainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="a training YAML (its data.train is read)")
    parser.add_argument("--set", action="append", default=[], help="config override key=value")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per setting")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's own)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    overrides = ["progress=false", "data.num_workers=0", "data.cache_audio=false",
                 "model.dropout=0.0", "augment.specaugment=false", *args.set]
    trainers = {}
    with tempfile.TemporaryDirectory() as outdir:
        for amp in ("none", "bf16"):
            trainers[amp] = Trainer(load_config(args.config, [*overrides, f"amp={amp}"]),
                                    f"{outdir}/{amp}")
        trainers["bf16"].model.load_state_dict(trainers["none"].model.state_dict())
        first = trainers["none"]
        batches = []
        for batch in first.batches():
            batches.append(batch.to(first.device))
            if len(batches) == args.steps + 1:
                break
        losses, seconds = {}, {}
        for amp, trainer in trainers.items():
            losses[amp] = trainer.train_step(batches[0]).loss  # also the warm-up step
            trainer.optimizer_step()
            started = time.perf_counter()
            for batch in batches[1:]:
                trainer.train_step(batch)
                trainer.optimizer_step()
            if trainer.device.type == "cuda":
                torch.cuda.synchronize()
            seconds[amp] = (time.perf_counter() - started) / (len(batches) - 1)
    utterances = sum(len(batch.ids) for batch in batches[1:]) / (len(batches) - 1)
    print(f"{args.config} {' '.join(args.set)}: {first.model.num_parameters():,} parameters, "
          f"device {first.device}, {torch.get_num_threads()} threads, "
          f"{len(batches) - 1} steps of {utterances:.0f} utterances on average "
          f"(≤ {first.config.data.max_frames} frames)")
    for amp in trainers:
        print(f"  amp {amp:4s}: {seconds[amp]:.3f} s/step, first-batch CTC loss {losses[amp]:.4f}")
    print(f"  bf16 speed-up {seconds['none'] / seconds['bf16']:.2f}×, loss difference "
          f"{abs(losses['bf16'] - losses['none']) / losses['none']:.2%}")


if __name__ == "__main__":
    main()
