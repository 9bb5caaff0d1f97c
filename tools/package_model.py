#!/usr/bin/env python
"""Package a trained checkpoint as a bundled model: fp16 weights, its LM, decoding defaults.

    python tools/package_model.py exp/best --lm data/lm.arpa.gz --alpha 1.8 --beta 6.0 \
        --tuned-on "speechocean762 dev" --description "..." --out speechrnn/pretrained/NAME

The weights are stored as float16 (half the size; `load_checkpoint` casts them back to
float32), the tokenizer and CMVN are copied, and config.json gains ``decoding`` (the LM
weights, blank penalty and beam that ``speechrnn transcribe`` uses by default),
``weights_dtype`` and a ``description``. The folder is written next to its final place and
then renamed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from safetensors.torch import load_file

from speechrnn.argtypes import non_negative_float
from speechrnn.fileio import write_atomic
from speechrnn.models.checkpoint import (
    CheckpointError,
    atomic_directory,
    read_config,
    resolve,
    write_tensors,
)


def package(model: Path, out: Path, lm: Path | None, decoding: dict, description: str,
            metrics: dict) -> None:
    """Write the bundled-model folder ``out`` from checkpoint folder ``model``."""
    source = resolve(model)
    config = read_config(source)
    weights = load_file(str(source / "model.safetensors"))

    def write(folder: Path) -> None:
        write_tensors({name: tensor.half().contiguous() for name, tensor in weights.items()},
                      folder / "model.safetensors")
        for name in ("tokenizer.json", "cmvn.json"):
            shutil.copy2(source / name, folder / name)
        if lm is not None:
            shutil.copy2(lm, folder / "lm.arpa.gz")
        packaged = {**config, "description": description, "weights_dtype": "float16",
                    "decoding": decoding, "metrics": {**config.get("metrics", {}), **metrics}}
        write_atomic(folder / "config.json", json.dumps(packaged, indent=1, ensure_ascii=False))

    atomic_directory(out, write)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="checkpoint folder (e.g. exp/best)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--lm", type=Path, help="ARPA (.arpa.gz) to ship with the model")
    parser.add_argument("--alpha", type=float, required=True)
    parser.add_argument("--beta", type=float, required=True)
    parser.add_argument("--beam", type=int, default=16)
    parser.add_argument("--blank-penalty", type=non_negative_float, default=0.0,
                        help="nats off the blank's log-probability (tools/tune_lm.py)")
    parser.add_argument("--tuned-on", required=True, help="where alpha/beta were tuned")
    parser.add_argument("--description", required=True)
    parser.add_argument("--metric", action="append", default=[], metavar="NAME=VALUE",
                        help="a measured result to record, e.g. test_wer=0.60 (repeatable)")
    args = parser.parse_args()
    if args.lm is not None and not args.lm.name.endswith(".arpa.gz"):
        parser.error(f"--lm {args.lm}: expected a gzipped ARPA file (.arpa.gz)")
    try:
        metrics = {key: float(value) for key, value in (m.split("=", 1) for m in args.metric)}
    except ValueError:
        parser.error(f"--metric expects NAME=NUMBER, got {args.metric}")
    decoding = {"alpha": args.alpha, "beta": args.beta, "beam": args.beam,
                "blank_penalty": args.blank_penalty, "tuned_on": args.tuned_on}
    try:
        package(args.model, args.out, args.lm, decoding, args.description, metrics)
    except (CheckpointError, OSError) as error:
        print(f"package_model: error: {error}", file=sys.stderr)
        return 2
    print(f"packaged {args.model} into {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
