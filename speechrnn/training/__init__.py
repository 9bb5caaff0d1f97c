"""CTC training: configuration, trainer, schedules, checkpoints."""

from speechrnn.training.checkpoint import CheckpointError, load_checkpoint
from speechrnn.training.config import TrainConfig, load_config

__all__ = ["CheckpointError", "TrainConfig", "load_checkpoint", "load_config"]
