"""Models shipped inside the package (``speechrnn/pretrained/<name>/``) and the resolution of
a ``--model`` argument (a checkpoint folder, a bundled model's name, or the default) that
training (``init_from``) and inference share."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from speechrnn.models.checkpoint import CheckpointError

DEFAULT_MODEL = "en-so762-blstm"


def bundled_models() -> dict[str, Path]:
    """Models shipped inside the package (speechrnn/pretrained/<name>/)."""
    root = Path(str(resources.files("speechrnn.pretrained")))
    if not root.is_dir():
        return {}
    return {p.name: p for p in sorted(root.iterdir()) if (p / "config.json").exists()}


def resolve_model(name_or_path: str | Path | None) -> Path:
    """A checkpoint folder from a path, a bundled model's name, or None (the default)."""
    name = str(name_or_path) if name_or_path is not None else DEFAULT_MODEL
    path = Path(name)
    if path.exists():
        return path
    models = bundled_models()
    if name in models:
        return models[name]
    available = ", ".join(models) or "none installed"
    raise CheckpointError(f"{name}: no such model folder or bundled model ({available})")
