"""Settings read from YAML or JSON (training configs, checkpoints' config.json) mapped onto
dataclasses with every key, type and range checked, so a bad value is refused where it is
read, naming its dotted key, instead of failing (or silently misbehaving) deep inside."""

from __future__ import annotations

import dataclasses
import math

# Ranges of numeric fields: (minimum, maximum, whether the minimum itself is excluded);
# None is no bound. A value outside fails when the config is read, not deep in training.
LIMITS: dict[str, tuple[float | None, float | None, bool]] = {
    "data.max_frames": (1, None, False), "data.max_batch_size": (1, None, False),
    "data.max_duration": (0, None, True), "data.num_workers": (0, None, False),
    "data.train_repeat": (1, None, False),
    "features.sample_rate": (0, None, True), "features.n_mels": (1, None, False),
    "features.n_mfcc": (1, None, False), "features.frame_length_ms": (0, None, True),
    "features.frame_shift_ms": (0, None, True), "features.dither": (0, None, False),
    "features.preemphasis": (0, 1, False), "features.deltas": (0, 2, False),
    "features.low_freq": (0, None, False), "features.high_freq": (0, None, True),
    "tokenizer.vocab_size": (2, None, False),
    "augment.specaugment_from_epoch": (1, None, False), "augment.freq_masks": (0, None, False),
    "augment.freq_width": (0, None, False), "augment.time_masks": (0, None, False),
    "augment.time_width": (0, None, False), "augment.speed_perturb": (0, None, True),
    "augment.band_limit_prob": (0, 1, False), "augment.band_limit_rate": (0, None, True),
    "augment.vtlp": (0, None, True),
    "model.stack": (1, None, False), "model.conv_channels": (1, None, False),
    "model.conv_kernels": (1, None, False), "model.conv_strides": (1, None, False),
    "model.hidden": (1, None, False), "model.layers": (1, None, False),
    "model.dropout": (0, 1, False), "model.lookahead": (0, None, False),
    "optim.lr": (0, None, True), "optim.weight_decay": (0, None, False),
    "optim.momentum": (0, 1, False), "optim.warmup_steps": (0, None, False),
    "optim.final_lr_ratio": (0, 1, False), "optim.newbob_threshold": (0, None, False),
    "optim.grad_clip": (0, None, True), "optim.accum_steps": (1, None, False),
    "inter_ctc_layers": (1, None, False), "inter_ctc_weight": (0, 1, False),
    "epochs": (1, None, False), "max_steps": (1, None, False), "max_minutes": (0, None, True),
    "checkpoint_every": (1, None, False), "keep_best": (1, None, False),
    "early_stop": (0, None, False), "log_every": (1, None, False),
    "cmvn_utterances": (1, None, False),
}
def _conforms(value, spec: str) -> bool:
    """Whether a YAML value has the dataclass field type ``spec`` (as written in the source:
    ``int``, ``float | None``, ``list[list[int]]``...). A bool is not a number; a number
    must be finite."""
    parts = [part.strip() for part in spec.split("|")]
    if len(parts) > 1:
        return any(_conforms(value, part) for part in parts)
    if spec.startswith("list[") and spec.endswith("]"):
        return isinstance(value, list) and all(_conforms(v, spec[5:-1]) for v in value)
    if spec == "None":
        return value is None
    if spec == "bool":
        return isinstance(value, bool)
    if spec == "str":
        return isinstance(value, str)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return isinstance(value, int) if spec == "int" else spec == "float" and math.isfinite(value)


def _numbers(value) -> list[float]:
    if isinstance(value, list):
        return [n for v in value for n in _numbers(v)]
    return [value] if isinstance(value, (int, float)) and not isinstance(value, bool) else []


def _check_range(name: str, value) -> None:
    low, high, strict = LIMITS.get(name, (None, None, False))
    for number in _numbers(value):
        below = low is not None and (number <= low if strict else number < low)
        if below or (high is not None and number > high):
            bounds = (f"{'above' if strict else 'at least'} {low}" if high is None else
                      f"from {low} to {high}")
            raise ValueError(f"{name}: must be {bounds}, got {value!r}")


def checked_dataclass(cls, data: dict, where: str, nested: dict[str, type] | None = None):
    """Dataclass ``cls`` from a dict, checking every key, type and range; errors name the
    dotted key (``model.hidden: expected int, got 'abc'``). ``nested`` maps the type names
    of fields that are dataclasses themselves to their classes."""
    nested = nested or {}
    if not isinstance(data, dict):
        raise ValueError(f"{where.rstrip('.') or 'config'}: expected a mapping, got "
                         f"{type(data).__name__}")
    known = {f.name: f for f in dataclasses.fields(cls)}
    values = {}
    for key, value in data.items():
        if key not in known:
            raise ValueError(f"unknown config key {where + key!r}")
        name = where + key
        field_type = str(known[key].type)
        inner = nested.get(field_type)
        if inner:
            values[key] = checked_dataclass(inner, value, f"{name}.", nested)
            continue
        if value is None and field_type == "str | list[str]":
            value = ""  # `--set data.dev=` or `dev:` left empty: no manifest, as by default
        elif isinstance(value, str) and "float" in field_type:
            try:  # YAML 1.1 reads 1e-3 (no dot) as a string
                value = float(value)
            except ValueError:
                pass  # reported below as the wrong type
        if "float" in field_type and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not _conforms(value, field_type):
            shown = "null" if value is None else repr(value)
            raise ValueError(f"{name}: expected {field_type}, got {shown}")
        _check_range(name, value)
        choices = known[key].metadata.get("choices")
        if choices and value not in choices:
            raise ValueError(f"{name} must be one of {' | '.join(choices)}, not {value!r}")
        values[key] = value
    return cls(**values)
