"""The trainer's checkpoints: whether a folder may take a new run, which epochs are kept
(last, best-k, best) and the resumable state beside the model files (``trainer.safetensors``
for optimiser tensors and RNG states, ``trainer.json`` for the rest), written atomically;
nothing is ever unpickled. The model files are :mod:`speechrnn.models.checkpoint`'s."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from speechrnn.models.checkpoint import (
    Checkpoint,
    CheckpointError,
    atomic_directory,
    load_checkpoint,
    resolve,
    write_json,
    write_tensors,
)
from speechrnn.text import LEXICON_FILE


def flatten_state(obj, prefix: str = "", tensors: dict | None = None):
    """Split a nested state (dicts/lists with tensors) into (JSON skeleton, tensor dict)."""
    tensors = {} if tensors is None else tensors
    if isinstance(obj, torch.Tensor):
        key = prefix.rstrip(".")
        tensors[key] = obj.detach().cpu().contiguous()
        return {"__tensor__": key}, tensors
    if isinstance(obj, dict):
        skeleton = {"__dict__": [[k, flatten_state(v, f"{prefix}{k}.", tensors)[0]]
                                 for k, v in obj.items()]}
        return skeleton, tensors
    if isinstance(obj, (list, tuple)):
        return [flatten_state(v, f"{prefix}{i}.", tensors)[0] for i, v in enumerate(obj)], tensors
    return obj, tensors


def unflatten_state(skeleton, tensors: dict):
    """Inverse of :func:`flatten_state`."""
    if isinstance(skeleton, dict) and "__tensor__" in skeleton:
        return tensors[skeleton["__tensor__"]]
    if isinstance(skeleton, dict) and "__dict__" in skeleton:
        return {k: unflatten_state(v, tensors) for k, v in skeleton["__dict__"]}
    if isinstance(skeleton, list):
        return [unflatten_state(v, tensors) for v in skeleton]
    return skeleton


def save_trainer_state(directory: Path, state: dict) -> None:
    skeleton, tensors = flatten_state(state)
    write_tensors(tensors, directory / "trainer.safetensors")
    write_json(directory / "trainer.json", skeleton)


def load_trainer_state(directory: Path) -> dict:
    directory = resolve(directory)
    try:
        skeleton = json.loads((directory / "trainer.json").read_text())
        tensors = load_file(str(directory / "trainer.safetensors"))
    except (OSError, json.JSONDecodeError, SafetensorError) as error:
        raise CheckpointError(f"{directory}: no resumable training state ({error})") from None
    return unflatten_state(skeleton, tensors)


# What a training run writes into its folder; cmvn.json and run.log may come first (a
# recipe's CMVN stage and log), so they do not mark a folder as holding a run.
RUN_FILES = ("tokenizer.json", "config.yaml", "train.csv", "valid.csv", "last", "last.old",
             "last.tmp", "best", "best.old", "best.tmp", "checkpoints", "tb", LEXICON_FILE)


def claim_run_folder(outdir: Path, resume: bool, overwrite: bool) -> None:
    """Refuse (ValueError) to start a new run in a folder that holds one (tokenizer, CMVN,
    logs and checkpoints of two runs would mix) unless ``resume`` continues it or
    ``overwrite`` clears it first."""
    if resume and overwrite:
        raise ValueError("--resume and --overwrite contradict each other; choose one")
    found = [name for name in RUN_FILES if (outdir / name).exists()]
    if not found or resume:
        return
    if not overwrite:
        raise ValueError(f"{outdir} already holds a training run ({', '.join(found)}); "
                         "--resume continues it, --overwrite replaces it")
    for name in found:
        target = outdir / name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        else:
            target.unlink()


class CheckpointManager:
    """A run folder's checkpoints: ``last/`` (resumable, rewritten atomically),
    ``checkpoints/epoch-N`` for the ``keep_best`` epochs of lowest dev WER, and ``best/``, a
    copy of the best of them (what inference uses)."""

    def __init__(self, outdir: str | Path, keep_best: int):
        self.outdir = Path(outdir)
        self.keep_best = keep_best

    def save_last(self, write_model: Callable[[Path], None], state: dict) -> None:
        """Model files by ``write_model(folder)`` and the trainer's ``state`` into last/."""
        def write(directory: Path) -> None:
            write_model(directory)
            save_trainer_state(directory, state)

        atomic_directory(self.outdir / "last", write)

    def load_last(self) -> tuple[Path, Checkpoint, dict]:
        """(folder, model checkpoint, trainer state) of last/ for an exact resume."""
        last = resolve(self.outdir / "last")
        return last, load_checkpoint(last), load_trainer_state(last)

    def save_epoch(self, epoch: int, history: list[dict],
                   write_model: Callable[[Path], None]) -> int:
        """Keep epoch ``epoch`` if it is among the ``keep_best`` lowest dev WERs of
        ``history``; refresh best/. Returns the best epoch."""
        folder = self.outdir / "checkpoints"
        folder.mkdir(exist_ok=True)
        atomic_directory(folder / f"epoch-{epoch}", write_model)
        # Lowest dev WER first; ties (common on small dev sets) go to the lower dev CER, then
        # to the later epoch. Not to the lower dev loss: it rises as the model grows confident
        # while its outputs still improve (yesno, 5 seeds: the last epoch beat the lowest-loss
        # tie on test almost every time, e.g. 0.4% against 2.5-5.4%).
        scored = [(h.get("wer", float("inf")), h.get("cer", float("inf")), -h["epoch"],
                   f"epoch-{h['epoch']}")
                  for h in history if (folder / f"epoch-{h['epoch']}").exists()]
        scored.sort()
        for *_, stale in scored[self.keep_best:]:
            shutil.rmtree(folder / stale, ignore_errors=True)
        best = scored[0][-1]
        atomic_directory(self.outdir / "best",
                         lambda d: [shutil.copy(p, d) for p in (folder / best).iterdir()])
        return int(best.removeprefix("epoch-"))
