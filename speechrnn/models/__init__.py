"""Acoustic models: recurrent CTC networks built from a ModelConfig."""

from speechrnn.lazy import lazy_exports

__all__ = ["PRESETS", "AcousticModel", "ModelConfig", "build_model", "preset"]
__getattr__ = lazy_exports(__name__, dict.fromkeys(__all__, "speechrnn.models.acoustic"))
