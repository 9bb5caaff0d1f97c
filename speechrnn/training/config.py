"""Training configuration: YAML mapped onto dataclasses, with ``a.b=c`` overrides."""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from speechrnn.augment import FILLS
from speechrnn.features import FeatureConfig
from speechrnn.fileio import input_problem
from speechrnn.models.acoustic import PRESETS, ModelConfig
from speechrnn.schema import checked_dataclass
from speechrnn.training.schedules import SCHEDULES


def choice(default: str, options: tuple[str, ...]) -> str:
    """A string option that takes only one of ``options``: a typo is refused when the config
    is read, not minutes later (or never: ``amp: bfloat16`` would otherwise run as unscaled
    fp16, ``device: gpu`` on the CPU)."""
    assert default in options
    return field(default=default, metadata={"choices": options})


@dataclass
class DataConfig:
    # One manifest or a list, to mix corpora; train_repeat (one count per manifest) lets a
    # small corpus be seen several times per epoch.
    train: str | list[str] = ""
    train_repeat: list[int] = field(default_factory=list)
    dev: str | list[str] = ""
    max_frames: int = 20000  # feature frames per batch (dynamic batch size)
    max_batch_size: int | None = None
    max_duration: float = 30.0  # longer training utterances are skipped (reported)
    num_workers: int = 1
    # Decode the train and dev audio once into memory (4 bytes a sample: ~600 MB for 2.6 h at
    # 16 kHz) instead of every epoch: for small corpora of compressed audio.
    cache_audio: bool = False


@dataclass
class TokenizerConfig:
    kind: str = choice("char", ("char", "bpe", "phone"))
    vocab_size: int = 256  # bpe only
    # phone only: lexicons that supply training words CMUdict lacks (a corpus's own)
    lexicons: list[str] = field(default_factory=list)
    # char: a character outside the vocabulary; phone: a word without a pronunciation
    # (error: the utterance is left out of training, reported; skip: the word is dropped)
    oov: str = choice("skip", ("error", "skip", "unk"))
    case: str = choice("lower", ("lower", "upper", "keep"))


@dataclass
class AugmentConfig:
    specaugment: bool = False
    # First epoch (1-based) that is masked: small CTC models trained with masks from the
    # start can stay blank-only for many epochs; starting later lets them align first.
    specaugment_from_epoch: int = 1
    freq_masks: int = 2
    freq_width: int = 15
    time_masks: int = 2
    time_width: int = 40
    # What masked features become: "zero", or "mean" (the utterance's mean of each bin), which
    # suits features that the model normalises itself, such as raw MFCCs (see SpecAugment).
    specaugment_fill: str = choice("zero", FILLS)
    # Where the frequency masks fall: "features" (the feature dimensions as they are), or "mel"
    # (the mel bands behind MFCC features, as in the SpecAugment paper; needs the mean fill).
    freq_mask_domain: str = choice("features", ("features", "mel"))
    speed_perturb: list[float] = field(default_factory=list)  # e.g. [0.9, 1.0, 1.1]
    noise_snr: list[float] = field(default_factory=list)  # e.g. [10, 30]: Gaussian noise
    band_limit_prob: float = 0.0  # share of utterances cut to the band below band_limit_rate/2
    band_limit_rate: int = 8000
    vtlp: list[float] = field(default_factory=list)  # e.g. [0.9, 1.1]: warp factor range


@dataclass
class OptimConfig:
    name: str = choice("adamw", ("adamw", "sgd"))
    lr: float = 1.5e-3
    weight_decay: float = 1e-2
    momentum: float = 0.9  # sgd
    schedule: str = choice("warmup_cosine", SCHEDULES)
    warmup_steps: int = 200
    final_lr_ratio: float = 0.02  # cosine/exponential end point, as a fraction of lr
    newbob_threshold: float = 0.005  # halve lr when dev WER improves by less (absolute)
    grad_clip: float = 5.0
    accum_steps: int = 1


@dataclass
class TrainConfig:
    data: DataConfig = field(default_factory=DataConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    preset: str | None = None  # eesen | ds2: fills model fields not set explicitly
    # Fine-tuning: start from this checkpoint folder (or bundled model name); its model shape,
    # features, tokenizer and CMVN replace the config's, its weights the random initialisation.
    init_from: str | None = None
    optim: OptimConfig = field(default_factory=OptimConfig)
    # Intermediate CTC (Lee & Watanabe 2021): the outputs of these recurrent layers (1-based,
    # below the last) also pass through the output layer and get a CTC loss; the loss is
    # (1 - weight) × final + weight × mean of the intermediate ones. It regularises the
    # lower layers; decoding is unchanged.
    inter_ctc_layers: list[int] = field(default_factory=list)
    inter_ctc_weight: float = 0.3
    epochs: int = 10
    max_steps: int | None = None  # stop after this many optimiser steps (tests, resume demos)
    max_minutes: float | None = None  # stop (cleanly, checkpointed) after this wall time
    seed: int = 0
    device: str = choice("auto", ("auto", "cpu", "cuda"))
    amp: str = choice("none", ("none", "bf16", "fp16"))  # bf16: CUDA or CPU; fp16: CUDA
    checkpoint_every: int = 500  # steps between resumable checkpoints
    keep_best: int = 3
    early_stop: int = 0  # epochs without dev improvement before stopping (0: never)
    log_every: int = 20
    cmvn: str = choice("global", ("global", "utterance"))  # corpus statistics | per-utterance
    cmvn_utterances: int = 2000  # utterances used for global CMVN statistics
    detect_anomaly: bool = False  # torch.autograd anomaly checks (slow; debugging only)
    progress: bool = True


NESTED = {"DataConfig": DataConfig, "FeatureConfig": FeatureConfig,
          "TokenizerConfig": TokenizerConfig, "AugmentConfig": AugmentConfig,
          "ModelConfig": ModelConfig, "OptimConfig": OptimConfig}


# `speechrnn train` without --config: sized for a few hours of speech or less (yesno, digits,
# a small corpus of one's own). The dataclass defaults stay those of the full-size recipes.
SMALL_DATA_DEFAULTS = ["model.hidden=128", "model.layers=2", "data.max_frames=3000",
                       "optim.warmup_steps=50", "epochs=30"]


def parse_value(text: str):
    """``--set`` values are YAML scalars/lists: 3, 1e-3, true, [0.9, 1.0], lstm."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        problem = getattr(error, "problem", None) or "not valid YAML"
        raise ValueError(f"not a valid value {text!r} ({problem})") from None


def apply_override(raw: dict, assignment: str) -> None:
    """Apply ``a.b=c`` to a raw config dict in place."""
    if "=" not in assignment:
        raise ValueError(f"--set expects key=value, got {assignment!r}")
    key, value = assignment.split("=", 1)
    parts = key.strip().split(".")
    if not all(part.strip() for part in parts):
        raise ValueError(f"--set {assignment!r}: the key must be a dotted name such as "
                         "model.hidden")
    node = raw
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ValueError(f"--set {key}: {part} is not a section")
    try:
        node[parts[-1]] = parse_value(value)
    except ValueError as error:
        raise ValueError(f"--set {key}: {error}") from None


def load_config(path: str | Path | None = None, overrides: list[str] = ()) -> TrainConfig:
    """Read a YAML config (or start from defaults) and apply ``a.b=c`` overrides; every
    field is type- and range-checked. ValueError, on one line, names the file for a problem
    in it, and the dotted key for a problem an override brings."""
    raw: dict = {}
    if path is not None:
        problem = input_problem(path)
        if problem:
            raise ValueError(f"{path}: {problem}")
        try:
            raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError, UnicodeDecodeError) as error:
            reason = " ".join(str(error).split())  # YAML's messages span several lines
            raise ValueError(f"{path}: cannot read config ({reason})") from None
        raw = {} if raw is None else raw
        if not isinstance(raw, dict):
            raise ValueError(f"{path}: the top level must be a mapping of config sections, "
                             f"not a {type(raw).__name__}")
        try:  # the file alone first, so that its own mistakes are reported with its name
            _resolve(copy.deepcopy(raw))
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from None
    for assignment in overrides:
        apply_override(raw, assignment)
    return _resolve(raw)


def _resolve(raw: dict) -> TrainConfig:
    """The checked config of a raw mapping, its preset's model fields filled in."""
    preset_name = raw.get("preset")
    if preset_name:
        if not isinstance(preset_name, str) or preset_name not in PRESETS:
            raise ValueError(f"unknown preset {preset_name!r}; choose from {', '.join(PRESETS)}")
        model = raw.get("model") or {}
        if not isinstance(model, dict):
            raise ValueError(f"model: expected a mapping, got {type(model).__name__}")
        raw["model"] = {**PRESETS[preset_name], **model}
    return checked_dataclass(TrainConfig, raw, "", NESTED)


def to_dict(config) -> dict:
    return dataclasses.asdict(config)
