"""Checkpoints: a folder of safetensors + JSON, written atomically; nothing is ever unpickled.

Layout of a model checkpoint (what inference needs; training and inference both read it
through this module)::

    config.json        {"format_version", "model", "features", "metrics", ...}
    model.safetensors  weights
    tokenizer.json     the tokenizer (speechrnn.text)
    cmvn.json          global mean/std of the features (or {"mode": "utterance"})

A resumable training checkpoint adds the trainer's state beside these files
(:mod:`speechrnn.training.checkpoints`).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from speechrnn.features import FeatureConfig, GlobalCMVN, UtteranceCMVN, build_features, load_cmvn
from speechrnn.fileio import input_problem, write_atomic
from speechrnn.models.acoustic import AcousticModel, ModelConfig, config_dict
from speechrnn.schema import checked_dataclass
from speechrnn.text import Tokenizer, load_tokenizer, save_tokenizer, tokenizer_files

FORMAT_VERSION = 1


class CheckpointError(Exception):
    """Not a usable speechrnn checkpoint; the message names the path and why."""


@dataclass
class Checkpoint:
    """Everything inference needs, rebuilt from a checkpoint folder."""

    model: AcousticModel
    features: torch.nn.Module
    tokenizer: Tokenizer
    config: dict
    path: Path

    @property
    def frame_shift(self) -> float:
        """Seconds per model output frame: feature shift × the model's subsampling."""
        return self.features.frame_shift * self.model.subsampling_factor


def write_tensors(tensors: dict[str, torch.Tensor], path: Path) -> None:
    """Write ``tensors`` as safetensors. Not with safetensors' ``save_file``: it creates the
    file readable by its owner only (0600) whatever the umask, so a model folder shared on a
    server had readable JSON beside unreadable weights; a plain write follows the umask."""
    write_atomic(path, save(tensors))


def write_json(path: Path, data: dict) -> None:
    """Write ``data`` as indented UTF-8 JSON, all or nothing."""
    write_atomic(path, json.dumps(data, indent=1, ensure_ascii=False))


def save_model(directory: Path, model: AcousticModel, feature_config: FeatureConfig,
               tokenizer: Tokenizer, cmvn: GlobalCMVN | UtteranceCMVN,
               metrics: dict | None = None,
               extra: dict | None = None) -> None:
    """Write the inference part of a checkpoint into ``directory`` (which must exist)."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    write_tensors(state, directory / "model.safetensors")
    write_json(directory / "config.json", {
        "format_version": FORMAT_VERSION,
        "model": config_dict(model.config),
        "features": vars(feature_config).copy(),
        "metrics": metrics or {},
        "num_parameters": model.num_parameters(),
        **(extra or {}),
    })
    save_tokenizer(tokenizer, directory / "tokenizer.json")
    cmvn.save(directory / "cmvn.json")


def atomic_directory(final: Path, write) -> None:
    """Write a folder via ``write(tmp_dir)`` then swap it in, so a crash at any moment leaves
    either the old or the new folder complete (``final.old`` is the fallback mid-swap)."""
    final = Path(final)
    temporary = final.with_name(final.name + ".tmp")
    old = final.with_name(final.name + ".old")
    shutil.rmtree(temporary, ignore_errors=True)
    temporary.mkdir(parents=True)
    try:
        write(temporary)
        for item in temporary.iterdir():  # make the content durable before the rename
            with open(item, "rb") as handle:
                os.fsync(handle.fileno())
    except BaseException:  # disk full, Ctrl-C: the old folder stays, nothing half-written
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
    os.replace(temporary, final)
    shutil.rmtree(old, ignore_errors=True)


def resolve(path: str | Path) -> Path:
    """The checkpoint folder to read: ``path``, or ``path.old`` if a swap was interrupted."""
    path = Path(path)
    if not (path / "config.json").exists():
        old = path.with_name(path.name + ".old")
        if (old / "config.json").exists():
            return old
    return path


def read_config(path: Path) -> dict:
    """config.json of a checkpoint folder, with clear errors for everything else."""
    if path.is_file():
        raise CheckpointError(
            f"{path}: is a file; a speechrnn model is a folder with config.json and "
            "model.safetensors (pickle files such as .pt/.pth/.ckpt are never loaded)")
    if not path.is_dir():
        raise CheckpointError(f"{path}: no such model folder")
    config_path = path / "config.json"
    if not config_path.exists():
        raise CheckpointError(f"{path}: not a speechrnn checkpoint (config.json missing)")
    problem = input_problem(config_path)
    if problem:
        raise CheckpointError(f"{config_path}: {problem}")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as error:
        raise CheckpointError(f"{config_path}: unreadable ({error})") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"{config_path}: expected a JSON object")
    version = config.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(f"{config_path}: format_version {version!r} is not supported by "
                              f"this speechrnn (reads up to {FORMAT_VERSION})")
    return config


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> Checkpoint:
    """Rebuild model (eval mode, CMVN attached), feature extractor and tokenizer, after
    checking that every part fits the others (CheckpointError naming the file otherwise)."""
    path = resolve(path)
    config = read_config(path)
    config_path = path / "config.json"
    try:
        model_config = checked_dataclass(ModelConfig, config.get("model"), "model.")
        feature_config = checked_dataclass(FeatureConfig, config.get("features"), "features.")
        features = build_features(feature_config)
    except ValueError as error:
        raise CheckpointError(f"{config_path}: {error}") from None
    _check_decoding(config.get("decoding", {}), config_path)
    tokenizer_path, weights = path / "tokenizer.json", path / "model.safetensors"
    for part in (tokenizer_path, weights):
        problem = input_problem(part)
        if problem:
            raise CheckpointError(f"{part}: {problem}")
    try:
        tokenizer = load_tokenizer(tokenizer_path)
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise CheckpointError(f"{tokenizer_path}: not a usable tokenizer ({error})") from None
    symbols = getattr(tokenizer, "symbols", [])
    if len(set(symbols)) != len(symbols):
        raise CheckpointError(f"{tokenizer_path}: a symbol appears twice")
    if len(tokenizer) != model_config.vocab_size:
        raise CheckpointError(f"{tokenizer_path}: {len(tokenizer)} symbols, but the model's "
                              f"output layer has {model_config.vocab_size}")
    if model_config.input_dim != features.dim:
        raise CheckpointError(f"{config_path}: the model reads {model_config.input_dim} "
                              f"features per frame, the features section makes {features.dim}")
    try:
        cmvn = load_cmvn(path / "cmvn.json")
    except ValueError as error:
        raise CheckpointError(str(error)) from None
    if isinstance(cmvn, GlobalCMVN) and cmvn.mean.numel() != features.dim:
        raise CheckpointError(f"{path / 'cmvn.json'}: statistics of {cmvn.mean.numel()} "
                              f"features, but the features section makes {features.dim}")
    try:
        state = load_file(str(weights))
        model = AcousticModel(model_config)
        model.load_state_dict(state)
    except (OSError, ValueError, KeyError, TypeError, RuntimeError, SafetensorError) as error:
        raise CheckpointError(f"{weights}: cannot load the weights ({error})") from None
    bad = [name for name, tensor in state.items()
           if tensor.is_floating_point() and not torch.isfinite(tensor).all()]
    if bad:
        raise CheckpointError(f"{weights}: non-finite (NaN or infinite) weights in "
                              f"{', '.join(bad[:3])}")
    model.cmvn = cmvn
    model.to(device).eval()
    features.to(device).eval()
    return Checkpoint(model, features, tokenizer, config, path)


def _check_decoding(decoding, config_path: Path) -> None:
    """A model's tuned decoding settings: a mapping of the decoders' own types and ranges."""
    from speechrnn.decoding.checks import check_beam, check_blank_penalty, check_finite

    if not isinstance(decoding, dict):
        raise CheckpointError(f"{config_path}: decoding must be a mapping of settings")
    try:
        if "beam" in decoding:
            check_beam(decoding["beam"])
        for name in ("alpha", "beta"):
            if name in decoding:
                check_finite(name, decoding[name])
        if "blank_penalty" in decoding:
            check_blank_penalty(decoding["blank_penalty"])
    except ValueError as error:
        raise CheckpointError(f"{config_path}: decoding: {error}") from None


def average_checkpoints(paths: list[Path], output: Path) -> None:
    """Average the weights of several checkpoints of one architecture into ``output``."""
    if not paths:
        raise CheckpointError("no checkpoints to average")
    configs = [read_config(resolve(p)) for p in paths]
    if any(c["model"] != configs[0]["model"] for c in configs):
        raise CheckpointError("checkpoints have different architectures; cannot average")
    total: dict[str, torch.Tensor] = {}
    for path in paths:
        for key, value in load_file(str(resolve(path) / "model.safetensors")).items():
            total[key] = total.get(key, 0) + value.double()
    averaged = {k: (v / len(paths)).to(torch.float32) for k, v in total.items()}

    def write(directory: Path) -> None:
        source = resolve(paths[-1])
        write_tensors(averaged, directory / "model.safetensors")
        for name in ("cmvn.json", *tokenizer_files(source)):
            shutil.copy(source / name, directory / name)
        config = dict(configs[-1])
        config["averaged_from"] = [str(p) for p in paths]
        config["metrics"] = {}
        write_json(directory / "config.json", config)

    atomic_directory(output, write)
