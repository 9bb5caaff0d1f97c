"""Packaging a trained checkpoint as a bundled model (``speechrnn package``): float16
weights, its LM, and the decoding defaults that ``speechrnn transcribe`` then uses.

The weights are stored as float16 (half the size; loading casts them back to float32), the
tokenizer and CMVN are copied, and config.json gains ``decoding`` (the LM weights, blank
penalty and beam), ``weights_dtype`` and a ``description``. The folder is written next to
its final place and then renamed.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from safetensors.torch import load_file

from speechrnn.fileio import write_atomic
from speechrnn.models.checkpoint import atomic_directory, read_config, resolve, write_tensors
from speechrnn.text import tokenizer_files


def package(model: Path, out: Path, lm: Path | None, decoding: dict, description: str,
            metrics: dict) -> None:
    """Write the bundled-model folder ``out`` from checkpoint folder ``model``."""
    source = resolve(model)
    config = read_config(source)
    weights = load_file(str(source / "model.safetensors"))

    def write(folder: Path) -> None:
        write_tensors({name: tensor.half().contiguous() for name, tensor in weights.items()},
                      folder / "model.safetensors")
        for name in ("cmvn.json", *tokenizer_files(source)):
            shutil.copy2(source / name, folder / name)
        if lm is not None:
            shutil.copy2(lm, folder / "lm.arpa.gz")
        packaged = {**config, "description": description, "weights_dtype": "float16",
                    "decoding": decoding, "metrics": {**config.get("metrics", {}), **metrics}}
        write_atomic(folder / "config.json", json.dumps(packaged, indent=1, ensure_ascii=False))

    atomic_directory(out, write)
