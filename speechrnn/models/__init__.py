"""Acoustic models: recurrent CTC networks built from a ModelConfig."""

from speechrnn.models.acoustic import (
    PRESETS,
    AcousticModel,
    ModelConfig,
    build_model,
    preset,
)

__all__ = ["PRESETS", "AcousticModel", "ModelConfig", "build_model", "preset"]
