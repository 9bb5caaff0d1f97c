"""CTC training: configuration, trainer, schedules, the trainer's checkpoints."""

from speechrnn.training.config import TrainConfig, load_config

__all__ = ["TrainConfig", "load_config"]
